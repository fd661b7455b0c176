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
	"sync"

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
}

// Item is one torrent to seed.
type Item struct {
	InfoHash  [20]byte
	InfoBytes []byte
}

// Seeder seeds package files from the package directory with one
// anacrolix/torrent client: file storage on the directory itself, the
// files checked whole recorded in bbolt, no part files (with part files, a
// failed piece could rename a complete package to .part), and no
// downloading at all, so nothing a peer sends can ever be written into the
// package directory. It announces only to the standard trackers it is
// given: the server's own tracker lists it as a peer without one (see
// publish).
type Seeder struct {
	client  *torrent.Client
	storage storage.ClientImplCloser
	// completion is the storage's; a torrent is recorded whole once
	// anacrolix has checked all its pieces (keepWhole).
	completion *pieceCompletion
	log        *slog.Logger
	port       int
	dht        *dhtNode
	// trackers is the announce list of every torrent, a tier per tracker.
	trackers [][]string

	policy *originPolicy

	mu       sync.Mutex // serialises Sync and Close
	torrents map[metainfo.Hash]*torrent.Torrent
	// watched is closed when the keepWhole of a torrent has returned.
	watched map[metainfo.Hash]chan struct{}
	pieces  map[[20]byte]int // of every torrent, for the policy
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
	tc.DisableTrackers = len(cfg.Trackers) == 0
	tc.DisableWebseeds = true
	tc.ExtendedHandshakeClientVersion = RepositoryClientName
	policy := newOriginPolicy()
	cl, err := newTorrentClient(tc, listen, st, func(c net.Conn) net.Conn { return newOriginConn(c, policy) })
	if err != nil {
		return nil, err
	}
	var tiers [][]string
	for _, t := range cfg.Trackers {
		tiers = append(tiers, []string{t})
	}
	var node *dhtNode
	if cfg.DHT != nil {
		if node, err = startDHT(cl, listen, *cfg.DHT, cfg.logger()); err != nil {
			cl.Close()
			st.Close()
			return nil, err
		}
	}
	return &Seeder{
		client:     cl,
		dht:        node,
		trackers:   tiers,
		storage:    st,
		completion: pc,
		log:        cfg.logger(),
		port:       cl.LocalPort(),
		policy:     policy,
		torrents:   make(map[metainfo.Hash]*torrent.Torrent),
		watched:    make(map[metainfo.Hash]chan struct{}),
		pieces:     make(map[[20]byte]int),
	}, nil
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
	if err := s.completion.markWhole(ih); err != nil {
		s.log.Warn("recording a checked package", "infohash", ih.HexString(), "err", err)
	}
}

func (cfg SeederConfig) logger() *slog.Logger {
	if cfg.Logger != nil {
		return cfg.Logger
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Port is the port the seeder listens on.
func (s *Seeder) Port() int { return s.port }

// SyncStats counts what a Sync changed.
type SyncStats struct {
	Added, Dropped, Kept int
}

// Sync makes the seeded set equal to want: torrents not in want are dropped,
// new ones added (the client then checks their pieces against the files in
// the background, or takes the completion it recorded before), and the rest
// are left alone, connections and all.
func (s *Seeder) Sync(ctx context.Context, want []Item) (SyncStats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var st SyncStats
	if s.closed {
		return st, errors.New("seeder is closed")
	}
	wanted := make(map[metainfo.Hash]Item, len(want))
	for _, it := range want {
		wanted[it.InfoHash] = it
	}
	for ih, t := range s.torrents {
		if _, ok := wanted[ih]; !ok {
			t.Drop()
			<-s.watched[ih] // it records nothing after this
			delete(s.watched, ih)
			if err := s.completion.forget(ih); err != nil {
				s.log.Warn("forgetting a dropped package", "infohash", ih.HexString(), "err", err)
			}
			delete(s.torrents, ih)
			delete(s.pieces, ih)
			st.Dropped++
		}
	}
	var errs []error
	for ih, it := range wanted {
		if _, ok := s.torrents[ih]; ok {
			st.Kept++
			continue
		}
		if err := ctx.Err(); err != nil {
			return st, err
		}
		if metainfo.HashBytes(it.InfoBytes) != ih {
			errs = append(errs, fmt.Errorf("torrent %s: info bytes do not match the infohash", hex.EncodeToString(ih[:])))
			continue
		}
		t, _ := s.client.AddTorrentOpt(torrent.AddTorrentOpts{
			InfoHash:             ih,
			InfoBytes:            it.InfoBytes,
			DisallowDataDownload: true,
		})
		if len(s.trackers) > 0 {
			t.AddTrackers(s.trackers)
		}
		s.torrents[ih] = t
		s.pieces[ih] = t.NumPieces()
		done := make(chan struct{})
		s.watched[ih] = done
		if t.Complete().Bool() {
			close(done) // recorded whole before: nothing to wait for
		} else {
			go s.keepWhole(t, ih, done)
		}
		st.Added++
	}
	s.policy.setTorrents(s.pieces)
	return st, errors.Join(errs...)
}

// Seeding reports how many torrents are loaded and how many of them are
// complete, that is, verified and being seeded.
func (s *Seeder) Seeding() (loaded, complete int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.torrents {
		loaded++
		if t.Complete().Bool() {
			complete++
		}
	}
	return loaded, complete
}

// Uploaded is the number of package bytes sent to peers since the start.
func (s *Seeder) Uploaded() int64 {
	st := s.client.ConnStats()
	return st.BytesWrittenData.Int64()
}

// Refused is the number of piece requests the seeder refused since the
// start because other peers have the piece (origin.go).
func (s *Seeder) Refused() int64 { return s.policy.Rejected() }

// WaitComplete waits until the torrent ih is verified and seeding.
func (s *Seeder) WaitComplete(ctx context.Context, ih [20]byte) error {
	s.mu.Lock()
	t, ok := s.torrents[ih]
	s.mu.Unlock()
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
			if err := s.completion.markWhole(ih); err != nil {
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
