package swarm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	pp "github.com/anacrolix/torrent/peer_protocol"
	"github.com/anacrolix/torrent/tracker"
)

// PeerConfig configures a host's Peer.
type PeerConfig struct {
	// CacheDir holds one .tpkg per torrent, named as the torrent names it.
	CacheDir string
	// StateDir holds the piece-completion database.
	StateDir string
	// ListenAddr is "host:port"; port 0 picks one.
	ListenAddr string
	// NoWebSeeds ignores the repository's HTTP web seed: downloads come from
	// peers only.
	NoWebSeeds bool
	Logger     *slog.Logger
	// StallTimeout fails a download that makes no progress for this long.
	// Zero means 2 minutes.
	StallTimeout time.Duration
	// QuietPeers is how long a download's peer connections may bring not a
	// byte before they are closed and made again. Zero means 10 s.
	QuietPeers time.Duration
	// WebSeedStall is how long a download may get nothing from peers
	// before the web seed joins. Zero means 3 s: long enough for a tracker
	// answer, a handshake and the first pieces from a seed on the other
	// side of the world.
	WebSeedStall time.Duration
	// DHT, when set, runs a DHT node beside the trackers.
	DHT *DHTConfig
	// ConnsPerTorrent caps each torrent's connections. Zero means
	// peerConnsPerTorrent, what a host needs; a mirror, which many hosts
	// download from at once, wants ServingConnsPerTorrent.
	ConnsPerTorrent int
	// LiveTorrents caps the seeded torrents live at once (dormancy.go;
	// downloads are not counted); zero means 1,000.
	LiveTorrents int
	// IdleAfter is how long a live seeded torrent may move no data before
	// it goes dormant; zero means 30 s.
	IdleAfter time.Duration
	// Refuse serves a piece only to a peer that cannot have it from
	// another, as the repository's seeder does (origin.go): a mirror's
	// peer, whose uplink serves many hosts. It calls itself
	// MirrorClientName. Hosts refuse nothing.
	Refuse bool
}

// Spec is one package to download or seed: its torrent as the signed index
// describes it, and where the swarm is.
type Spec struct {
	File      string // the torrent's name, the file in the cache
	InfoHash  [20]byte
	InfoBytes []byte
	SHA256    string // hex, of the whole file
	Size      int64
	Trackers  []string
	WebSeeds  []string // base URLs; the client appends the file name
}

// Progress is a download's state.
type Progress struct {
	Bytes, Total int64
	Rate         float64 // bytes per second
	Peers        int
}

// corruptWait is how long a download that has seen a bad piece may go
// without progress before it is refused as corrupt, when no source is left
// (no peer connected that has a piece it lacks, none waiting to be dialed,
// none being dialed, and the trackers asked again since the bad piece).
const corruptWait = 3 * time.Second

// corruptDeadline is how long a download that has seen a bad piece may go
// without progress while sources are left: peers the trackers or the DHT
// named may never deliver (a tracker keeps naming a host that is gone).
// 20 s is the announce sent at the first bad piece (up to 10 s, its
// timeout) and then QuietPeers (10 s), the time a connected peer already
// has to bring a byte before its connection is closed as quiet; on
// loopback and a LAN a good peer brings a one-piece package well within it.
const corruptDeadline = 20 * time.Second

// ErrCorrupt means the bytes that arrived do not match the signed index.
var ErrCorrupt = errors.New("downloaded data does not match the signed index")

// Peer is a host's member of the swarm, one anacrolix/torrent client: it downloads packages
// into the cache directory and seeds every package it is told to, with file
// storage on the cache directory and no part files.
type Peer struct {
	cfg        PeerConfig
	client     *torrent.Client
	storage    *fileStore
	completion *pieceCompletion
	port       int
	dht        *dhtNode // nil without the DHT
	log        *slog.Logger
	// trackerDial is how announces reach the trackers (nil: the default).
	trackerDial func(ctx context.Context, network, addr string) (net.Conn, error)

	// stop ends the goroutines the client runs for all its torrents.
	stop context.CancelFunc
	bg   sync.WaitGroup

	mu     sync.Mutex // guards what follows, and every change of the live set
	closed bool
	// held are the torrents the client downloads or seeds, live or
	// dormant (dormancy.go); torrents are the live ones.
	held     *dormancy[Spec]
	torrents map[metainfo.Hash]*torrent.Torrent

	// downloaders is what the tracker last counted of each torrent's
	// downloaders, for limitRepositoryQueue.
	swarmMu     sync.Mutex
	downloaders map[metainfo.Hash]int

	policy *originPolicy // nil unless cfg.Refuse

	// announcing bounds the downloads' announces in flight (each is an
	// HTTP connection of its own to the tracker).
	announcing chan struct{}
}

