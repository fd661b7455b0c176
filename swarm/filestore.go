package swarm

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/storage"
)

// fileStore is the torrent storage of the hosts and of the repository's
// seeder: a torrent is one package, its file dir/NAME, and what is known
// of its pieces is in pc. anacrolix's file storage (v1.59.1) opens and
// closes the file for every 16 KiB chunk it writes or reads, hashes each
// piece through a fresh 32 KiB copy buffer, and stats the file for every
// complete piece's completion: in test/bench/swarm at 16 hosts that was
// 14 % of the tpmd processes' CPU samples, 8 % with this store. Here a
// torrent's file stays open while it is in use (at most maxOpenFiles in
// all), a piece is hashed from a pooled buffer, a whole file's size and
// time are checked once when its torrent opens, and nothing is synced per piece:
// the client syncs a file once, when it is whole and verified (see
// pieceCompletion).
//
// A store that is not writable (the seeder's) opens files read-only and
// refuses every write, so nothing a peer sends can reach the package
// directory.
type fileStore struct {
	dir      string
	pc       *pieceCompletion
	writable bool
	files    openFiles
	// buffers are what pieces are read into to be hashed.
	buffers sync.Pool
}

// maxOpenFiles bounds the files a store keeps open: a repository seeds
// thousands of packages, and only those being downloaded or served need
// their file at hand.
const maxOpenFiles = 256

// newFileStore keeps torrents' files in dir; pc is closed with the store.
func newFileStore(dir string, pc *pieceCompletion, writable bool) *fileStore {
	s := &fileStore{dir: dir, pc: pc, writable: writable, files: openFiles{max: maxOpenFiles, torrents: make(map[metainfo.Hash]*fileTorrent)}}
	s.buffers.New = func() any { b := make([]byte, 64<<10); return &b }
	return s
}

var errStorageClosed = errors.New("storage closed: the torrent was dropped")

func (s *fileStore) OpenTorrent(_ context.Context, info *metainfo.Info, ih metainfo.Hash) (storage.TorrentImpl, error) {
	if info.IsDir() {
		return storage.TorrentImpl{}, fmt.Errorf("torrent %s holds %d files; a package torrent holds one", ih.HexString(), len(info.Files))
	}
	if !filepath.IsLocal(info.Name) || filepath.Base(info.Name) != info.Name || info.Name == "." {
		return storage.TorrentImpl{}, fmt.Errorf("torrent %s names file %q, not a plain file name", ih.HexString(), info.Name)
	}
	t := &fileTorrent{store: s, path: filepath.Join(s.dir, info.Name), length: info.Length, ih: ih, done: make(chan struct{})}
	// A file recorded whole that is now missing, or of another size or
	// time, was changed behind the store's back (while its torrent was
	// dormant, or the client stopped): check it again.
	if err := s.pc.checkWhole(ih, t.path); err != nil {
		return storage.TorrentImpl{}, err
	}
	s.files.mu.Lock()
	s.files.torrents[ih] = t
	s.files.mu.Unlock()
	return storage.TorrentImpl{
		Piece: func(p metainfo.Piece) storage.PieceImpl {
			return filePiece{t: t, off: p.Offset(), length: p.Length(), key: metainfo.PieceKey{InfoHash: ih, Index: p.Index()}}
		},
		Close: t.close,
	}, nil
}

// dropped returns a channel closed once the storage of ih is closed and no
// write to it can happen any more (at once when it is not open). anacrolix
// writes a chunk that arrives after Drop (a web seed's response still
// being read) without the storage lock, and closes storage later, on a
// goroutine of its own: a file deleted before then could be made again.
func (s *fileStore) dropped(ih metainfo.Hash) <-chan struct{} {
	s.files.mu.Lock()
	defer s.files.mu.Unlock()
	if t, ok := s.files.torrents[ih]; ok {
		return t.done
	}
	done := make(chan struct{})
	close(done)
	return done
}

func (s *fileStore) Close() error { return s.pc.Close() }

// openFiles is the store's open files, least recently used closed first.
type openFiles struct {
	mu  sync.Mutex
	max int
	lru list.List // of *fileTorrent whose file is open and counted
	// torrents are the open torrents, for dropped.
	torrents map[metainfo.Hash]*fileTorrent
}

// fileTorrent is an open torrent's file. Its fields below done are
// guarded by the store's openFiles.mu, except that writes hold wmu for
// reading and close holds it for writing, so that once close returns no
// write is under way or can start.
type fileTorrent struct {
	store  *fileStore
	path   string
	length int64
	ih     metainfo.Hash
	done   chan struct{} // closed with the torrent

	wmu    sync.RWMutex
	closed bool // under wmu and openFiles.mu

	f    *os.File
	refs int           // reads and writes using f
	elem *list.Element // in the LRU while f is open and not evicted
}

// acquire returns the open file for one read or write, opening it
// (creating it when create) if need be; release gives it back. A missing
// file is fs.ErrNotExist.
func (t *fileTorrent) acquire(create bool) (*os.File, error) {
	c := &t.store.files
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.closed {
		return nil, errStorageClosed
	}
	if t.f == nil {
		f, err := t.store.open(t.path, create)
		if err != nil {
			return nil, err
		}
		t.f = f
	}
	if t.elem == nil {
		t.elem = c.lru.PushFront(t)
		c.evict()
	} else {
		c.lru.MoveToFront(t.elem)
	}
	t.refs++
	return t.f, nil
}

