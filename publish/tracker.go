package publish

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/anacrolix/torrent/bencode"
)

// The tracker is our own rather than anacrolix's tracker/http/server: that
// handler always writes "failure reason" (empty) into successful answers,
// which clients such as aria2 take as a failure, answers errors with HTTP
// 500 instead of a bencoded reason, ignores numwant, and starts upstream
// "augmentation" goroutines for every announce with few peers. The peer
// store below is what its AnnounceTracker interface would have been given.

// Tracker limits.
const (
	defaultNumWant = 50
	maxNumWant     = 200
	// maxPeers bounds the store's memory whatever announces arrive.
	maxPeers = 200_000
	// maxPeersPerIP bounds what one address holds, across torrents: a
	// NAT of a few hundred hosts fits, a flood from one address only
	// replaces its own oldest entries.
	maxPeersPerIP = 1024
)

// peerKey is one peer of one torrent: its address and its peer id. Keyed by
// both, a host behind the same address (a NAT) that announces another's
// port with its own id adds an entry of its own, and its "stopped" removes
// only that.
type peerKey struct {
	addr netip.AddrPort
	id   [20]byte
}

// peerInfo is what the store keeps of one peer of one torrent.
type peerInfo struct {
	seen   time.Time
	seeder bool
}

// peerRef names an entry of the store, for the index by address.
type peerRef struct {
	ih  [20]byte
	key peerKey
}

// ipPeers are the entries of one address, and the order they came in (with
// entries since removed, dropped lazily).
type ipPeers struct {
	refs  map[peerRef]struct{}
	order []peerRef
}

// PeerStore keeps the peers announced for each torrent. Peers that stop
// announcing expire after ttl (twice the announce interval, so one missed
// announce is forgiven). It never refuses a peer: when an address holds
// maxPeersPerIP entries its first goes, and when the store holds maxPeers
// the oldest entry of the address holding most goes, so a flood from a
// few addresses cannot lock anybody else out.
type PeerStore struct {
	ttl time.Duration
	now func() time.Time

	// The caps (maxPeers and maxPeersPerIP; tests make them small).
	maxPeers, maxPerIP int

	mu        sync.Mutex
	torrents  map[[20]byte]map[peerKey]*peerInfo
	byIP      map[netip.Addr]*ipPeers
	count     int
	lastSweep time.Time
	changed   bool // since the last Save
}

// NewPeerStore returns an empty store whose peers expire after ttl.
func NewPeerStore(ttl time.Duration, now func() time.Time) *PeerStore {
	if now == nil {
		now = time.Now
	}
	return &PeerStore{ttl: ttl, now: now, maxPeers: maxPeers, maxPerIP: maxPeersPerIP, torrents: make(map[[20]byte]map[peerKey]*peerInfo),
		byIP: make(map[netip.Addr]*ipPeers), lastSweep: now()}
}

// Announce records (or, for event "stopped", forgets) a peer. Only the
// peer itself (the same peer id from the same address) can make it forget
// the peer.
func (s *PeerStore) Announce(ih [20]byte, id [20]byte, addr netip.AddrPort, event string, left int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if now.Sub(s.lastSweep) > s.ttl {
		s.sweepLocked(now)
	}
	key := peerKey{addr, id}
	if event == "stopped" {
		if _, ok := s.torrents[ih][key]; ok {
			s.removeLocked(ih, key)
		}
		return
	}
	s.changed = true
	if p, ok := s.torrents[ih][key]; ok {
		p.seen, p.seeder = now, left == 0
		return
	}
	if ipp := s.byIP[addr.Addr()]; ipp != nil && len(ipp.refs) >= s.maxPerIP {
		s.evictOldestLocked(addr.Addr())
	} else if s.count >= s.maxPeers {
		s.evictOldestLocked(s.busiestLocked())
	}
	peers := s.torrents[ih]
	if peers == nil {
		peers = make(map[peerKey]*peerInfo)
		s.torrents[ih] = peers
	}
	peers[key] = &peerInfo{seen: now, seeder: left == 0}
	ipp := s.byIP[addr.Addr()]
	if ipp == nil {
		ipp = &ipPeers{refs: make(map[peerRef]struct{})}
		s.byIP[addr.Addr()] = ipp
	}
	ref := peerRef{ih, key}
	ipp.refs[ref] = struct{}{}
	ipp.order = append(ipp.order, ref)
	if len(ipp.order) > 2*len(ipp.refs)+16 {
		// Many came and went: drop what went from the order.
		kept := ipp.order[:0]
		for _, r := range ipp.order {
			if _, ok := ipp.refs[r]; ok {
				kept = append(kept, r)
			}
		}
		ipp.order = kept
	}
	s.count++
}