// maxAnnouncing is the most announces a client's downloads have in flight
// at once. A transaction of 300 packages announced 300 at once, over 300
// connections from one address: past the repository's per-address cap
// (128) the tracker refused the rest, and those downloads waited for
// their next announce (3 s, then 3 more): 10 s for what took 1.2 s.
const maxAnnouncing = 32

// NewPeer starts the client listening on cfg.ListenAddr.
func NewPeer(cfg PeerConfig) (*Peer, error) {
	cfg.setDefaults()
	listen, err := parseListenAddr(cfg.ListenAddr)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{cfg.CacheDir, cfg.StateDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("torrent client: %w", err)
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	pc, err := openPieceCompletion(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	st := newFileStore(cfg.CacheDir, pc, true)
	tc := newTorrentConfig(listen, st, log)
	tc.DisableWebseeds = cfg.NoWebSeeds
	// A complete torrent being seeded "wants peers" in anacrolix, which
	// then looks for them (the DHT every few minutes; trackers are tpm's,
	// see announcer.go) and dials the repository's seeder only for both
	// sides to drop the connection (both complete). With the low water mark
	// below zero no torrent wants peers; downloads find theirs through
	// their own announces.
	tc.TorrentPeersLowWater = -1
	tc.EstablishedConnsPerTorrent = cfg.ConnsPerTorrent
	c := &Peer{cfg: cfg, storage: st, completion: pc, log: log, downloaders: make(map[metainfo.Hash]int), trackerDial: listen.trackerDial(),
		announcing: make(chan struct{}, maxAnnouncing),
		held:       newDormancy[Spec](cfg.LiveTorrents, cfg.IdleAfter), torrents: make(map[metainfo.Hash]*torrent.Torrent)}
	tc.Callbacks.ReadExtendedHandshake = c.limitRepositoryQueue
	var wrap func(net.Conn) net.Conn
	if cfg.Refuse {
		c.policy = newMirrorPolicy()
		tc.ExtendedHandshakeClientVersion = MirrorClientName
		wrap = func(conn net.Conn) net.Conn { return newOriginConn(conn, c.policy) }
	}
	cl, err := newTorrentClient(tc, listen, st, wrap, c.wakeForPeer)
	if err != nil {
		return nil, err
	}
	c.client, c.port = cl, cl.LocalPort()
	if cfg.DHT != nil {
		if c.dht, err = startDHT(cl, listen, *cfg.DHT, log, c.wakeForPeer); err != nil {
			cl.Close()
			st.Close()
			return nil, err
		}
	}
	c.startLiveKeeping()
	return c, nil
}

func (cfg *PeerConfig) setDefaults() {
	if cfg.StallTimeout <= 0 {
		cfg.StallTimeout = 2 * time.Minute
	}
	if cfg.QuietPeers <= 0 {
		cfg.QuietPeers = 10 * time.Second
	}
	if cfg.WebSeedStall <= 0 {
		cfg.WebSeedStall = 3 * time.Second
	}
	if cfg.ConnsPerTorrent <= 0 {
		cfg.ConnsPerTorrent = peerConnsPerTorrent
	}
}

// RepositoryClientName is what the repository's seeder calls itself in the
// extended handshake, so that clients can tell it from the other hosts.
const RepositoryClientName = "tpmd server"

// The repository's uplink is the fleet's bottleneck, and the repository
// should send each piece once and let the hosts spread it. anacrolix queues
// up to the 1,024 requests of 16 KiB that a peer allows; a request that
// waits long in the repository's queue is likely for a piece that another
// host has got meanwhile, and the repository sends it anyway. So a client
// keeps a short queue there, shorter the more hosts download the torrent
// (as the tracker counted them): the repository's share of each host falls
// as 1/d with d downloaders, and so does the part of a host's pieces that
// only the repository can give it, hence repositoryQueue/d², at least
// minRepositoryQueue. A host alone keeps 64 requests (1 MiB, 80 Mbit/s at a
// 100 ms round trip); 4 hosts keep 4 each, 16 hosts 2. test/bench/swarm,
// 16 hosts: the repository sent 1.57 times the set with anacrolix's queue,
// about 1.48 with 64/d and 1.33–1.37 with 64/d².
const (
	repositoryQueue    = 64
	minRepositoryQueue = 2
)

// limitRepositoryQueue is the client's extended-handshake callback, which
// anacrolix runs before it takes the peer's reqq.
func (c *Peer) limitRepositoryQueue(pc *torrent.PeerConn, m *pp.ExtendedHandshakeMessage) {
	if !strings.HasPrefix(m.V, RepositoryClientName) {
		return
	}
	downloaders := 1
	if pc != nil && pc.Torrent() != nil {
		ih := pc.Torrent().InfoHash()
		c.swarmMu.Lock()
		downloaders = c.downloaders[ih]
		c.swarmMu.Unlock()
	}
	if q := repositoryReqq(downloaders); m.Reqq <= 0 || m.Reqq > q {
		m.Reqq = q
	}
}

// repositoryReqq is a client's queue at the repository when the tracker
// counts downloaders hosts downloading the torrent (this one included).
func repositoryReqq(downloaders int) int {
	d := max(1, downloaders)
	return max(minRepositoryQueue, repositoryQueue/(d*d))
}

// Port is the port the client listens on.
func (c *Peer) Port() int { return c.port }

// Path is where the cache keeps the file of a torrent named file.
func (c *Peer) Path(file string) string { return filepath.Join(c.cfg.CacheDir, file) }

// checkSpec refuses a Spec whose torrent is not the index's file.
func checkSpec(s Spec) error {
	if metainfo.HashBytes(s.InfoBytes) != s.InfoHash {
		return fmt.Errorf("torrent of %s: info bytes do not match the infohash", s.File)
	}
	var info metainfo.Info
	if err := unmarshalInfo(s.InfoBytes, &info); err != nil {
		return fmt.Errorf("torrent of %s: %w", s.File, err)
	}
	if info.Name != s.File || info.IsDir() || info.Length != s.Size {
		return fmt.Errorf("torrent of %s: names %q of %d bytes, not the index's file", s.File, info.Name, info.Length)
	}
	return nil
}

// addForDownload holds s and makes it live, pinned until the download
// ends (unpin).
func (c *Peer) addForDownload(s Spec) (*torrent.Torrent, error) {
	if err := checkSpec(s); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errors.New("torrent client is closed")
	}
	if _, live := c.torrents[s.InfoHash]; !live {
		if err := extendShort(c.Path(s.File), s.Size); err != nil {
			return nil, fmt.Errorf("cache file of %s: %w", s.File, err)
		}
	}
	c.held.hold(s.InfoHash, s)
	t, _ := c.wakeLocked(s.InfoHash, true)
	return t, nil
}

// extendShort refuses a cache path that is not a regular file (the store
// would read and write through it), and makes a cache file shorter than
// its torrent (a download cut short) as long as the torrent, as a download
// leaves it: the bytes added read as zeros, so the pieces they cover fail
// the check the client runs when it adds the torrent, and are downloaded
// again.
func extendShort(path string, size int64) error {
	// Non-blocking and without following links: whatever stands at the
	// path, nothing here waits on it or writes through it.
	f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file (%v); remove it", path, fi.Mode().Type())
	}
	if fi.Size() >= size {
		return nil
	}
	return f.Truncate(size)
}

