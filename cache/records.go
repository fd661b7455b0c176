// Package cache keeps what a host daemon holds beside the receipts: the
// record of each package file in its cache (which torrent it is, what the
// signed index said about it), so that it can seed every installed package
// after a restart even when the current index no longer lists that
// version, and the rules that reconcile those records with the receipts.
// Records are small JSON files, one per cache file, each written durably
// before the install that needs it (a crash then leaves a record that the
// next start reconciles, never a file nobody knows of).
package cache

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"tpm/store"
)

// Record describes one .tpkg of the host's cache.
type Record struct {
	Name      string `json:"name"`
	Version   string `json:"version"`
	File      string `json:"file"`
	SHA256    string `json:"sha256"`
	Size      int64  `json:"size"`
	InfoHash  string `json:"infohash"`
	InfoBytes []byte `json:"info"`
	// Kept says the version was installed and left (an upgrade, a
	// removal): its file stays, within Records.Keep, for an undo.
	Kept bool `json:"kept,omitempty"`
}

// Records is a directory of records.
type Records struct {
	Dir string
	// Keep is how many versions of each package the cache holds: those
	// installed, and kept ones (newest first) up to Keep in all; 0 and 1
	// keep only the installed ones.
	Keep int
}

// DefaultKeep is the number of versions of a package a host's cache
// holds unless told otherwise: the installed one and the one before.
const DefaultKeep = 2

// RecordsDir is where a host's records are, in its state directory.
func RecordsDir(stateDir string) string { return filepath.Join(stateDir, "cache") }

func (c Records) path(file string) (string, error) {
	if file == "" || file != filepath.Base(file) || strings.HasPrefix(file, ".") {
		return "", fmt.Errorf("cache record: %q is not a plain file name", file)
	}
	return filepath.Join(c.Dir, file+".json"), nil
}

// Put writes r durably, replacing any record of the same file.
func (c Records) Put(r *Record) error {
	p, err := c.path(r.File)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return fmt.Errorf("cache record: %w", err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("cache record: %w", err)
	}
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("cache record: %w", err)
	}
	if _, err = f.Write(b); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("cache record: %w", err)
	}
	return nil
}

// Add records r for a download, keeping what a record of the same file
// says already (that it is kept).
func (c Records) Add(r *Record) error {
	if old := c.get(r.File); old != nil && old.SHA256 == r.SHA256 {
		r.Kept = old.Kept
	}
	return c.Put(r)
}

// Find is the record of name's version, nil when there is none.
func (c Records) Find(name, version string) *Record {
	all, _ := c.All()
	for _, r := range all {
		if r.Name == name && r.Version == version {
			return r
		}
	}
	return nil
}

func (c Records) get(file string) *Record {
	p, err := c.path(file)
	if err != nil {
		return nil
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil
	}
	var r Record
	if json.Unmarshal(b, &r) != nil {
		return nil
	}
	return &r
}

// Delete forgets the record of file.
func (c Records) Delete(file string) error {
	p, err := c.path(file)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cache record: %w", err)
	}
	return nil
}

// All reads every record; unreadable ones are skipped and reported.
func (c Records) All() ([]*Record, error) {
	ents, err := os.ReadDir(c.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cache records: %w", err)
	}
	var out []*Record
	var errs []error
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") || !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(c.Dir, e.Name()))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var r Record
		if err := json.Unmarshal(b, &r); err != nil || r.File+".json" != e.Name() {
			errs = append(errs, fmt.Errorf("cache record %s: unreadable", e.Name()))
			continue
		}
		out = append(out, &r)
	}
	return out, errors.Join(errs...)
}

// RecordOf is the record of the cache file of a catalog entry.
func RecordOf(e *store.CatalogEntry) *Record {
	return &Record{Name: e.Name, Version: e.Version, File: e.File, SHA256: e.SHA256,
		Size: e.Size, InfoHash: e.InfoHash, InfoBytes: e.InfoBytes}
}

// EntryOf is the catalog entry a record keeps of its file: enough to
// download it again (name, version, torrent, sha256), not its manifest.
func EntryOf(r *Record) *store.CatalogEntry {
	e := &store.CatalogEntry{File: r.File, Size: r.Size, SHA256: r.SHA256, InfoHash: r.InfoHash, InfoBytes: r.InfoBytes}
	e.Name, e.Version = r.Name, r.Version
	return e
}

// Hash is the record's infohash as bytes.
func (r *Record) Hash() ([20]byte, error) {
	var h [20]byte
	b, err := hex.DecodeString(r.InfoHash)
	if err != nil || len(b) != len(h) {
		return h, fmt.Errorf("cache record %s: bad infohash", r.File)
	}
	copy(h[:], b)
	return h, nil
}