func (s *PeerStore) removeLocked(ih [20]byte, key peerKey) {
	peers := s.torrents[ih]
	delete(peers, key)
	if len(peers) == 0 {
		delete(s.torrents, ih)
	}
	if ipp := s.byIP[key.addr.Addr()]; ipp != nil {
		delete(ipp.refs, peerRef{ih, key})
		if len(ipp.refs) == 0 {
			delete(s.byIP, key.addr.Addr())
		}
	}
	s.count--
	s.changed = true
}

// evictOldestLocked removes the entry of ip that came first.
func (s *PeerStore) evictOldestLocked(ip netip.Addr) {
	ipp := s.byIP[ip]
	for ipp != nil && len(ipp.order) > 0 {
		ref := ipp.order[0]
		ipp.order = ipp.order[1:]
		if _, ok := ipp.refs[ref]; ok {
			s.removeLocked(ref.ih, ref.key)
			return
		}
	}
}

// busiestLocked is the address holding the most entries.
func (s *PeerStore) busiestLocked() netip.Addr {
	var busiest netip.Addr
	most := 0
	for ip, ipp := range s.byIP {
		if len(ipp.refs) > most {
			busiest, most = ip, len(ipp.refs)
		}
	}
	return busiest
}

// Peers returns up to max live peers of ih other than exclude (the
// announcing peer), each address once, and how many live peers are seeders
// and leechers.
func (s *PeerStore) Peers(ih [20]byte, exclude netip.AddrPort, max int) (peers []netip.AddrPort, seeders, leechers int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	seen := map[netip.AddrPort]bool{}
	for key, p := range s.torrents[ih] { // map order: a different sample each time
		if now.Sub(p.seen) > s.ttl || seen[key.addr] {
			continue
		}
		seen[key.addr] = true
		if p.seeder {
			seeders++
		} else {
			leechers++
		}
		if key.addr != exclude && len(peers) < max {
			peers = append(peers, key.addr)
		}
	}
	return peers, seeders, leechers
}

// Forget drops every torrent that keep rejects, when a generation removes
// packages.
func (s *PeerStore) Forget(keep func([20]byte) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ih, peers := range s.torrents {
		if !keep(ih) {
			for key := range peers {
				s.removeLocked(ih, key)
			}
		}
	}
}

// Counts calls fn with the live seeders and leechers of every torrent that
// has peers, each address once, in one pass under the lock.
func (s *PeerStore) Counts(fn func(ih [20]byte, seeders, leechers int)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for ih, peers := range s.torrents {
		seen := map[netip.AddrPort]bool{}
		seeders, leechers := 0, 0
		for key, p := range peers {
			if now.Sub(p.seen) > s.ttl || seen[key.addr] {
				continue
			}
			seen[key.addr] = true
			if p.seeder {
				seeders++
			} else {
				leechers++
			}
		}
		fn(ih, seeders, leechers)
	}
}

// Torrents is the number of torrents with peers stored.
func (s *PeerStore) Torrents() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.torrents)
}

