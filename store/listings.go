package store

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Listings keeps, on the repository server only, the files of each
// published package as its archive listed them at scan time, keyed by the
// package's sha256, for the package pages. It is a file apart from the
// catalog because the catalog is what every host downloads: a listing is
// for people, and may be long.
type Listings struct {
	bolt *bolt.DB
}

var bucketListings = []byte("listings")

// OpenListings opens (creating if needed) the listings at path.
func OpenListings(path string) (*Listings, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("open listings: %w", err)
	}
	if err := CheckFile(path); errors.Is(err, ErrDamaged) {
		os.Remove(path) // made again from the packages at the next scan that reads them
	}
	b, err := bolt.Open(path, 0o644, &bolt.Options{Timeout: 250 * time.Millisecond})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open listings %s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open listings %s: %w", path, err)
	}
	err = b.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketListings)
		return err
	})
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("open listings %s: %w", path, err)
	}
	return &Listings{bolt: b}, nil
}

// Close releases the file.
func (l *Listings) Close() error { return l.bolt.Close() }

// PutAll records the paths of each package, by sha256, in one
// transaction: one each made a first scan of 100,000 packages wait for
// 100,000 commits.
func (l *Listings) PutAll(listings map[string][]string) error {
	if len(listings) == 0 {
		return nil
	}
	return l.bolt.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketListings)
		for _, sum := range slices.Sorted(maps.Keys(listings)) {
			if err := b.Put([]byte(sum), []byte(strings.Join(listings[sum], "\n"))); err != nil {
				return err
			}
		}
		return nil
	})
}

// Get returns the first max paths recorded for sum, how many there are in
// all, and whether any listing is recorded. Only what is returned is
// copied: a page shows a few of a package's files however many it has.
func (l *Listings) Get(sum string, max int) (paths []string, total int, ok bool) {
	l.bolt.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketListings).Get([]byte(sum))
		if v == nil {
			return nil
		}
		ok, paths = true, []string{}
		if len(v) == 0 {
			return nil
		}
		total = bytes.Count(v, []byte{'\n'}) + 1
		for len(paths) < max && len(v) > 0 {
			line, rest, _ := bytes.Cut(v, []byte{'\n'})
			paths, v = append(paths, string(line)), rest
		}
		return nil
	})
	return paths, total, ok
}

// Keep drops the listings of every sha256 that keep rejects.
func (l *Listings) Keep(keep func(sum string) bool) error {
	return l.bolt.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketListings)
		var drop [][]byte
		b.ForEach(func(k, _ []byte) error {
			if !keep(string(k)) {
				drop = append(drop, bytes.Clone(k))
			}
			return nil
		})
		for _, k := range drop {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}
