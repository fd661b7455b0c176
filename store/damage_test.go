package store

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// dump is every key and value of every bucket, read with a cursor, so
// every page of the tree is read.
func dump(tx *bolt.Tx) map[string]string {
	out := map[string]string{}
	tx.ForEach(func(name []byte, b *bolt.Bucket) error {
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			out[string(name)+"|"+string(k)] = string(v)
		}
		return nil
	})
	return out
}

// pagesDB makes a small state database (a few dozen pages) in several
// transactions, as a host's after several installs and a remove, with a
// backup, and returns what the database held after each transaction.
func pagesDB(t *testing.T, path string) []map[string]string {
	t.Helper()
	db, err := OpenState(path)
	if err != nil {
		t.Fatal(err)
	}
	var states []map[string]string
	record := func() {
		db.View(func(tx *StateTx) error {
			states = append(states, dump(tx.tx))
			return nil
		})
	}
	record()
	for batch := range 4 {
		err := db.Update(func(tx *StateTx) error {
			for i := range 4 {
				name := fmt.Sprintf("p%d%d", batch, i)
				files := []FileRecord{{Path: "usr", Type: Dir}, {Path: "usr/share", Type: Dir}, {Path: "usr/share/" + name, Type: Dir}}
				for j := range 20 + 10*i {
					files = append(files, FileRecord{Path: fmt.Sprintf("usr/share/%s/file-%02d", name, j), Type: File, Size: int64(j), SHA256: strings.Repeat("ab", 32)})
				}
				info := map[string][]byte{"postinstall": []byte("#!/bin/sh\necho " + name + "\n")}
				if err := tx.PutReceipt(receipt(name, files...), info); err != nil {
					return err
				}
			}
			if batch == 3 {
				return tx.DeleteReceipt("/p", "p11")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		record()
	}
	if err := db.Backup(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return states
}

// pageKinds says what each page of the database at path is, as bbolt
// sees it: meta, freelist, branch, leaf (the first page of a node), more
// (a node's further pages), free, or beyond (past the last page in use).
func pageKinds(t *testing.T, path string, pageSize int) []string {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	kinds := make([]string, int(st.Size())/pageSize)
	for i := range kinds {
		kinds[i] = "beyond"
	}
	b, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.View(func(tx *bolt.Tx) error {
		for id := 0; ; id++ {
			info, err := tx.Page(id)
			if err != nil {
				t.Fatal(err)
			}
			if info == nil {
				return nil
			}
			kinds[id] = info.Type
			if info.Type == "free" {
				continue
			}
			for range info.OverflowCount {
				id++
				kinds[id] = "more"
			}
		}
	})
	return kinds
}

// readAll reads the database as the verbs do, then every key of every
// bucket.
func readAll(db *State) (map[string]string, error) {
	var all map[string]string
	err := db.View(func(tx *StateTx) error {
		if _, err := tx.ReceiptHeads("/p"); err != nil {
			return err
		}
		rs, err := tx.Receipts("/p")
		if err != nil {
			return err
		}
		tx.CountReceipts("/p")
		for _, r := range rs {
			if _, err := tx.Receipt("/p", r.Name); err != nil {
				return err
			}
			for _, f := range r.Files {
				if f.Type == Dir {
					tx.DirOwners("/p", f.Path)
				} else {
					tx.FileOwner("/p", f.Path)
				}
			}
			tx.Info("/p", r.Name)
		}
		if _, err := tx.AllReceipts(); err != nil {
			return err
		}
		tx.Journal()
		all = dump(tx.tx)
		return nil
	})
	return all, err
}

// wantDamaged fails unless err is the one line that names the file and the
// way back.
func wantDamaged(t *testing.T, what string, err error, path string) {
	t.Helper()
	restore := fmt.Sprintf("(stop tpmd, then cp %s%s %s)", path, BackupSuffix, path)
	if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), restore) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("%s: %v, want ErrDamaged with %q on one line", what, err, restore)
	}
}

// closeWithin closes db, failing the test if that takes over 10 s.
func closeWithin(t *testing.T, db *State) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- db.Close() }()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, ErrDamaged) {
			t.Fatalf("close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("close did not return within 10 s")
	}
}

// TestEveryPageZeroed: a real state database with a page zeroed, each page
// in turn, after a clean stop (read first, or written first), after an
// unclean one (the open marker left), and opened checked. Opening, listing, reading everything, writing, backing up and
// closing never panic and never hang: each either works or gives the one
// line naming tpm.db.bak. A zeroed node of the tree is always found: after
// an unclean stop or checked when the file is opened (bbolt's Tx.Check),
// after a clean one at the latest by the read that meets it, and the next open
// refuses the file too. A free page or one past the end changes nothing,
// a meta page leaves the state of a transaction before, and a damaged
// file never replaces the backup.
func TestEveryPageZeroed(t *testing.T) {
	dir := t.TempDir()
	orig := filepath.Join(dir, "orig.db")
	states := pagesDB(t, orig)
	final := states[len(states)-1]
	good, err := os.ReadFile(orig)
	if err != nil {
		t.Fatal(err)
	}
	bak, err := os.ReadFile(orig + BackupSuffix)
	if err != nil {
		t.Fatal(err)
	}
	const pageSize = 4096
	if os.Getpagesize() != pageSize {
		t.Skipf("bbolt's page size here is %d", os.Getpagesize())
	}
	kinds := pageKinds(t, orig, pageSize)
	if len(kinds) < 20 || len(kinds) > 200 {
		t.Fatalf("%d pages: want a few dozen", len(kinds))
	}
	counts := map[string]int{}
	for _, k := range kinds {
		counts[k]++
	}
	for _, k := range []string{"meta", "freelist", "branch", "leaf", "more", "free"} {
		if counts[k] == 0 {
			t.Fatalf("no %s page among %v: the test database does not cover every kind", k, counts)
		}
	}
	t.Logf("pages: %v", counts)

	for page, kind := range kinds {
		for _, mode := range []string{"clean", "clean-write-first", "unclean", "checked"} {
			unclean := mode == "unclean"
			t.Run(fmt.Sprintf("page%02d-%s-%s", page, kind, mode), func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "tpm.db")
				data := bytes.Clone(good)
				clear(data[page*pageSize : (page+1)*pageSize])
				if err := os.WriteFile(path, data, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path+BackupSuffix, bak, 0o600); err != nil {
					t.Fatal(err)
				}
				if unclean {
					if err := os.WriteFile(path+OpenMarkerSuffix, nil, 0o600); err != nil {
						t.Fatal(err)
					}
				}
				found := zeroedPage(t, path, kind, mode, states, final)
				if found {
					// The marker stays, so the next open checks every page
					// and refuses the file too.
					db, err := OpenState(path)
					if kind == "branch" || kind == "leaf" || kind == "freelist" {
						wantDamaged(t, "open again", err, path)
					} else if err == nil {
						closeWithin(t, db)
					}
				}
				if got, _ := os.ReadFile(path + BackupSuffix); !bytes.Equal(got, bak) && found {
					t.Fatal("the damaged file replaced the backup")
				}
			})
		}
	}
}

