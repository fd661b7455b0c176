package swarm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"
	"tpm/store"

	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/storage"
	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// pieceCompletion is what a host's client, or the repository's seeder,
// knows of the pieces it has. A file is recorded whole in bbolt, once: at
// a host when its sha256 matched the signed index, after an fsync of the
// file; at the seeder when anacrolix has checked all its pieces. The
// pieces of a download or a check in progress live in memory. anacrolix's
// own bolt completion writes a transaction and its file storage an fsync
// for every piece: in test/bench/swarm that was an eighth of the hosts'
// CPU, and on a real disk each fsync holds back the HAVE that lets other
// hosts ask for the piece. After a restart a whole file is known at once;
// a download that was in progress is checked again piece by piece
// (anacrolix hashes what it does not know).
type pieceCompletion struct {
	db *bbolt.DB

	mu sync.Mutex
	// whole holds the files checked whole, each with its size and
	// modification time then.
	whole  map[metainfo.Hash]fileStamp
	pieces map[metainfo.Hash]map[int]bool
}

var wholeBucket = []byte("whole")

// openPieceCompletion opens the record in dir. It is written without
// fsync: a record lost to a crash only means anacrolix checks that file
// again, and an unreadable file is replaced by an empty one for the same
// reason.
func openPieceCompletion(dir string) (*pieceCompletion, error) {
	path := filepath.Join(dir, "complete.db")
	if err := store.CheckFile(path); errors.Is(err, store.ErrDamaged) {
		os.Remove(path) // what it records is checked again anyway
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, NoSync: true})
	if err != nil && !errors.Is(err, berrors.ErrTimeout) {
		os.Remove(path)
		db, err = bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, NoSync: true})
	}
	if err != nil {
		return nil, fmt.Errorf("piece completion database in %s: %w", dir, err)
	}
	pc := &pieceCompletion{db: db, whole: make(map[metainfo.Hash]fileStamp), pieces: make(map[metainfo.Hash]map[int]bool)}
	err = db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(wholeBucket)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			if len(k) == len(metainfo.Hash{}) {
				pc.whole[metainfo.Hash(k)] = decodeStamp(v)
			}
			return nil
		})
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("piece completion database in %s: %w", dir, err)
	}
	// anacrolix's per-piece database, which this one replaced.
	os.Remove(filepath.Join(dir, ".torrent.bolt.db"))
	return pc, nil
}

func (pc *pieceCompletion) Get(pk metainfo.PieceKey) (storage.Completion, error) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if _, ok := pc.whole[pk.InfoHash]; ok {
		return storage.Completion{Ok: true, Complete: true}, nil
	}
	complete, ok := pc.pieces[pk.InfoHash][pk.Index]
	return storage.Completion{Ok: ok, Complete: complete}, nil
}

// Set records a piece's state from anacrolix; a bad piece in a whole file
// means the file changed, and it is whole no more.
func (pc *pieceCompletion) Set(pk metainfo.PieceKey, complete bool) error {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if _, ok := pc.whole[pk.InfoHash]; ok {
		if complete {
			return nil
		}
		if err := pc.deleteWhole(pk.InfoHash); err != nil {
			return err
		}
	}
	m := pc.pieces[pk.InfoHash]
	if m == nil {
		m = make(map[int]bool)
		pc.pieces[pk.InfoHash] = m
	}
	m[pk.Index] = complete
	return nil
}

// markWhole records that the file of ih, at path, is complete and
// verified; the caller has synced it to disk.
func (pc *pieceCompletion) markWhole(ih metainfo.Hash, path string) error {
	return pc.markStamped(map[metainfo.Hash]fileStamp{ih: stampOf(path)})
}

