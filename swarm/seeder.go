package swarm

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/storage"
)

// SeederConfig says where a Seeder finds its files and listens.
type SeederConfig struct {
	// Dir is the package directory; a torrent's file is Dir/NAME. The
	// seeder never writes to it.
	Dir string
	// StateDir holds the record of the files checked whole (complete.db,
	// see pieceCompletion), so that a restart does not re-hash every
	// package.
	StateDir string
	// ListenAddr is the BitTorrent listening address, "host:port"; port 0
	// picks a free one (see Port).
	ListenAddr string
	// Logger gets anacrolix/torrent's log records; nil discards them.
	Logger *slog.Logger
	// Trackers are standard trackers the seeder announces to, one tier
	// each; none: it does not announce (the server's own tracker names it).
	Trackers []string
	// DHT, when set, runs a DHT node (the fleet's bootstrap node when it
	// names none to join through) and announces every package there.
	DHT *DHTConfig
	// LiveTorrents caps the torrents live at once (dormancy.go); zero
	// means 1,000.
	LiveTorrents int
	// IdleAfter is how long a live torrent may send nothing before it
	// goes dormant; zero means 30 s.
	IdleAfter time.Duration
}

// Item is one torrent to seed: its info dictionary, and what its file
// looked like when the repository's scanner hashed it (so the seeder can
// serve it without reading it again, as long as it still looks so).
type Item struct {
	InfoHash         [20]byte
	InfoBytes        []byte
	Size             int64
	MTimeNS, CTimeNS int64
	Inode            uint64
}

func (it Item) stamp() fileStamp {
	return fileStamp{size: it.Size, mtime: it.MTimeNS, ctime: it.CTimeNS, inode: it.Inode}
}

// Seeder seeds package files from the package directory with one
// anacrolix/torrent client: file storage on the directory itself, the
// files checked whole recorded in bbolt, no part files (with part files, a
// failed piece could rename a complete package to .part), and no
// downloading at all, so nothing a peer sends can ever be written into the
// package directory. It announces only to the standard trackers it is
// given: the server's own tracker lists it as a peer without one (see
// publish).
//
// Its torrents are dormant until demand wakes them (dormancy.go): an
// incoming handshake, Wake (the server's tracker saw an announce), a DHT
// announce. So a repository of 100,000 packages costs a map entry for
// each, and anacrolix's memory only for what is being downloaded.
type Seeder struct {
	client  *torrent.Client
	storage storage.ClientImplCloser
	dir     string // the package directory
	// completion is the storage's; a torrent is recorded whole once
	// anacrolix has checked all its pieces (keepWhole).
	completion *pieceCompletion
	log        *slog.Logger
	port       int
	dht        *dhtNode
	// stop ends the goroutines the seeder runs for all its torrents.
	stop context.CancelFunc
	bg   sync.WaitGroup

	policy *originPolicy

	mu   sync.Mutex // serialises Sync, Close and every change of the live set
	held *dormancy[Item]
	// torrents are the live torrents.
	torrents map[metainfo.Hash]*torrent.Torrent
	// watched is closed when the keepWhole of a torrent has returned.
	watched map[metainfo.Hash]chan struct{}
	closed  bool
}

// NewSeeder starts a client listening on cfg.ListenAddr.
func NewSeeder(cfg SeederConfig) (*Seeder, error) {
	listen, err := parseListenAddr(cfg.ListenAddr)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("seeder state directory: %w", err)
	}
	// anacrolix's own bolt completion costs a transaction per piece and,
	// when a piece completes, one per piece of its file checked so far: a
	// fresh seeder checked 40 MB at 27 MB/s (BenchmarkSeederCheck).
	pc, err := openPieceCompletion(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	st := newFileStore(cfg.Dir, pc, false)

	tc := newTorrentConfig(listen, st, cfg.logger())
	tc.DisableWebseeds = true
	tc.ExtendedHandshakeClientVersion = RepositoryClientName
	s := &Seeder{
		storage:    st,
		dir:        cfg.Dir,
		completion: pc,
		log:        cfg.logger(),
		policy:     newOriginPolicy(),
		held:       newDormancy[Item](cfg.LiveTorrents, cfg.IdleAfter),
		torrents:   make(map[metainfo.Hash]*torrent.Torrent),
		watched:    make(map[metainfo.Hash]chan struct{}),
	}
	wrap := func(c net.Conn) net.Conn { return newOriginConn(c, s.policy) }
	if s.client, err = newTorrentClient(tc, listen, st, wrap, s.wakeForPeer); err != nil {
		return nil, err
	}
	s.port = s.client.LocalPort()
	if cfg.DHT != nil {
		if s.dht, err = startDHT(s.client, listen, *cfg.DHT, cfg.logger(), s.wakeForPeer); err != nil {
			s.client.Close()
			st.Close()
			return nil, err
		}
	}
	s.startLiveKeeping(cfg.Trackers, listen)
	return s, nil
}