// zeroedPage opens, reads, writes (first with mode clean-write-first),
// backs up and closes the database at path, one of whose pages (of kind) is
// zeroed, and reports whether the damage was found.
func zeroedPage(t *testing.T, path, kind, mode string, states []map[string]string, final map[string]string) (found bool) {
	t.Helper()
	open := OpenState
	if mode == "checked" {
		open = OpenStateChecked
	}
	db, err := open(path)
	if err != nil {
		wantDamaged(t, "open", err, path)
		t.Logf("open: %v", err)
		if kind == "meta" || kind == "free" || kind == "beyond" {
			t.Fatal("refused for a page bbolt does without")
		}
		return true
	}
	defer closeWithin(t, db)
	switch {
	case kind == "freelist":
		t.Fatal("opened with a zeroed freelist")
	case (mode == "unclean" || mode == "checked") && (kind == "branch" || kind == "leaf"):
		t.Fatal("opened with a zeroed node after an unclean stop, or checked")
	}
	write := func() {
		err := db.Update(func(tx *StateTx) error { return tx.PutReceipt(receipt("new"), nil) })
		if err != nil {
			wantDamaged(t, "write", err, path)
			t.Logf("write: %v", err)
			found = true
		}
	}
	if mode == "clean-write-first" {
		write()
	}
	all, err := readAll(db)
	switch {
	case err != nil:
		wantDamaged(t, "read", err, path)
		t.Logf("read: %v", err)
		found = true
	case kind == "branch" || kind == "leaf":
		t.Fatal("every key read with a zeroed node")
	case mode == "clean-write-first":
	case kind == "free" || kind == "beyond":
		if !maps.Equal(all, final) {
			t.Fatal("a zeroed free page changed what is read")
		}
	case kind == "meta":
		known := false
		for _, s := range states {
			known = known || maps.Equal(all, s)
		}
		if !known {
			t.Fatal("a zeroed meta page: what is read is no transaction's state")
		}
	}
	if mode != "clean-write-first" {
		write()
	}
	if err := db.Backup(); err != nil {
		wantDamaged(t, "backup", err, path)
		t.Logf("backup: %v", err)
		found = true
	}
	return found || db.Damaged() != nil
}

// TestMissingDatabaseBesideItsBackup: a tpm.db gone while its backup is
// there is refused with the way back, not read as a host with nothing
// installed; without a backup it is a new database.
func TestMissingDatabaseBesideItsBackup(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tpm.db")
	fullDB(t, path, 3)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	_, err := OpenState(path)
	wantDamaged(t, "open", err, path)
	if !strings.Contains(err.Error(), path+" is missing") {
		t.Fatalf("got %q", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("the refused open made a new database")
	}
	if err := os.Rename(path+BackupSuffix, path+".old"); err != nil {
		t.Fatal(err)
	}
	db, err := OpenState(path)
	if err != nil {
		t.Fatalf("a new database: %v", err)
	}
	db.Close()
}

// TestOpenMarker: open makes the marker, a clean close removes it, and a
// marker found at open (an unclean stop) has every page checked: a good
// file opens, and the marker goes at its clean close.
func TestOpenMarker(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tpm.db")
	marker := path + OpenMarkerSuffix
	db, err := OpenState(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("no marker while open: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("marker after a clean close: %v", err)
	}
	fullDB(t, path, 10)
	if err := os.WriteFile(marker, []byte("left by a crash\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	db, err = OpenState(path)
	if err != nil {
		t.Fatalf("a good file after an unclean stop: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("marker after a clean close: %v", err)
	}
}

// TestCallersPanicIsNotDamage: a panic of the caller's own code in a
// transaction is a bug, raised again, not taken for a damaged file.
func TestCallersPanicIsNotDamage(t *testing.T) {
	db, err := OpenState(filepath.Join(t.TempDir(), "tpm.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, update := range []bool{false, true} {
		func() {
			defer func() {
				if p := recover(); p != "a bug" {
					t.Fatalf("recovered %v, want the caller's panic", p)
				}
			}()
			run := db.View
			if update {
				run = db.Update
			}
			run(func(*StateTx) error { panic("a bug") })
		}()
	}
	if err := db.Damaged(); err != nil {
		t.Fatalf("damaged after the caller's panic: %v", err)
	}
	if err := db.View(func(*StateTx) error { return nil }); err != nil {
		t.Fatal(err)
	}
}
