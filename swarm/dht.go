package swarm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/krpc"
	peer_store "github.com/anacrolix/dht/v2/peer-store"
	alog "github.com/anacrolix/log"
	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
	"golang.org/x/time/rate"

	"tpm/store"
)

// The DHT (BEP 5) is an option beside the trackers: with every tracker
// down, hosts still find each other. It runs on its own UDP socket on the
// torrent client's port (anacrolix would otherwise open a uTP socket for
// it, which tpm does not speak), bootstraps from the nodes it is given (the
// repository server's torrent address: the server is the fleet's bootstrap
// node) and, on a host, from those its signed index names (the same
// address, so --dht needs no --dht-bootstrap), and stores the peers
// announced to it in a bounded store of its own (the DHT library keeps
// none unless given one, and its example keeps one peer per IP address,
// which hides every host behind one NAT but one).

// DHTConfig turns the DHT on for a seeder or a peer.
type DHTConfig struct {
	// Bootstrap are "host:port" of DHT nodes to join through; none makes
	// this node a root others bootstrap from.
	Bootstrap []string
}

// dhtNode is a running DHT node and its socket.
type dhtNode struct {
	server    *dht.Server
	conn      net.PacketConn
	bootstrap []string // DHTConfig.Bootstrap, joined through first

	mu        sync.Mutex
	fromIndex []string // the nodes the last signed index named (join)
}

// Close stops the node and closes its socket now (the library closes it
// on a goroutine), so a restarted client can bind the port again.
func (n *dhtNode) Close() error {
	if n == nil {
		return nil
	}
	n.server.Close()
	if err := n.conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// announce asks the DHT for t's peers now (and announces this host), for a
// download that has none: anacrolix's own announces come every 5 minutes.
// It stops when ctx ends or after dhtAnnounceWait.
func (n *dhtNode) announce(ctx context.Context, t *torrent.Torrent) {
	if n == nil {
		return
	}
	done, stop, err := t.AnnounceToDht(torrent.AnacrolixDhtServerWrapper{Server: n.server})
	if err != nil {
		return
	}
	go func() {
		defer stop()
		select {
		case <-done:
		case <-ctx.Done():
		case <-time.After(dhtAnnounceWait):
		}
	}()
}

// dhtAnnounceWait bounds one announce to the DHT.
const dhtAnnounceWait = 30 * time.Second

// Nodes is how many nodes the DHT node knows.
func (n *dhtNode) Nodes() int {
	if n == nil {
		return 0
	}
	return n.server.Stats().Nodes
}

// startDHT runs a DHT node on UDP at cl's port and hands it to cl, which
// announces every torrent added from then on and takes the peers found.
//
// A host that announces a torrent to this node wakes it (wake), if the
// client holds it dormant.
func startDHT(cl *torrent.Client, l listenAddr, cfg DHTConfig, log *slog.Logger, wake wakeFunc) (*dhtNode, error) {
	for _, b := range cfg.Bootstrap {
		if _, _, err := net.SplitHostPort(b); err != nil {
			return nil, fmt.Errorf("DHT bootstrap node %q: %w", b, err)
		}
	}
	conn, err := net.ListenPacket("udp", net.JoinHostPort(l.host, strconv.Itoa(cl.LocalPort())))
	if err != nil {
		return nil, fmt.Errorf("DHT on UDP port %d: %w", cl.LocalPort(), err)
	}
	logger := alog.NewLogger("dht")
	logger.SetHandlers(alog.SlogHandlerAsHandler{SlogHandler: log.Handler()})
	n := &dhtNode{conn: conn, bootstrap: cfg.Bootstrap}
	s, err := dht.NewServer(&dht.ServerConfig{
		Conn: conn,
		// Asked at every bootstrap, and by a traversal while the routing
		// table is empty: nodes an index names later count from then on.
		StartingNodes: n.startingNodes,
		PeerStore:     newDHTPeers(time.Now),
		// A host that announces a torrent to this node is a peer of it: a
		// root node (the repository's seeder), which learns of no peers
		// otherwise, dials it.
		OnAnnouncePeer: func(ih metainfo.Hash, ip net.IP, port int, portOk bool) {
			if !portOk {
				return
			}
			if t, ok := wake(ih); ok {
				t.AddPeers([]torrent.PeerInfo{{Addr: &net.TCPAddr{IP: ip, Port: port}, Source: torrent.PeerSourceDhtAnnouncePeer}})
			}
		},
		Logger: logger,
		// The library's default limiter is one for the whole process: two
		// nodes in one process (tests) would starve each other's replies.
		SendLimiter: rate.NewLimiter(25, 25),
	})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("DHT: %w", err)
	}
	n.server = s
	go s.TableMaintainer()
	cl.AddDhtServer(torrent.AnacrolixDhtServerWrapper{Server: s})
	return n, nil
}

// Bounds of joining through named nodes: a DNS name's addresses tried, and
// the wait for a resolution when the library asks for starting nodes.
const (
	dhtAddrsPerName = 4
	dhtResolveWait  = 5 * time.Second
)

// startingNodes are the configured nodes, then the index's, resolved.
func (n *dhtNode) startingNodes() ([]dht.Addr, error) {
	n.mu.Lock()
	names := append(slices.Clone(n.bootstrap), n.fromIndex...)
	n.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), dhtResolveWait)
	defer cancel()
	addrs := resolveDHTNodes(ctx, names)
	if len(addrs) == 0 {
		return nil, errors.New("no DHT node to join yet (none from --dht-bootstrap or the index resolved)")
	}
	return addrs, nil
}