// startLiveKeeping starts the seeder's goroutines for all its torrents:
// the idle sweep and, with standard trackers or the DHT to tell, the
// dormant torrents' announces.
func (s *Seeder) startLiveKeeping(trackers []string, listen listenAddr) {
	ctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		sweepLive(ctx, s.held.idle, s.sweep)
	}()
	if len(trackers) == 0 && s.dht == nil {
		return
	}
	s.held.announceSeeds(seedAnnounceInterval)
	tcl := trackerClient{peerID: s.client.PeerID(), port: s.port, dial: listen.trackerDial(), log: s.log}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		announceSeeds(ctx, s.nextAnnounce, func(ctx context.Context, ih metainfo.Hash) {
			seedAnnounce(ctx, tcl, trackers, ih)
			s.dht.announceSeed(ctx, ih, s.port)
		}, s.announced)
	}()
}

// keepWhole records ih whole once anacrolix has checked every piece of its
// file, so that the next start seeds it without reading it; it gives up
// when the torrent is dropped or the seeder closes (Close records what is
// complete then).
func (s *Seeder) keepWhole(t *torrent.Torrent, ih metainfo.Hash, done chan<- struct{}) {
	defer close(done)
	select {
	case <-t.Complete().On():
	case <-t.Closed():
		return
	}
	if err := s.completion.markWhole(ih, s.path(t)); err != nil {
		s.log.Warn("recording a checked package", "infohash", ih.HexString(), "err", err)
	}
}

func (cfg SeederConfig) logger() *slog.Logger {
	if cfg.Logger != nil {
		return cfg.Logger
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// path is where the file of the live torrent t is.
func (s *Seeder) path(t *torrent.Torrent) string {
	return filepath.Join(s.dir, t.Info().Name)
}

// Port is the port the seeder listens on.
func (s *Seeder) Port() int { return s.port }

// SyncStats counts what a Sync changed.
type SyncStats struct {
	Added, Dropped, Kept int
}

// Sync makes the seeded set equal to want: torrents not in want are
// dropped, new ones held dormant and recorded whole as the scanner saw
// their files, and the rest are left alone, connections and all. It
// compares the whole set (100 ms at 100,000); Update applies a change.
func (s *Seeder) Sync(ctx context.Context, want []Item) (SyncStats, error) {
	return s.change(ctx, want, func(wanted map[metainfo.Hash]Item) (gone []metainfo.Hash) {
		for ih := range s.held.all {
			if _, ok := wanted[ih]; !ok {
				gone = append(gone, ih)
			}
		}
		return gone
	})
}

// Update changes the seeded set by a generation's changes: the torrents
// of remove are dropped, and those of add held (new ones) or their files'
// stamps recorded (files hashed again), as Sync does for the whole set.
func (s *Seeder) Update(ctx context.Context, add []Item, remove [][20]byte) (SyncStats, error) {
	return s.change(ctx, add, func(wanted map[metainfo.Hash]Item) (gone []metainfo.Hash) {
		for _, ih := range remove {
			_, held := s.held.get(ih)
			if _, readded := wanted[ih]; held && !readded {
				gone = append(gone, ih)
			}
		}
		return gone
	})
}

// change holds items and drops what gone says of them, under s.mu.
func (s *Seeder) change(ctx context.Context, items []Item, gone func(wanted map[metainfo.Hash]Item) []metainfo.Hash) (SyncStats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return SyncStats{}, errors.New("seeder is closed")
	}
	wanted := make(map[metainfo.Hash]Item, len(items))
	for _, it := range items {
		wanted[it.InfoHash] = it
	}
	return s.changeLocked(ctx, wanted, gone(wanted))
}

// changeLocked drops gone and holds wanted; s.mu is held.
func (s *Seeder) changeLocked(ctx context.Context, wanted map[metainfo.Hash]Item, gone []metainfo.Hash) (SyncStats, error) {
	var st SyncStats
	for _, ih := range gone {
		s.dropLocked(ih)
		if err := s.completion.forget(ih); err != nil {
			s.log.Warn("forgetting a dropped package", "infohash", ih.HexString(), "err", err)
		}
		st.Dropped++
	}
	var errs []error
	stamps := make(map[metainfo.Hash]fileStamp)
	for ih, it := range wanted {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		old, kept := s.held.get(ih)
		switch {
		case kept:
			st.Kept++
		case metainfo.HashBytes(it.InfoBytes) != ih:
			errs = append(errs, fmt.Errorf("torrent %s: info bytes do not match the infohash", hex.EncodeToString(ih[:])))
			continue
		default:
			st.Added++
		}
		s.held.hold(ih, it)
		// Only a file the scan hashed anew: one found bad since it was
		// published stays so, whatever a later scan's unchanged stat says.
		if it.stamp() != (fileStamp{}) && (!kept || old.stamp() != it.stamp()) {
			stamps[ih] = it.stamp()
		}
	}
	if err := s.completion.markStamped(stamps); err != nil {
		errs = append(errs, err)
	}
	return st, errors.Join(errs...)
}

// dropLocked stops holding ih, dropping its torrent if it is live.
func (s *Seeder) dropLocked(ih metainfo.Hash) {
	if s.held.forget(ih) {
		s.sleepLocked(ih)
	}
}

// sleepLocked drops the live torrent ih from anacrolix; the caller has
// made it dormant (or forgotten it) in held.
func (s *Seeder) sleepLocked(ih metainfo.Hash) {
	t, ok := s.torrents[ih]
	if !ok {
		return
	}
	complete, path := t.Complete().Bool(), s.path(t)
	t.Drop()
	if done, ok := s.watched[ih]; ok {
		<-done // it records nothing after this
		delete(s.watched, ih)
	}
	delete(s.torrents, ih)
	s.policy.untrack(ih)
	if err := s.completion.sleeping(ih, complete, path); err != nil {
		s.log.Warn("recording a checked package", "infohash", ih.HexString(), "err", err)
	}
}

// Wake makes ih live, as demand for it (an announce at the server's
// tracker) calls for; it does nothing for a torrent not seeded.
func (s *Seeder) Wake(ih [20]byte) { s.wakeForPeer(ih) }

// wakeForPeer wakes ih for a peer that asks for it (its handshake, its
// DHT announce) and returns the torrent, live now.
func (s *Seeder) wakeForPeer(ih metainfo.Hash) (*torrent.Torrent, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, false
	}
	look := func(ih metainfo.Hash) activity { return activityOf(s.torrents[ih]) }
	if t, ok := s.torrents[ih]; ok {
		s.held.wake(ih, time.Now(), false, look)
		return t, true
	}
	it, held := s.held.get(ih)
	if !held {
		return nil, false
	}
	evict, ok := s.held.wake(ih, time.Now(), false, look)
	for _, e := range evict {
		s.sleepLocked(e)
	}
	if !ok {
		return nil, false
	}
	t, _ := s.client.AddTorrentOpt(torrent.AddTorrentOpts{
		InfoHash:             ih,
		InfoBytes:            it.InfoBytes,
		DisallowDataDownload: true,
	})
	s.torrents[ih] = t
	s.policy.track(ih, t.NumPieces())
	if !s.completion.isWhole(ih) {
		// Not known whole, or changed since (the storage checks): anacrolix
		// checks its pieces now, and keepWhole records the result. Not
		// t.Complete: a small file's check can be over already.
		done := make(chan struct{})
		s.watched[ih] = done
		go s.keepWhole(t, ih, done)
	}
	return t, true
}

