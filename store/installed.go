// Package store keeps tpm's state in bbolt files. This file holds the host's
// installed-state database: receipts of installed packages, the file-owner
// index, the copy of each package's info/ folder, and the journal of the
// transaction in flight. Receipts, owners and info change together in one
// bbolt transaction, so they can never disagree with each other.
package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"tpm/manifest"
)

var (
	bucketPackages = []byte("packages") // prefix \0 name → Receipt (JSON)
	bucketFiles    = []byte("files")    // prefix \0 path → owning package (everything but directories)
	bucketDirs     = []byte("dirs")     // prefix \0 path \0 name → "" (directories are shared)
	bucketInfo     = []byte("info")     // prefix \0 name \0 file → content of info/file
	bucketMeta     = []byte("meta")     // "journal", "journal-states", "journal-history" → the transaction in flight
	keyJournal     = []byte("journal")
	keyStates      = []byte("journal-states")
)

// ErrLocked means another process (normally the running daemon) has the
// database open.
var ErrLocked = errors.New("database is locked by another process")

// Reason records why a package is installed.
type Reason string

const (
	Explicit   Reason = "explicit"
	Dependency Reason = "dependency"
)

// FileType is the kind of an installed path. A hard link in a package is
// installed as a regular file and recorded as one.
type FileType string

const (
	Dir     FileType = "dir"
	File    FileType = "file"
	Symlink FileType = "symlink"
)

// FileRecord is one installed path, relative to the receipt's prefix.
type FileRecord struct {
	Path   string      `json:"path"`
	Type   FileType    `json:"type"`
	Mode   fs.FileMode `json:"mode,omitempty"`
	Size   int64       `json:"size,omitempty"`
	SHA256 string      `json:"sha256,omitempty"`
	Link   string      `json:"link,omitempty"`
}

// Receipt is what tpm knows about one installed package.
type Receipt struct {
	manifest.Manifest
	Prefix      string    `json:"prefix"`
	Reason      Reason    `json:"reason"`
	InstalledAt time.Time `json:"installed_at"`
	// Held keeps the package at this version (tpm hold): no upgrade,
	// reinstall at another version, removal or replacement takes it.
	Held bool `json:"held,omitempty"`
	// Files stays the last field: ReceiptHeads reads no further.
	Files []FileRecord `json:"files"`
}

// State is the installed-state database. A damaged page found by a read
// makes every later call return the same ErrDamaged error, so nothing more
// is written to the file and it is never copied over the last backup.
type State struct {
	bolt *bolt.DB
	path string
	// file is the file bbolt opened: closing it releases the lock should
	// bbolt's own Close be stuck behind a write that panicked.
	file *os.File
	// writer orders writes and the page checks of Backup: bbolt's check of
	// a read transaction is not safe beside a writer.
	writer sync.Mutex
	mu     sync.Mutex // guards what follows
	damage error      // the first damage found, as the user reads it
	// A write transaction panicked: bbolt's rollback may have panicked in
	// turn before it let go of its writer lock, which Close takes.
	writePanicked bool
	// historyBound replaces HistoryBound when set (tests).
	historyBound int
}

// OpenState opens (creating if needed) the state database at path. bbolt
// takes an exclusive flock, so a second process gets ErrLocked at once
// instead of waiting forever. A damaged file is refused with one line that
// gives the way back (ErrDamaged), and so is a missing one beside its
// backup, which would otherwise read as a host with nothing installed.
// Opened after an unclean stop (OpenMarkerSuffix), every page is checked
// first.
func OpenState(path string) (*State, error) { return openState(path, false) }

// OpenStateChecked is OpenState that checks every page whatever the last
// stop was: a daemon's open at start, so that a file damaged while it was
// stopped is refused before it serves (the check reads the whole file:
// about 70 ms for a million files' records once it is cached).
func OpenStateChecked(path string) (*State, error) { return openState(path, true) }