// Len is the number of peers stored, expired ones included until a sweep.
func (s *PeerStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

func (s *PeerStore) sweepLocked(now time.Time) {
	for ih, peers := range s.torrents {
		for key, p := range peers {
			if now.Sub(p.seen) > s.ttl {
				s.removeLocked(ih, key)
			}
		}
	}
	s.lastSweep = now
}

// announceResponse is a BEP 3 tracker response with BEP 23 compact peers
// and BEP 7 peers6.
type announceResponse struct {
	Interval    int    `bencode:"interval"`
	MinInterval int    `bencode:"min interval"`
	Complete    int    `bencode:"complete"`
	Incomplete  int    `bencode:"incomplete"`
	Peers       []byte `bencode:"peers"`
	Peers6      []byte `bencode:"peers6,omitempty"`
}

type failureResponse struct {
	FailureReason string `bencode:"failure reason"`
}

// serveScrape is GET /scrape (BEP 48), which clients derive from the
// announce URL to show a swarm's size: complete, incomplete and downloaded
// (not counted: 0) for each info_hash asked about that the current
// generation has. A scrape of everything is refused: it would be as large as
// the repository.
func (p *Publisher) serveScrape(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Cache-Control", "no-store")
	hashes := r.URL.Query()["info_hash"]
	if len(hashes) == 0 || len(hashes) > maxNumWant {
		b, _ := bencode.Marshal(failureResponse{fmt.Sprintf("name 1 to %d info_hash parameters", maxNumWant)})
		w.Write(b)
		return
	}
	type counts struct {
		Complete   int `bencode:"complete"`
		Downloaded int `bencode:"downloaded"`
		Incomplete int `bencode:"incomplete"`
	}
	files := make(map[string]counts)
	g := p.gen.Load()
	ownSeed := 0
	if p.seederPeer(r).IsValid() {
		ownSeed = 1
	}
	for _, v := range hashes {
		var ih [20]byte
		if len(v) != len(ih) {
			continue
		}
		copy(ih[:], v)
		if g == nil || g.ByInfoHash(ih) == nil {
			continue
		}
		_, seeders, leechers := p.peers.Peers(ih, netip.AddrPort{}, 0)
		files[v] = counts{Complete: seeders + ownSeed, Incomplete: leechers}
	}
	b, err := bencode.Marshal(struct {
		Files map[string]counts `bencode:"files"`
	}{files})
	if err != nil {
		b, _ = bencode.Marshal(failureResponse{"internal error"})
	}
	w.Write(b)
}

// serveAnnounce is GET /announce. Only torrents of the current generation
// are tracked. The server's own seeder never announces (it seeds everything
// all the time); it is added to every answer at the address the client
// reached this HTTP server on, which is this machine.
func (p *Publisher) serveAnnounce(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Cache-Control", "no-store")
	fail := func(reason string) {
		b, _ := bencode.Marshal(failureResponse{reason})
		w.Write(b)
	}
	req, err := parseAnnounce(r.URL.Query())
	if err != nil {
		fail(err.Error())
		return
	}
	g := p.gen.Load()
	if g == nil || g.ByInfoHash(req.ih) == nil {
		fail("unknown torrent: this tracker serves only the repository's packages")
		return
	}
	self, ok := clientAddr(r, req.port)
	if !ok {
		fail("cannot tell your address")
		return
	}
	p.peers.Announce(req.ih, req.id, self, req.event, req.left)
	peers, seeders, leechers := p.peers.Peers(req.ih, self, req.numWant)
	if sp := p.seederPeer(r); sp.IsValid() && req.numWant > 0 && sp != self {
		peers = append([]netip.AddrPort{sp}, peers...)
		if len(peers) > req.numWant {
			peers = peers[:req.numWant]
		}
		seeders++
	}
	resp := announceResponse{
		Interval:    int(p.cfg.AnnounceInterval / time.Second),
		MinInterval: int(p.cfg.AnnounceInterval / time.Second / 2),
		Complete:    seeders,
		Incomplete:  leechers,
	}
	resp.Peers, resp.Peers6 = packPeers(peers)
	b, err := bencode.Marshal(resp)
	if err != nil {
		fail("internal error")
		return
	}
	w.Write(b)
}

// announceRequest is what an announce asks.
type announceRequest struct {
	ih, id  [20]byte
	port    uint16
	left    int64 // -1 when unknown
	event   string
	numWant int
}

// parseAnnounce reads the query of an announce; an error is the reason to
// give the client.
func parseAnnounce(q url.Values) (announceRequest, error) {
	var req announceRequest
	if v := q.Get("info_hash"); len(v) == len(req.ih) {
		copy(req.ih[:], v)
	} else {
		return req, errors.New("info_hash must be 20 bytes")
	}
	if v := q.Get("peer_id"); len(v) == len(req.id) {
		copy(req.id[:], v)
	} else {
		return req, errors.New("peer_id must be 20 bytes")
	}
	port, err := strconv.ParseUint(q.Get("port"), 10, 16)
	if err != nil || port == 0 {
		return req, errors.New("port must be 1 to 65535")
	}
	req.port = uint16(port)
	req.left, err = strconv.ParseInt(q.Get("left"), 10, 64)
	if err != nil {
		req.left = -1 // unknown: counted as a leecher
	}
	req.event = q.Get("event")
	switch req.event {
	case "", "started", "completed", "stopped", "paused":
	default:
		return req, errors.New("unknown event")
	}
	req.numWant = defaultNumWant
	if v, err := strconv.Atoi(q.Get("numwant")); err == nil && v >= 0 {
		req.numWant = min(v, maxNumWant)
	}
	return req, nil
}

// clientAddr is where the client r announced from, at its port. It is the
// connection's, never the "ip" parameter, so nobody can point a swarm at a
// third party.
func clientAddr(r *http.Request, port uint16) (netip.AddrPort, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return netip.AddrPort{}, false
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip.Unmap().WithZone(""), port), true
}

