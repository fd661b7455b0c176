package swarm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
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

	mu     sync.Mutex
	whole  map[metainfo.Hash]bool
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
	pc := &pieceCompletion{db: db, whole: make(map[metainfo.Hash]bool), pieces: make(map[metainfo.Hash]map[int]bool)}
	err = db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(wholeBucket)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, _ []byte) error {
			if len(k) == len(metainfo.Hash{}) {
				pc.whole[metainfo.Hash(k)] = true
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
	if pc.whole[pk.InfoHash] {
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
	if pc.whole[pk.InfoHash] {
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

// markWhole records that the file of ih is complete and verified; the
// caller has synced it to disk.
func (pc *pieceCompletion) markWhole(ih metainfo.Hash) error {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.whole[ih] {
		return nil
	}
	err := pc.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(wholeBucket).Put(ih[:], nil) })
	if err != nil {
		return fmt.Errorf("piece completion: %w", err)
	}
	pc.whole[ih] = true
	delete(pc.pieces, ih)
	return nil
}

// forget drops what is known of ih, whose file is gone or bad.
func (pc *pieceCompletion) forget(ih metainfo.Hash) error {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	delete(pc.pieces, ih)
	if pc.whole[ih] {
		return pc.deleteWhole(ih)
	}
	return nil
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
	return pc.whole[ih]
}

func (pc *pieceCompletion) Close() error { return pc.db.Close() }