func openState(path string, check bool) (*State, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("open state database: %w", err)
	}
	if err := checkNotLost(path); err != nil {
		return nil, err
	}
	if err := CheckFile(path); err != nil {
		if errors.Is(err, ErrDamaged) {
			return nil, fmt.Errorf("state database: %w: restore the copy kept after the last transaction (stop tpmd, then cp %s%s %s), or move it away to start with no receipts", err, path, BackupSuffix, path)
		}
		return nil, fmt.Errorf("open state database %s: %w", path, err)
	}
	db, err := openBolt(path)
	if err != nil {
		return nil, err
	}
	unclean, err := markOpen(path)
	if err != nil {
		db.bolt.Close()
		return nil, fmt.Errorf("open state database %s: mark it open: %w", path, err)
	}
	// This commit writes the meta page of the transaction before the last,
	// so one that a crash tore (bbolt reads the other) is whole again
	// before the check below reads it.
	err = db.Update(func(tx *StateTx) error {
		for _, name := range [][]byte{bucketPackages, bucketFiles, bucketDirs, bucketInfo, bucketMeta, bucketHistory, bucketHistoryChanges} {
			if _, err := tx.tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil && (unclean || check) {
		err = db.checkPages()
	}
	if err != nil {
		db.Close()
		if errors.Is(err, ErrDamaged) {
			return nil, err
		}
		return nil, fmt.Errorf("open state database %s: %w", path, err)
	}
	return db, nil
}

// checkNotLost refuses a database that is missing while its backup is
// there: that is a lost file, not a new host.
func checkNotLost(path string) error {
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if _, err := os.Lstat(path + BackupSuffix); err != nil {
		return nil
	}
	return fmt.Errorf("state database: %w: %s is missing but the copy kept after the last transaction is there: restore it (stop tpmd, then cp %s%s %s), or move the copy away to start with no receipts",
		ErrDamaged, path, path, BackupSuffix, path)
}

// openBolt opens the file with bbolt, turning its panics (a freelist
// CheckFile passed but bbolt cannot read) into the damaged error.
func openBolt(path string) (db *State, err error) {
	var file *os.File
	defer func() {
		if p := recover(); p != nil {
			if !boltPanic(p) {
				panic(p)
			}
			if file != nil {
				file.Close() // releases the lock; bbolt's map stays until the process ends
			}
			db, err = nil, damaged(path, "has a damaged page ("+oneLine(fmt.Sprint(p))+")")
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	b, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: 250 * time.Millisecond,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			file = f
			return f, err
		},
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open state database %s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open state database %s: %w", path, err)
	}
	return &State{bolt: b, path: path, file: file}, nil
}

// checkPages checks every page of the file (bbolt's Tx.Check).
func (db *State) checkPages() error {
	var what string
	err := db.View(func(tx *StateTx) error {
		what = checkPages(tx.tx)
		return nil
	})
	if err == nil && what != "" {
		err = db.setDamaged("has damaged pages "+what, false)
	}
	return err
}

// Damaged is the error of the damage a read found, or nil.
func (db *State) Damaged() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.damage
}

func (db *State) setDamaged(what string, write bool) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.damage == nil {
		db.damage = damaged(db.path, what)
	}
	db.writePanicked = db.writePanicked || write
	return db.damage
}

// recoverDamage, deferred by View and Update, turns a panic of bbolt's
// into the damaged error in *err.
func (db *State) recoverDamage(err *error, write bool) {
	p := recover()
	if p == nil {
		return
	}
	if !boltPanic(p) {
		panic(p)
	}
	*err = db.setDamaged("has a damaged page ("+oneLine(fmt.Sprint(p))+")", write)
}

// closeWait bounds how long Close waits for bbolt's writer lock after a
// write panicked.
const closeWait = time.Second

// Close releases the database and its lock. The open marker goes only when
// no damage was found, so the next open checks a file found damaged.
func (db *State) Close() error {
	db.mu.Lock()
	damage, stuck := db.damage, db.writePanicked
	db.mu.Unlock()
	var err error
	if damage == nil {
		// Before bbolt lets go of the lock, so no other process's marker
		// goes.
		if rerr := os.Remove(db.path + OpenMarkerSuffix); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = fmt.Errorf("close state database: %w", rerr)
		}
	}
	if !stuck {
		return errors.Join(err, db.bolt.Close())
	}
	done := make(chan error, 1)
	go func() { done <- db.bolt.Close() }()
	select {
	case cerr := <-done:
		return errors.Join(err, cerr)
	case <-time.After(closeWait):
		// The goroutine stays blocked; the file's lock goes with it.
		return errors.Join(err, db.file.Close())
	}
}