// sweep puts the live torrents idle for long enough to sleep, and says
// how many.
func (s *Seeder) sweep(now time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0
	}
	idle := s.held.sweep(now, func(ih metainfo.Hash) activity { return activityOf(s.torrents[ih]) })
	for _, ih := range idle {
		s.sleepLocked(ih)
	}
	return len(idle)
}

func (s *Seeder) nextAnnounce(now time.Time) (metainfo.Hash, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held.nextAnnounce(now)
}

func (s *Seeder) announced(ih metainfo.Hash, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held.announced(ih, now)
}

// Seeding reports how many torrents the seeder holds and how many of them
// are complete: recorded whole, or live and verified.
func (s *Seeder) Seeding() (loaded, complete int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ih := range s.held.all {
		loaded++
		if t, ok := s.torrents[ih]; ok {
			if t.Complete().Bool() {
				complete++
			}
		} else if s.completion.isWhole(ih) {
			complete++
		}
	}
	return loaded, complete
}

// Live is the number of live torrents.
func (s *Seeder) Live() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.torrents)
}

// Uploaded is the number of package bytes sent to peers since the start.
func (s *Seeder) Uploaded() int64 {
	st := s.client.ConnStats()
	return st.BytesWrittenData.Int64()
}

// Refused is the number of piece requests the seeder refused since the
// start because other peers have the piece (origin.go).
func (s *Seeder) Refused() int64 { return s.policy.Rejected() }

// WaitComplete wakes the torrent ih and waits until it is verified and
// seeding.
func (s *Seeder) WaitComplete(ctx context.Context, ih [20]byte) error {
	t, ok := s.wakeForPeer(ih)
	if !ok {
		return fmt.Errorf("torrent %x is not seeded", ih)
	}
	select {
	case <-t.Complete().On():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the client (all peer connections close) and releases the
// piece-completion database.
func (s *Seeder) Close() error {
	s.stop()
	s.bg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	// A watcher not yet run when its torrent completed could find it
	// neither complete nor open once the client closes: record here what
	// is complete now.
	for ih, t := range s.torrents {
		if t.Complete().Bool() {
			if err := s.completion.markWhole(ih, s.path(t)); err != nil {
				s.log.Warn("recording a checked package", "infohash", ih.HexString(), "err", err)
			}
		}
	}
	errs := s.client.Close()
	for _, done := range s.watched { // every torrent is closed now
		<-done
	}
	errs = append(errs, s.dht.Close(), s.storage.Close())
	return errors.Join(errs...)
}