// resolveDHTNodes turns "host:port" names into UDP addresses, each once;
// a name that does not resolve within ctx is skipped.
func resolveDHTNodes(ctx context.Context, names []string) []dht.Addr {
	var out []dht.Addr
	seen := map[string]bool{}
	add := func(ip net.IP, port int) {
		ua := &net.UDPAddr{IP: ip, Port: port}
		if !seen[ua.String()] {
			seen[ua.String()] = true
			out = append(out, dht.NewAddr(ua))
		}
	}
	for _, name := range names {
		host, p, err := net.SplitHostPort(name)
		port, perr := strconv.Atoi(p)
		if err != nil || perr != nil {
			continue
		}
		if ip := net.ParseIP(host); ip != nil {
			add(ip, port)
			continue
		}
		ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
		if err != nil {
			continue
		}
		for _, ip := range ips[:min(len(ips), dhtAddrsPerName)] {
			add(ip.IP, port)
		}
	}
	return out
}

// JoinDHT joins the DHT through nodes a signed index names, after those of
// DHTConfig.Bootstrap (see dhtNode.join); without the DHT it does nothing.
// It waits for answers until ctx ends: call it on a goroutine.
func (c *Peer) JoinDHT(ctx context.Context, nodes []string) (int, error) {
	return c.dht.join(ctx, nodes)
}

// join makes nodes (those a signed index names) this node's starting
// nodes after the configured ones, and joins through them now rather than
// at the table maintainer's next minute: a ping to each, whose answer puts
// it in the routing table, then a bootstrap, which asks them for more.
// The index is signed, but a key can leak: invalid names are dropped, and
// at most store.MaxDHTNodes kept. It returns how many nodes the routing
// table holds.
func (n *dhtNode) join(ctx context.Context, nodes []string) (int, error) {
	if n == nil {
		return 0, nil
	}
	var valid []string
	for _, s := range nodes {
		if len(valid) < store.MaxDHTNodes && store.CheckDHTNode(s) == nil && !slices.Contains(valid, s) {
			valid = append(valid, s)
		}
	}
	n.mu.Lock()
	n.fromIndex = valid
	n.mu.Unlock()
	if len(valid) == 0 {
		return n.Nodes(), fmt.Errorf("none of the %d DHT nodes named is a valid HOST:PORT", len(nodes))
	}
	var wg sync.WaitGroup
	for _, a := range resolveDHTNodes(ctx, valid) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.server.Query(ctx, a, "ping", dht.QueryInput{})
		}()
	}
	wg.Wait()
	// Its error is no news: a bootstrap already running (the table
	// maintainer's) finds the nodes pinged in the table.
	n.server.BootstrapContext(ctx)
	if known := n.Nodes(); known > 0 {
		return known, nil
	}
	return 0, fmt.Errorf("no DHT node answered (%s)", strings.Join(valid, ", "))
}

// Bounds of the DHT's peer store: what a node keeps of the peers announced
// to it, against anyone who announces without end.
const (
	dhtPeersPerTorrent = 256
	dhtTorrents        = 20000
	dhtPeerLife        = 30 * time.Minute // announces come every 5 minutes
	dhtPeersAnswered   = 50               // in one UDP answer
)

// dhtPeers is the DHT node's peer store: peers by infohash and address,
// each forgotten dhtPeerLife after its last announce, the oldest replaced
// when a torrent or the store is full.
type dhtPeers struct {
	now func() time.Time
	mu  sync.Mutex
	by  map[peer_store.InfoHash]map[string]dhtPeer
}

type dhtPeer struct {
	addr krpc.NodeAddr
	seen time.Time
}

func newDHTPeers(now func() time.Time) *dhtPeers {
	return &dhtPeers{now: now, by: make(map[peer_store.InfoHash]map[string]dhtPeer)}
}

func (p *dhtPeers) AddPeer(ih peer_store.InfoHash, na krpc.NodeAddr) {
	now := p.now()
	key := na.String()
	p.mu.Lock()
	defer p.mu.Unlock()
	peers := p.by[ih]
	if peers == nil {
		if len(p.by) >= dhtTorrents {
			p.sweep(now)
			if len(p.by) >= dhtTorrents {
				return // full of live torrents: this one is not kept
			}
		}
		peers = make(map[string]dhtPeer)
		p.by[ih] = peers
	}
	if _, ok := peers[key]; !ok && len(peers) >= dhtPeersPerTorrent {
		oldest := ""
		for k, v := range peers {
			if oldest == "" || v.seen.Before(peers[oldest].seen) {
				oldest = k
			}
		}
		delete(peers, oldest)
	}
	peers[key] = dhtPeer{addr: na, seen: now}
}

func (p *dhtPeers) GetPeers(ih peer_store.InfoHash) []krpc.NodeAddr {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []krpc.NodeAddr
	for k, v := range p.by[ih] { // a map's order: a different sample each time
		if now.Sub(v.seen) > dhtPeerLife {
			delete(p.by[ih], k)
			continue
		}
		if len(out) < dhtPeersAnswered {
			out = append(out, v.addr)
		}
	}
	if len(p.by[ih]) == 0 {
		delete(p.by, ih)
	}
	return out
}

// sweep forgets peers past their life, and torrents left with none.
func (p *dhtPeers) sweep(now time.Time) {
	for ih, peers := range p.by {
		for k, v := range peers {
			if now.Sub(v.seen) > dhtPeerLife {
				delete(peers, k)
			}
		}
		if len(peers) == 0 {
			delete(p.by, ih)
		}
	}
}