func (t *fileTorrent) release() {
	c := &t.store.files
	c.mu.Lock()
	defer c.mu.Unlock()
	t.refs--
	if t.refs == 0 && t.elem == nil {
		t.f.Close()
		t.f = nil
	}
}

// evict closes the least recently used files past c.max; a file in use
// is closed when its last user releases it.
func (c *openFiles) evict() {
	for c.lru.Len() > c.max {
		t := c.lru.Remove(c.lru.Back()).(*fileTorrent)
		t.elem = nil
		if t.refs == 0 {
			t.f.Close()
			t.f = nil
		}
	}
}

func (t *fileTorrent) close() error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	c := &t.store.files
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	close(t.done)
	if c.torrents[t.ih] == t {
		delete(c.torrents, t.ih)
	}
	if t.elem != nil {
		c.lru.Remove(t.elem)
		t.elem = nil
	}
	if t.refs == 0 && t.f != nil {
		t.f.Close()
		t.f = nil
	}
	return nil
}

// open opens a torrent's file: read-write at a host, never following a
// link (the cache is tpmd's alone), read-only at the seeder.
func (s *fileStore) open(path string, create bool) (*os.File, error) {
	if !s.writable {
		return os.Open(path)
	}
	flag := os.O_RDWR | syscall.O_NOFOLLOW
	if create {
		flag |= os.O_CREATE
	}
	return os.OpenFile(path, flag, 0o644)
}

func (t *fileTorrent) readAt(b []byte, off int64) (int, error) {
	f, err := t.acquire(false)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, io.EOF // nothing written yet: the pieces fail their check
	}
	if errors.Is(err, errStorageClosed) {
		// anacrolix v1.59.1 reads a peer's request on a goroutine of the
		// connection without the client's lock; when the torrent is
		// dropped meanwhile, a failed read finds it closed, leaves the
		// request queued and panics (PeerConn.servePeerRequest). Closing
		// the connection first does not help: its reading goroutine leaves
		// before the one serving requests makes its last read
		// (TestSeederDropsUnderADownload). Only that goroutine reads a
		// closed torrent here (hashes use WriteTo, under the storage lock
		// that closing takes), and the connection the bytes were for closed
		// with the torrent, so they are never sent.
		clear(b)
		return len(b), nil
	}
	if err != nil {
		return 0, err
	}
	defer t.release()
	return f.ReadAt(b, off)
}

// filePiece is a piece of a fileTorrent. It has no Flush, so anacrolix
// does not sync the file as each piece completes.
type filePiece struct {
	t           *fileTorrent
	off, length int64
	key         metainfo.PieceKey
}

// ReadAt reads within the piece; past its end is io.EOF.
func (p filePiece) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 || off >= p.length {
		return 0, io.EOF
	}
	if rest := p.length - off; int64(len(b)) > rest {
		n, err := p.t.readAt(b[:rest], p.off+off)
		if err == nil {
			err = io.EOF
		}
		return n, err
	}
	return p.t.readAt(b, p.off+off)
}

func (p filePiece) WriteAt(b []byte, off int64) (int, error) {
	if !p.t.store.writable {
		return 0, fmt.Errorf("write to %s: the repository's seeder never writes", p.t.path)
	}
	if off < 0 || off+int64(len(b)) > p.length {
		return 0, fmt.Errorf("write of %d bytes at %d overflows a piece of %d", len(b), off, p.length)
	}
	p.t.wmu.RLock()
	defer p.t.wmu.RUnlock()
	f, err := p.t.acquire(true)
	if err != nil {
		return 0, err
	}
	defer p.t.release()
	return f.WriteAt(b, p.off+off)
}

// WriteTo writes the piece's data to w (anacrolix's hash), up to what the
// file holds: a short file makes the piece fail its check, not an error.
func (p filePiece) WriteTo(w io.Writer) (int64, error) {
	f, err := p.t.acquire(false)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer p.t.release()
	bp := p.t.store.buffers.Get().(*[]byte)
	defer p.t.store.buffers.Put(bp)
	var done int64
	for done < p.length {
		b := (*bp)[:min(int64(len(*bp)), p.length-done)]
		n, err := f.ReadAt(b, p.off+done)
		if n > 0 {
			if _, werr := w.Write(b[:n]); werr != nil {
				return done, werr
			}
			done += int64(n)
		}
		if err == io.EOF {
			return done, nil
		}
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// MarkComplete records the piece, and only that. anacrolix's file piece
// then also reads back the completion of its file's pieces, from the
// first up to the first one missing, to rename a part file that tpm never
// makes: quadratic in a file's pieces, it was most of what a fresh seeder
// spent checking a package (BenchmarkSeederCheck: 27 MB/s with
// anacrolix's bolt completion, 266 with pieceCompletion, 330 with this).
func (p filePiece) MarkComplete() error { return p.t.store.pc.Set(p.key, true) }

func (p filePiece) MarkNotComplete() error { return p.t.store.pc.Set(p.key, false) }

func (p filePiece) Completion() storage.Completion {
	c, err := p.t.store.pc.Get(p.key)
	c.Err = err
	return c
}