// BackupSuffix names the copy Backup keeps beside the database.
const BackupSuffix = ".bak"

// Backup writes a consistent copy of the database beside it (path +
// BackupSuffix), replacing the last one only once the new one is on disk,
// as dpkg keeps status-old: a damaged database can be restored from it.
// Every page is checked first (the copy is of the bytes, not of the
// records), so a damaged database never replaces the last good copy.
func (db *State) Backup() error {
	path := db.path + BackupSuffix
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("back up the state database: %w", err)
	}
	db.writer.Lock()
	err = db.View(func(tx *StateTx) error {
		if what := checkPages(tx.tx); what != "" {
			return db.setDamaged("has damaged pages "+what, false)
		}
		_, err := tx.tx.WriteTo(f)
		return err
	})
	db.writer.Unlock()
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		if errors.Is(err, ErrDamaged) {
			return err
		}
		return fmt.Errorf("back up the state database: %w", err)
	}
	return nil
}

// Path is the database file.
func (db *State) Path() string { return db.path }

// View runs fn in a read-only transaction. A damaged page it meets (a
// panic of bbolt's) is returned as the damaged error, as is any call after
// one.
func (db *State) View(fn func(*StateTx) error) (err error) {
	if err := db.Damaged(); err != nil {
		return err
	}
	defer db.recoverDamage(&err, false)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return db.bolt.View(func(tx *bolt.Tx) error { return fn(&StateTx{tx: tx, db: db}) })
}

// Update runs fn in one read-write transaction: all of it commits or none.
// Damage is handled as by View.
func (db *State) Update(fn func(*StateTx) error) (err error) {
	if err := db.Damaged(); err != nil {
		return err
	}
	db.writer.Lock()
	defer db.writer.Unlock()
	defer db.recoverDamage(&err, true)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return db.bolt.Update(func(tx *bolt.Tx) error { return fn(&StateTx{tx: tx, db: db}) })
}

// StateTx is a transaction over the installed-state database.
type StateTx struct {
	tx *bolt.Tx
	db *State
}

// errNotObject is a stored receipt that is not a JSON object.
var errNotObject = errors.New("not a JSON object")