// markStamped records files whole as they were when their bytes were
// checked, in one transaction: the repository's scanner hashed them, and
// made the torrents from what it read.
func (pc *pieceCompletion) markStamped(stamps map[metainfo.Hash]fileStamp) error {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	changed := make(map[metainfo.Hash]fileStamp)
	for ih, stamp := range stamps {
		if old, ok := pc.whole[ih]; !ok || old != stamp {
			changed[ih] = stamp
		}
	}
	if len(changed) == 0 {
		return nil
	}
	err := pc.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(wholeBucket)
		// In key order: bbolt inserts into a sorted slice per node, and the
		// 100,000 of a first scan in map order took 9 s of moving memory.
		for _, ih := range slices.SortedFunc(maps.Keys(changed), func(a, b metainfo.Hash) int { return bytes.Compare(a[:], b[:]) }) {
			if err := b.Put(ih[:], changed[ih].encode()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("piece completion: %w", err)
	}
	for ih, stamp := range changed {
		pc.whole[ih] = stamp
		delete(pc.pieces, ih)
	}
	return nil
}

// forget drops what is known of ih, whose file is gone or bad.
func (pc *pieceCompletion) forget(ih metainfo.Hash) error {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	delete(pc.pieces, ih)
	if _, ok := pc.whole[ih]; ok {
		return pc.deleteWhole(ih)
	}
	return nil
}

// sleeping is told that the torrent ih went dormant: what is known of
// its pieces in memory goes (it could not tell a file changed before the
// torrent wakes), and the file, complete, is recorded whole as it is now.
func (pc *pieceCompletion) sleeping(ih metainfo.Hash, complete bool, path string) error {
	if complete {
		if err := pc.markWhole(ih, path); err != nil {
			return err
		}
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	delete(pc.pieces, ih)
	return nil
}

// checkWhole keeps the record of ih whole only if its file at path has the
// size and modification time it had when it was checked: a file changed
// while its torrent was dormant (a disk's damage, a hand's edit) is checked
// again, piece by piece, before any of it is served. A record without them
// (written before they were kept) is checked again too.
func (pc *pieceCompletion) checkWhole(ih metainfo.Hash, path string) error {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	stamp, ok := pc.whole[ih]
	if !ok || (stamp != fileStamp{} && stamp == stampOf(path)) {
		return nil
	}
	return pc.deleteWhole(ih)
}

func (pc *pieceCompletion) deleteWhole(ih metainfo.Hash) error {
	err := pc.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(wholeBucket).Delete(ih[:]) })
	if err != nil {
		return fmt.Errorf("piece completion: %w", err)
	}
	delete(pc.whole, ih)
	return nil
}

func (pc *pieceCompletion) isWhole(ih metainfo.Hash) bool {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	_, ok := pc.whole[ih]
	return ok
}

func (pc *pieceCompletion) Close() error { return pc.db.Close() }

// fileStamp is what tells a file changed since it was checked, without
// reading it: its size, modification and change times and inode (the
// change time catches a modification time set back, the inode a file
// replaced by another). The zero stamp matches no file.
type fileStamp struct {
	size, mtime, ctime int64
	inode              uint64
}

func stampOf(path string) fileStamp {
	if path == "" {
		return fileStamp{}
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileStamp{}
	}
	return fileStamp{fi.Size(), fi.ModTime().UnixNano(), st.Ctim.Nano(), st.Ino}
}

const stampLen = 32

func (s fileStamp) encode() []byte {
	b := make([]byte, stampLen)
	binary.BigEndian.PutUint64(b, uint64(s.size))
	binary.BigEndian.PutUint64(b[8:], uint64(s.mtime))
	binary.BigEndian.PutUint64(b[16:], uint64(s.ctime))
	binary.BigEndian.PutUint64(b[24:], s.inode)
	return b
}

func decodeStamp(b []byte) fileStamp {
	if len(b) != stampLen {
		return fileStamp{}
	}
	u := func(i int) uint64 { return binary.BigEndian.Uint64(b[i:]) }
	return fileStamp{int64(u(0)), int64(u(8)), int64(u(16)), u(24)}
}