// Seed holds the torrent of a file the cache already has, so peers can get
// it: dormant when the file is recorded whole, live until the client has
// checked its pieces otherwise (the daemon stopped before recording it).
func (c *Peer) Seed(s Spec) error {
	if err := checkSpec(s); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errors.New("torrent client is closed")
	}
	c.held.hold(s.InfoHash, s)
	if c.completion.isWhole(s.InfoHash) {
		return nil
	}
	c.wakeLocked(s.InfoHash, false)
	return nil
}

// AddTrackers adds trackers to every torrent the client holds: those
// seeded from the cache before the index named them announce there too.
func (c *Peer) AddTrackers(trackers []string) {
	if len(trackers) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for ih, s := range c.held.all {
		merged := slices.Clone(s.Trackers)
		for _, t := range trackers {
			if !slices.Contains(merged, t) {
				merged = append(merged, t)
			}
		}
		if len(merged) != len(s.Trackers) {
			s.Trackers = merged
			c.held.hold(ih, s)
		}
	}
}

// Held is every torrent the client holds, live or dormant.
func (c *Peer) Held() []Spec {
	c.mu.Lock()
	defer c.mu.Unlock()
	specs := make([]Spec, 0, len(c.held.all))
	for _, s := range c.held.all {
		specs = append(specs, s)
	}
	return specs
}