// recordErr is the error of a stored record that does not decode. The
// store writes every record as JSON, so one that is not JSON is damage
// that no page check sees: bbolt keeps no checksum of the data in a page.
func (t *StateTx) recordErr(what string, err error) error {
	var syntax *json.SyntaxError
	if errors.As(err, &syntax) || errors.Is(err, errNotObject) || errors.Is(err, io.ErrUnexpectedEOF) {
		return t.db.setDamaged(fmt.Sprintf("has a damaged record (%s: %s)", what, oneLine(err.Error())), false)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func key(parts ...string) []byte {
	var b bytes.Buffer
	for i, p := range parts {
		if i > 0 {
			b.WriteByte(0)
		}
		b.WriteString(p)
	}
	return b.Bytes()
}

// Receipt returns the receipt of name in prefix, or nil if it is not installed.
func (t *StateTx) Receipt(prefix, name string) (*Receipt, error) {
	raw := t.tx.Bucket(bucketPackages).Get(key(prefix, name))
	if raw == nil {
		return nil, nil
	}
	var r Receipt
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, t.recordErr("receipt of "+name, err)
	}
	return &r, nil
}

// Receipts returns every receipt of prefix, by name.
func (t *StateTx) Receipts(prefix string) ([]*Receipt, error) {
	var out []*Receipt
	start := key(prefix, "")
	c := t.tx.Bucket(bucketPackages).Cursor()
	for k, v := c.Seek(start); k != nil && bytes.HasPrefix(k, start); k, v = c.Next() {
		var r Receipt
		if err := json.Unmarshal(v, &r); err != nil {
			return nil, t.recordErr(fmt.Sprintf("receipt %q", k[len(start):]), err)
		}
		out = append(out, &r)
	}
	return out, nil
}

// CountReceipts is how many packages prefix has, counted by key alone.
func (t *StateTx) CountReceipts(prefix string) int {
	n := 0
	start := key(prefix, "")
	c := t.tx.Bucket(bucketPackages).Cursor()
	for k, _ := c.Seek(start); k != nil && bytes.HasPrefix(k, start); k, _ = c.Next() {
		n++
	}
	return n
}

// ReceiptHeads returns every receipt of prefix, by name, without its file
// list. A package may own 500,000 paths, and most questions need only
// names, versions and dependencies, so the list is not even scanned.
func (t *StateTx) ReceiptHeads(prefix string) ([]*Receipt, error) {
	var out []*Receipt
	start := key(prefix, "")
	c := t.tx.Bucket(bucketPackages).Cursor()
	for k, v := c.Seek(start); k != nil && bytes.HasPrefix(k, start); k, v = c.Next() {
		r, err := receiptHead(v)
		if err != nil {
			return nil, t.recordErr(fmt.Sprintf("receipt %q", k[len(start):]), err)
		}
		out = append(out, r)
	}
	return out, nil
}

// receiptHead decodes a stored receipt up to its "files" key, which
// encoding/json writes last (Receipt's last field).
func receiptHead(v []byte) (*Receipt, error) {
	dec := json.NewDecoder(bytes.NewReader(v))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errNotObject
	}
	end := len(v)
	for dec.More() {
		before := dec.InputOffset() // just after the value before
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		if tok == "files" {
			end = int(before)
			break
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, err
		}
	}
	head := append(bytes.Clone(v[:end]), '}')
	if end == len(v) {
		head = v
	}
	var r Receipt
	if err := json.Unmarshal(head, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// FileOwner returns the package that owns the non-directory path, or "".
func (t *StateTx) FileOwner(prefix, path string) string {
	return string(t.tx.Bucket(bucketFiles).Get(key(prefix, path)))
}

// OwnsUnder says whether any package lists a file or a directory inside the
// directory dir ("." for the prefix itself). A plan asks it once per new
// directory instead of asking FileOwner and DirOwners of every path in it.
func (t *StateTx) OwnsUnder(prefix, dir string) bool {
	start := key(prefix, dir+"/")
	if dir == "." {
		start = key(prefix, "")
	}
	for _, b := range [][]byte{bucketFiles, bucketDirs} {
		if k, _ := t.tx.Bucket(b).Cursor().Seek(start); k != nil && bytes.HasPrefix(k, start) {
			return true
		}
	}
	return false
}

// DirOwners returns the packages that list the directory path, by name.
func (t *StateTx) DirOwners(prefix, path string) []string {
	var owners []string
	start := key(prefix, path, "")
	c := t.tx.Bucket(bucketDirs).Cursor()
	for k, _ := c.Seek(start); k != nil && bytes.HasPrefix(k, start); k, _ = c.Next() {
		owners = append(owners, string(k[len(start):]))
	}
	return owners
}

// Info returns the stored info/ files of an installed package.
func (t *StateTx) Info(prefix, name string) map[string][]byte {
	out := make(map[string][]byte)
	start := key(prefix, name, "")
	c := t.tx.Bucket(bucketInfo).Cursor()
	for k, v := c.Seek(start); k != nil && bytes.HasPrefix(k, start); k, v = c.Next() {
		out[string(k[len(start):])] = bytes.Clone(v)
	}
	return out
}

// PutReceipt records r and its info/ files, replacing any earlier receipt of
// the same package together with the ownership that receipt claimed.
func (t *StateTx) PutReceipt(r *Receipt, info map[string][]byte) error {
	if err := t.DeleteReceipt(r.Prefix, r.Name); err != nil {
		return err
	}
	raw, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := t.tx.Bucket(bucketPackages).Put(key(r.Prefix, r.Name), raw); err != nil {
		return err
	}
	files, dirs := t.tx.Bucket(bucketFiles), t.tx.Bucket(bucketDirs)
	for _, f := range r.Files {
		if f.Type == Dir {
			err = dirs.Put(key(r.Prefix, f.Path, r.Name), nil)
		} else {
			err = files.Put(key(r.Prefix, f.Path), []byte(r.Name))
		}
		if err != nil {
			return err
		}
	}
	names := make([]string, 0, len(info))
	for n := range info {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := t.tx.Bucket(bucketInfo).Put(key(r.Prefix, r.Name, n), info[n]); err != nil {
			return err
		}
	}
	return nil
}

// DeleteReceipt forgets an installed package: its receipt, the ownership it
// claimed and its info/ copy. Ownership that another package has since taken
// over is left alone.
func (t *StateTx) DeleteReceipt(prefix, name string) error {
	old, err := t.Receipt(prefix, name)
	if err != nil || old == nil {
		return err
	}
	files, dirs := t.tx.Bucket(bucketFiles), t.tx.Bucket(bucketDirs)
	for _, f := range old.Files {
		if f.Type == Dir {
			err = dirs.Delete(key(prefix, f.Path, name))
		} else if t.FileOwner(prefix, f.Path) == name {
			err = files.Delete(key(prefix, f.Path))
		}
		if err != nil {
			return err
		}
	}
	for n := range t.Info(prefix, name) {
		if err := t.tx.Bucket(bucketInfo).Delete(key(prefix, name, n)); err != nil {
			return err
		}
	}
	return t.tx.Bucket(bucketPackages).Delete(key(prefix, name))
}

// UpdateReceipt rewrites the receipt of name in place with what change
// makes of it (its reason, its hold), leaving the ownership it claims
// alone: change must not touch Files. It returns nil when name is not
// installed, and the receipt as it is when change says nothing changed.
func (t *StateTx) UpdateReceipt(prefix, name string, change func(*Receipt) bool) (*Receipt, error) {
	r, err := t.Receipt(prefix, name)
	if err != nil || r == nil || !change(r) {
		return r, err
	}
	raw, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	return r, t.tx.Bucket(bucketPackages).Put(key(prefix, name), raw)
}

// Disown takes paths out of the receipt of name, which stays installed:
// another package that replaces it took them over, and owns them already
// (PutReceipt). Doing it again changes nothing, for recovery.
func (t *StateTx) Disown(prefix, name string, paths []string) error {
	r, err := t.Receipt(prefix, name)
	if err != nil || r == nil {
		return err
	}
	gone := make(map[string]bool, len(paths))
	for _, p := range paths {
		gone[p] = true
	}
	kept := r.Files[:0]
	for _, f := range r.Files {
		if !gone[f.Path] || f.Type == Dir {
			kept = append(kept, f)
		}
	}
	r.Files = kept
	raw, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return t.tx.Bucket(bucketPackages).Put(key(prefix, name), raw)
}

// Journal returns the recorded transaction in flight, or nil.
func (t *StateTx) Journal() []byte {
	return bytes.Clone(t.tx.Bucket(bucketMeta).Get(keyJournal))
}

// SetJournal records the transaction in flight.
func (t *StateTx) SetJournal(b []byte) error {
	return t.tx.Bucket(bucketMeta).Put(keyJournal, b)
}

// JournalStates returns the small, often rewritten part of the journal:
// how far each step of the transaction got.
func (t *StateTx) JournalStates() []byte {
	return bytes.Clone(t.tx.Bucket(bucketMeta).Get(keyStates))
}

// SetJournalStates records how far the transaction in flight got, without
// rewriting its (possibly large) plan.
func (t *StateTx) SetJournalStates(b []byte) error {
	return t.tx.Bucket(bucketMeta).Put(keyStates, b)
}

// ClearJournal marks that no transaction is in flight.
func (t *StateTx) ClearJournal() error {
	for _, k := range [][]byte{keyStates, keyJournalHistory} {
		if err := t.tx.Bucket(bucketMeta).Delete(k); err != nil {
			return err
		}
	}
	return t.tx.Bucket(bucketMeta).Delete(keyJournal)
}

// AllReceipts returns the receipts of every prefix.
func (t *StateTx) AllReceipts() ([]*Receipt, error) {
	var out []*Receipt
	err := t.tx.Bucket(bucketPackages).ForEach(func(k, v []byte) error {
		var r Receipt
		if err := json.Unmarshal(v, &r); err != nil {
			return t.recordErr(fmt.Sprintf("receipt %q", bytes.ReplaceAll(k, []byte{0}, []byte{' '})), err)
		}
		out = append(out, &r)
		return nil
	})
	return out, err
}