// packPeers packs peers as BEP 23 (IPv4) and BEP 7 (IPv6) compact
// lists; v4 is never nil, so the answer always has its "peers".
func packPeers(peers []netip.AddrPort) (v4, v6 []byte) {
	v4 = []byte{}
	for _, a := range peers {
		if a.Addr().Is4() {
			ip4 := a.Addr().As4()
			v4 = append(v4, ip4[:]...)
			v4 = append(v4, byte(a.Port()>>8), byte(a.Port()))
		} else {
			ip6 := a.Addr().As16()
			v6 = append(v6, ip6[:]...)
			v6 = append(v6, byte(a.Port()>>8), byte(a.Port()))
		}
	}
	return v4, v6
}

// seederPeer is the server's own seeder as the client r can reach it: the
// local address of r's connection with the seeder's port.
func (p *Publisher) seederPeer(r *http.Request) netip.AddrPort {
	sd := p.seeder.Load()
	if sd == nil {
		return netip.AddrPort{}
	}
	port := sd.port
	local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return netip.AddrPort{}
	}
	ap, err := netip.ParseAddrPort(local.String())
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), uint16(port))
}

// savedPeer is one peer as the store keeps it across a server restart.
type savedPeer struct {
	InfoHash string    `json:"infohash"`
	Addr     string    `json:"addr"`
	ID       string    `json:"id"`
	Seen     time.Time `json:"seen"`
	Seeder   bool      `json:"seeder"`
}

// Save writes the live peers to path (through a temporary file), so that a
// restarted server can name them at once: a seeding client announces again
// only after the announce interval, and until then a downloader without a
// web seed would find nobody.
func (s *PeerStore) Save(path string) error {
	s.mu.Lock()
	now := s.now()
	var out []savedPeer
	for ih, peers := range s.torrents {
		for key, p := range peers {
			if now.Sub(p.seen) <= s.ttl {
				out = append(out, savedPeer{InfoHash: hex.EncodeToString(ih[:]), Addr: key.addr.String(), ID: hex.EncodeToString(key.id[:]), Seen: p.seen, Seeder: p.seeder})
			}
		}
	}
	s.changed = false
	s.mu.Unlock()
	raw, err := json.Marshal(out)
	if err != nil {
		return err
	}
	// A temporary file of its own: the periodic save and the one at stop
	// may overlap.
	f, err := os.CreateTemp(filepath.Dir(path), ".peers-*")
	if err != nil {
		return fmt.Errorf("save tracker peers: %w", err)
	}
	_, err = f.Write(raw)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("save tracker peers: %w", err)
	}
	return nil
}

// Load adds the peers a previous run saved at path that have not expired.
// A missing file is no error; a damaged one is skipped with the error.
func (s *PeerStore) Load(path string) error {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load tracker peers: %w", err)
	}
	var saved []savedPeer
	if err := json.Unmarshal(raw, &saved); err != nil {
		return fmt.Errorf("load tracker peers from %s: %w", path, err)
	}
	now := s.now()
	for _, sp := range saved {
		var ih, id [20]byte
		addr, err := netip.ParseAddrPort(sp.Addr)
		if err != nil || now.Sub(sp.Seen) > s.ttl {
			continue
		}
		if n, err := hex.Decode(ih[:], []byte(sp.InfoHash)); err != nil || n != 20 {
			continue
		}
		hex.Decode(id[:], []byte(sp.ID))
		left := int64(1)
		if sp.Seeder {
			left = 0
		}
		s.Announce(ih, id, addr, "", left)
		s.mu.Lock()
		if p := s.torrents[ih][peerKey{addr, id}]; p != nil {
			p.seen = sp.Seen // as it was, so it expires when it would have
		}
		s.mu.Unlock()
	}
	return nil
}

// SaveIfChanged saves the store to path when a peer came, changed or went
// since the last save: called every few seconds, it keeps what a restart
// after a crash (kill -9) finds within those seconds of the truth.
func (s *PeerStore) SaveIfChanged(path string) error {
	s.mu.Lock()
	changed := s.changed
	s.mu.Unlock()
	if !changed {
		return nil
	}
	return s.Save(path)
}