// Drop stops seeding ih and forgets it; the file stays (see Remove).
func (c *Peer) Drop(ih [20]byte) {
	c.mu.Lock()
	if c.held.forget(ih) {
		c.sleepLocked(ih)
	}
	c.mu.Unlock()
	c.swarmMu.Lock()
	delete(c.downloaders, ih)
	c.swarmMu.Unlock()
}

// Remove drops the torrent and deletes its file from the cache.
func (c *Peer) Remove(s Spec) error {
	c.Drop(s.InfoHash)
	c.awaitDropped(s.InfoHash)
	if err := os.Remove(c.Path(s.File)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cache: %w", err)
	}
	return c.completion.forget(s.InfoHash)
}

// droppedWait bounds the wait for a dropped torrent's storage to close
// (anacrolix closes it once the pieces being hashed are done).
const droppedWait = 10 * time.Second

// awaitDropped waits until nothing can write to the file of the dropped
// torrent ih any more, so that deleting the file is final.
func (c *Peer) awaitDropped(ih metainfo.Hash) {
	select {
	case <-c.storage.dropped(ih):
	case <-time.After(droppedWait):
		c.log.Warn("the torrent client did not close a dropped torrent's storage in time; its file may come back", "infohash", ih.HexString())
	}
}

// Download gets the file of s into the cache (from peers found through
// the trackers and, as a fallback, the web seeds), calling progress now and
// then, and returns its path once its sha256 matches s.SHA256. A cancelled
// ctx stops the download and deletes what had arrived, unless the file was
// complete before. The torrent stays added afterwards, so the file is
// seeded at once.
func (c *Peer) Download(ctx context.Context, s Spec, progress func(Progress)) (string, error) {
	path := c.Path(s.File)
	t, err := c.addForDownload(s)
	if err != nil {
		return "", err
	}
	defer c.unpin(s.InfoHash)
	d := download{c: c, ctx: ctx, s: s, t: t, path: path, wasComplete: t.Complete().Bool(), trackerSeeds: -1}
	d.webSeedWaiting = !d.wasComplete && len(s.WebSeeds) > 0 && !c.cfg.NoWebSeeds
	t.DownloadAll()
	seeders := make(chan int, 1)
	if !d.wasComplete {
		go func() { seeders <- c.announce(ctx, t, s, s.Size-t.BytesCompleted()) }()
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	d.startClocks(time.Now())
	for done := false; !done; {
		select {
		case <-t.Complete().On():
			done = true
		case <-ctx.Done():
			return d.fail(fmt.Errorf("download of %s: %w", s.File, ctx.Err()))
		case <-c.client.Closed():
			return "", fmt.Errorf("download of %s: the torrent client stopped", s.File)
		case n := <-seeders:
			d.trackerAnswered(n)
		case now := <-tick.C:
			if err := d.tick(now, progress); err != nil {
				return d.fail(err)
			}
		}
	}
	return d.finish(progress)
}

// download is the state of one Download, from tick to tick.
type download struct {
	c           *Peer
	ctx         context.Context
	s           Spec
	t           *torrent.Torrent
	path        string
	wasComplete bool
	// The web seed is the fallback, not a source beside the peers: added at
	// once it fetches the whole file over HTTP on every host (anacrolix asks
	// web seeds for 64 MiB slices, and then has peers serve pieces from the
	// end of the file, the same pieces on every host), so the repository's
	// uplink carries the set once per host. It joins when the tracker knows
	// no seed, or when the peers bring nothing for cfg.WebSeedStall (and
	// QuietPeers more if the tracker counted a seed) with no seed connected.
	webSeedWaiting bool
	trackerSeeds   int // the first announce's count of seeds, -1 until it answers

	rate                  float64
	lastBytes, lastRead   int64
	lastProgress          time.Time // the last tick that found more bytes
	lastTick              time.Time
	lastAnnounce          time.Time
	lastArrival, lastKick time.Time // for QuietPeers
	lastRoom              time.Time // when a stall last raised the connections
	conns                 int
	// firstBad is the tick that first saw a piece fail its hash check;
	// badAnnounced says when the announce sent then answered, and
	// badAnnouncedAt keeps it.
	firstBad       time.Time
	badAnnounced   chan time.Time
	badAnnouncedAt time.Time
}

// startClocks starts the measures of progress and of stalls at now.
func (d *download) startClocks(now time.Time) {
	d.lastBytes, d.lastProgress, d.lastTick = -1, now, now
	d.lastAnnounce = now
	d.lastRead, d.lastArrival, d.lastKick = 0, now, now
	d.lastRoom, d.conns = now, d.c.cfg.ConnsPerTorrent
}

func (d *download) addWebSeeds(why string) {
	if d.webSeedWaiting {
		d.webSeedWaiting = false
		d.c.log.Debug("web seed added", "file", d.s.File, "why", why)
		d.t.AddWebSeeds(d.s.WebSeeds)
	}
}

// trackerAnswered takes the first announce's count of seeds, n.
func (d *download) trackerAnswered(n int) {
	d.trackerSeeds = n
	// No tracker answered: with the DHT, peers may still come from it, and
	// the web seed waits for WebSeedStall like behind peers that bring
	// nothing.
	if n == 0 || (n < 0 && d.c.dht == nil) {
		d.addWebSeeds("the tracker knows no seed")
	}
}

// fail ends the download with err, deleting what arrived unless the file
// was complete before.
func (d *download) fail(err error) (string, error) {
	if !d.wasComplete {
		d.discard()
	}
	return "", err
}

// discard drops the torrent and deletes its file.
func (d *download) discard() {
	d.c.Drop(d.s.InfoHash)
	d.c.awaitDropped(d.s.InfoHash)
	os.Remove(d.path)
	d.c.completion.forget(d.s.InfoHash)
}

// tick looks at the download's progress and does what a stall calls for.
// It returns the error that ends the download.
func (d *download) tick(now time.Time, progress func(Progress)) error {
	st := d.t.Stats()
	have := d.t.BytesCompleted()
	d.measure(now, have)
	d.makeRoom(now, have)
	d.webSeedIfStalled(now)
	progress(Progress{Bytes: have, Total: d.s.Size, Rate: d.rate, Peers: st.ActivePeers})
	if err := d.checkCorrupt(now, st, have); err != nil {
		return err
	}
	d.reannounceIfAlone(now, st.ActivePeers, have)
	d.closeQuietPeers(now, st.ActivePeers, st.BytesReadData.Int64(), have)
	if now.Sub(d.lastProgress) > d.c.cfg.StallTimeout {
		return fmt.Errorf("download of %s made no progress for %v (no peers or web seed reachable?)", d.s.File, d.c.cfg.StallTimeout)
	}
	return nil
}

// measure updates the rate and the time of the last progress.
func (d *download) measure(now time.Time, have int64) {
	if dt := now.Sub(d.lastTick).Seconds(); dt > 0 && d.lastBytes >= 0 {
		// A short moving average, so the rate shown does not jump.
		d.rate = 0.7*d.rate + 0.3*float64(have-d.lastBytes)/dt
	}
	if have != d.lastBytes {
		d.lastProgress = now
	}
	d.lastBytes, d.lastTick = have, now
}

// makeRoom lets a stalled download with no seed connected make one more
// connection, every WebSeedStall, up to stalledConnsPerTorrent (the cap
// evicts the least recently helpful connection, and the repository's
// seeder, refusing what other hosts have, is often that; the pieces left
// may be on hosts it is not connected to), and asks the trackers again.
// Opening up to anacrolix's 50 at once cost the CPU saved: under load, 3 s
// stalls are common.
func (d *download) makeRoom(now time.Time, have int64) {
	stall := d.c.cfg.WebSeedStall
	if now.Sub(d.lastProgress) > stall && now.Sub(d.lastRoom) > stall && d.conns < stalledConnsPerTorrent && !seedConnected(d.t) {
		d.lastRoom = now
		d.conns++
		d.t.SetMaxEstablishedConns(d.conns)
		go d.c.announce(d.ctx, d.t, d.s, d.s.Size-have)
	}
}

// webSeedIfStalled adds the web seed to a download that peers leave
// without progress. Not while a seed is connected: the repository's seeder
// refuses pieces that other hosts have (origin.go), and a host waiting for
// those is no reason to fetch the file over HTTP. And when the tracker
// counted a seed, only after the quiet connections were made again
// (QuietPeers): under load the first messages of the seeder can take
// seconds (bench-swarm, 16 hosts: every host added the web seed 3 s into a
// download, with the seeder connected and silent), and the web seed goes
// through the same uplink. test/bench/swarmsim: with the web seed joining
// on every 3 s stall, 10,000 hosts never finish.
func (d *download) webSeedIfStalled(now time.Time) {
	stall := d.c.cfg.WebSeedStall
	if d.trackerSeeds > 0 {
		stall += d.c.cfg.QuietPeers
	}
	if d.webSeedWaiting && now.Sub(d.lastProgress) > stall && !seedConnected(d.t) {
		d.addWebSeeds("no progress from peers")
	}
}

// checkCorrupt refuses a download that had a piece fail its hash check,
// and nothing good since while no good source is left: the only source
// sends bad bytes (a corrupt file on the web seed or at the repository's
// seeder; anacrolix then drops that source, and bans a peer's address).
// The SHA-1 of each piece comes from the signed index, so none of it was
// kept. The first bad piece sends an announce at once, so that peers that
// appeared since are learnt; peers the trackers or the DHT named and not
// yet tried are sources, and so are the connected peers that have a piece
// this host lacks. With sources left, the download fails only
// corruptDeadline after the first bad piece (or the last progress).
func (d *download) checkCorrupt(now time.Time, st torrent.TorrentStats, have int64) error {
	bad := st.PiecesDirtiedBad.Int64()
	if bad == 0 || have >= d.s.Size {
		return nil
	}
	if d.firstBad.IsZero() {
		d.firstBad = now
		answered := make(chan time.Time, 1)
		d.badAnnounced = answered
		go func() {
			d.c.announce(d.ctx, d.t, d.s, d.s.Size-have)
			answered <- time.Now()
		}()
		d.c.dht.announce(d.ctx, d.t)
	}
	if now.Sub(d.lastProgress) <= corruptWait {
		return nil
	}
	since := d.firstBad
	if d.lastProgress.After(since) {
		since = d.lastProgress
	}
	sources := d.sourcesLeft(now, st)
	switch {
	case sources == 0:
		return fmt.Errorf("%s: %w (%d pieces failed their hash check and no good source is left; the repository's copy may be corrupt)", d.s.File, ErrCorrupt, bad)
	case now.Sub(since) > corruptDeadline:
		return fmt.Errorf("%s: %w (%d pieces failed their hash check and the %d peers left brought nothing good for %v; the repository's copy may be corrupt)", d.s.File, ErrCorrupt, bad, sources, corruptDeadline)
	}
	return nil
}

// sourcesLeft counts what may still bring the pieces a download lacks: the
// peers waiting to be dialed and being dialed, the connected peers that
// have one of those pieces or have not said yet what they have, and the
// announce sent at the first bad piece until it answers and for
// corruptWait after, so the peers it named have the time to connect and
// say what they have (between an address added and a connection whose
// bitfield came, anacrolix counts the peer nowhere).
func (d *download) sourcesLeft(now time.Time, st torrent.TorrentStats) int {
	n := st.PendingPeers + st.HalfOpenPeers
	if d.badAnnounced != nil {
		select {
		case at := <-d.badAnnounced:
			d.badAnnouncedAt, d.badAnnounced = at, nil
		default:
			n++
		}
	}
	if !d.badAnnouncedAt.IsZero() && now.Sub(d.badAnnouncedAt) < corruptWait {
		n++
	}
	var missing []int
	for i := range d.t.NumPieces() {
		if !d.t.PieceState(i).Complete {
			missing = append(missing, i)
		}
	}
	for _, pc := range d.t.PeerConns() {
		has := pc.PeerPieces()
		if has.IsEmpty() {
			n++ // nothing said yet; a peer that never sends is the deadline's
			continue
		}
		for _, i := range missing {
			if has.Contains(uint32(i)) {
				n++
				break
			}
		}
	}
	return n
}

// reannounceIfAlone asks the trackers again for a download with no peer
// and no progress (anacrolix's own announces ask for no peers, see
// NewPeer), so a peer that failed to connect is tried again and one that
// appeared since is found.
func (d *download) reannounceIfAlone(now time.Time, peers int, have int64) {
	if peers == 0 && now.Sub(d.lastProgress) > reannounce && now.Sub(d.lastAnnounce) > reannounce {
		d.lastAnnounce = now
		go d.c.announce(d.ctx, d.t, d.s, d.s.Size-have)
		d.c.dht.announce(d.ctx, d.t)
	}
}

// closeQuietPeers closes the connections when they bring nothing, not a
// byte, for QuietPeers, and asks the trackers again, so fresh ones are
// made: seen under load, a peer that has the piece and a connection that
// stays up, and no data on it for good. Bytes, not pieces, count: a large
// piece from a slow peer is progress.
func (d *download) closeQuietPeers(now time.Time, peers int, read, have int64) {
	if read != d.lastRead {
		d.lastRead, d.lastArrival = read, now
	}
	if quiet := d.c.cfg.QuietPeers; peers > 0 && now.Sub(d.lastArrival) > quiet && now.Sub(d.lastKick) > quiet {
		d.lastKick = now
		d.c.log.Debug("closing quiet peer connections", "file", d.s.File, "peers", peers)
		for _, pc := range d.t.PeerConns() {
			pc.Close()
		}
		go d.c.announce(d.ctx, d.t, d.s, d.s.Size-have)
	}
}

// finish checks the whole file against the index, records it whole and
// tells the trackers that this host seeds it.
func (d *download) finish(progress func(Progress)) (string, error) {
	progress(Progress{Bytes: d.s.Size, Total: d.s.Size, Rate: d.rate, Peers: d.t.Stats().ActivePeers})
	if err := checkSHA256(d.path, d.s.SHA256); err != nil {
		// Drop it whatever wasComplete says: it is not what the index signs.
		d.discard()
		return "", err
	}
	if err := d.c.completion.markWhole(d.s.InfoHash, d.path); err != nil {
		return "", fmt.Errorf("download of %s: %w", d.s.File, err)
	}
	if !d.wasComplete {
		// Tell the trackers at once that this host now seeds: anacrolix's
		// next announce is an interval away, and until then the tracker
		// counts a leecher (and a restarted tracker saves no seeder).
		go d.c.announce(context.WithoutCancel(d.ctx), d.t, d.s, 0)
	}
	return d.path, nil
}

// seedConnected says whether a seed of t is connected: the repository's
// seeder (it seeds what the index lists; under load its first message may
// come late, bench-swarm saw 3 s at 16 hosts), or a peer with every piece.
func seedConnected(t *torrent.Torrent) bool {
	n := uint64(t.NumPieces())
	for _, pc := range t.PeerConns() {
		if name, _ := pc.PeerClientName.Load().(string); strings.HasPrefix(name, RepositoryClientName) {
			return true
		}
		if pc.PeerPieces().GetCardinality() >= n {
			return true
		}
	}
	return false
}

// peerConnsPerTorrent caps a download's connections. Every connection
// costs CPU for each piece any peer completes (a have, and anacrolix then
// goes over the torrent's pieces again to choose requests), and 10 keep a
// host's 50 Mbit/s busy: bench-swarm, 16 hosts on 2 cores, CPU per GB fell
// from about 128 to 90 s with anacrolix's 50 (the swarm was CPU-bound).
// A stalled download with no seed connected raises it one at a time, up to
// stalledConnsPerTorrent, anacrolix's own (PeerConfig.ConnsPerTorrent).
const (
	peerConnsPerTorrent    = 10
	stalledConnsPerTorrent = ServingConnsPerTorrent
)

// ServingConnsPerTorrent is anacrolix's cap, for a Peer whose job is to
// serve many hosts at once (a mirror).
const ServingConnsPerTorrent = 50

// reannounce is how long a download without peers or progress waits
// before asking the trackers for peers itself.
const reannounce = 5 * time.Second

// announce asks the trackers for peers and adds them; it returns the most
// seeders a tracker counted, -1 when none answered.
func (c *Peer) announce(ctx context.Context, t *torrent.Torrent, s Spec, left int64) int {
	seeders := -1
	for _, url := range s.Trackers {
		select {
		case c.announcing <- struct{}{}:
		case <-ctx.Done():
			return seeders
		}
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		res, err := tracker.Announce{
			TrackerUrl:  url,
			Context:     actx,
			DialContext: c.trackerDial,
			Request: tracker.AnnounceRequest{
				InfoHash: s.InfoHash, PeerId: c.client.PeerID(), Left: left, NumWant: 50, Port: uint16(c.port),
			},
		}.Do()
		cancel()
		<-c.announcing
		if err != nil {
			c.log.Debug("announce", "tracker", url, "err", err)
			continue
		}
		var peers []torrent.PeerInfo
		for _, p := range res.Peers {
			pi := torrent.PeerInfo{Addr: &net.TCPAddr{IP: p.IP, Port: p.Port}, Source: torrent.PeerSourceTracker}
			copy(pi.Id[:], p.ID)
			peers = append(peers, pi)
		}
		t.AddPeers(peers)
		seeders = max(seeders, int(res.Seeders))
		c.swarmMu.Lock()
		c.downloaders[s.InfoHash] = int(res.Leechers)
		c.swarmMu.Unlock()
	}
	return seeders
}

// checkSHA256 compares the file's sha256 with want and, when it matches,
// syncs the file: its pieces were written without an fsync each.
func checkSHA256(path, want string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("verify %s: %w", filepath.Base(path), err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("verify %s: %w", filepath.Base(path), err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("%s: %w (sha256 %s, the index says %s)", filepath.Base(path), ErrCorrupt, got, want)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", filepath.Base(path), err)
	}
	return nil
}

// Stats is what the client does for the host.
type Stats struct {
	Torrents, Complete, Peers int
	Live                      int // torrents live in anacrolix
	BytesUp, BytesDown        int64
	DHTNodes                  int // the DHT nodes known (0 without the DHT)
}

// Stats counts torrents (held; complete: recorded whole, or live and
// verified), connected peers and data bytes moved.
func (c *Peer) Stats() Stats {
	var s Stats
	c.mu.Lock()
	for ih := range c.held.all {
		s.Torrents++
		if t, ok := c.torrents[ih]; ok {
			if t.Complete().Bool() {
				s.Complete++
			}
			s.Peers += t.Stats().ActivePeers
			s.Live++
		} else if c.completion.isWhole(ih) {
			s.Complete++
		}
	}
	c.mu.Unlock()
	cs := c.client.ConnStats()
	s.BytesUp, s.BytesDown = cs.BytesWrittenData.Int64(), cs.BytesReadUsefulData.Int64()
	s.DHTNodes = c.dht.Nodes()
	return s
}

// Seeding is the number of torrents loaded and of complete ones (what a
// mirror's /healthz says of its peer).
func (c *Peer) Seeding() (loaded, complete int) {
	s := c.Stats()
	return s.Torrents, s.Complete
}

// Live is the number of live torrents.
func (c *Peer) Live() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.torrents)
}

// Uploaded is the number of package bytes sent to peers since the start.
func (c *Peer) Uploaded() int64 { return c.Stats().BytesUp }

// Refused is the number of piece requests refused since the start because
// other peers have the piece (PeerConfig.Refuse; 0 at a host).
func (c *Peer) Refused() int64 {
	if c.policy == nil {
		return 0
	}
	return c.policy.Rejected()
}

// Close stops the client: connections close, downloads fail.
func (c *Peer) Close() error {
	c.stop()
	c.bg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	errs := c.client.Close()
	errs = append(errs, c.dht.Close(), c.storage.Close())
	return errors.Join(errs...)
}

func unmarshalInfo(b []byte, info *metainfo.Info) error {
	return bencode.Unmarshal(b, info)
}
