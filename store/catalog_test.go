package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"tpm/manifest"
)

func catalogEntry(file, name string) *CatalogEntry {
	m := manifest.Manifest{Name: name, Version: "1.0-1", Architecture: "x86_64", Type: manifest.TypeBinary,
		Maintainer: "A <a@example.org>", Description: "d"}
	dep, err := manifest.ParseConstraint("libc >= 2")
	if err != nil {
		panic(err)
	}
	m.Dependencies = []manifest.Dependency{{dep}}
	return &CatalogEntry{Manifest: m, File: file, Size: 10, SHA256: "aa", InfoHash: "bb",
		InfoBytes: []byte("d4:name1:xe"), MTimeNS: 1, CTimeNS: 2, Inode: 3}
}

func TestCatalogEntriesRejectionsAndGeneration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "catalog.db")
	c, err := OpenCatalog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := OpenCatalog(path); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}

	a, b := catalogEntry("a-1.0-1-x86_64.tpkg", "a"), catalogEntry("b-1.0-1-x86_64.tpkg", "b")
	now := time.Unix(1700000000, 5).UTC()
	err = c.Update(func(tx *CatalogTx) error {
		for _, e := range []*CatalogEntry{b, a} {
			if err := tx.PutEntry(e); err != nil {
				return err
			}
		}
		if err := tx.PutRejection(&Rejection{File: "bad.tpkg", Reason: "archive is truncated", Size: 4}); err != nil {
			return err
		}
		return tx.SetGeneration(1, now)
	})
	if err != nil {
		t.Fatal(err)
	}

	err = c.View(func(tx *CatalogTx) error {
		got, err := tx.Entries()
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(got, []*CatalogEntry{a, b}) {
			t.Errorf("Entries = %+v, want a then b", got)
		}
		if e, _ := tx.Entry("missing"); e != nil {
			t.Errorf("Entry(missing) = %+v", e)
		}
		rej, _ := tx.Rejections()
		if len(rej) != 1 || rej[0].Reason != "archive is truncated" {
			t.Errorf("Rejections = %+v", rej)
		}
		if g := tx.Generation(); g != 1 {
			t.Errorf("Generation = %d", g)
		}
		if u := tx.Updated(); !u.Equal(now) {
			t.Errorf("Updated = %v, want %v", u, now)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// A rejection replaces an entry of the same file and the other way round.
	err = c.Update(func(tx *CatalogTx) error {
		if err := tx.PutRejection(&Rejection{File: a.File, Reason: "bad"}); err != nil {
			return err
		}
		return tx.PutEntry(catalogEntry("bad.tpkg", "c"))
	})
	if err != nil {
		t.Fatal(err)
	}
	c.View(func(tx *CatalogTx) error {
		if e, _ := tx.Entry(a.File); e != nil {
			t.Errorf("entry of rejected file still there")
		}
		if r, _ := tx.Rejection("bad.tpkg"); r != nil {
			t.Errorf("rejection of published file still there")
		}
		return nil
	})

	// Generation numbers only grow.
	err = c.Update(func(tx *CatalogTx) error { return tx.SetGeneration(1, now) })
	if err == nil {
		t.Error("SetGeneration(1) after 1 succeeded")
	}
}

func TestCatalogRefusesBadFileNames(t *testing.T) {
	c, err := OpenCatalog(filepath.Join(t.TempDir(), "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, name := range []string{"", ".", "..", "a/b", "../x", "a\x00b", string(bytes.Repeat([]byte("x"), 256))} {
		err := c.Update(func(tx *CatalogTx) error { return tx.PutEntry(catalogEntry(name, "a")) })
		if err == nil {
			t.Errorf("PutEntry(%q) succeeded", name)
		}
		err = c.Update(func(tx *CatalogTx) error { return tx.PutRejection(&Rejection{File: name}) })
		if err == nil {
			t.Errorf("PutRejection(%q) succeeded", name)
		}
	}
}

// The snapshot is a complete catalog that a client opens read-only, taken
// while a writer holds the database.
func TestCatalogSnapshotOpensReadOnly(t *testing.T) {
	dir := t.TempDir()
	c, err := OpenCatalog(filepath.Join(dir, "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a := catalogEntry("a-1.0-1-x86_64.tpkg", "a")
	if err := c.Update(func(tx *CatalogTx) error {
		if err := tx.PutEntry(a); err != nil {
			return err
		}
		return tx.SetGeneration(7, time.Now())
	}); err != nil {
		t.Fatal(err)
	}

	// A write transaction in flight does not show in the snapshot.
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		done <- c.Update(func(tx *CatalogTx) error {
			close(started)
			<-release
			return tx.PutEntry(catalogEntry("b-1.0-1-x86_64.tpkg", "b"))
		})
	}()
	<-started
	snap, err := c.Snapshot()
	close(release)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	path := filepath.Join(dir, "index.db")
	if err := os.WriteFile(path, snap, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := OpenCatalogReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.View(func(tx *CatalogTx) error {
		got, err := tx.Entries()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, []*CatalogEntry{a}) {
			t.Errorf("snapshot entries = %+v, want only a", got)
		}
		if tx.Generation() != 7 {
			t.Errorf("snapshot generation = %d, want 7", tx.Generation())
		}
		return nil
	})

	// Something that is not a catalog is refused.
	other := filepath.Join(dir, "other.db")
	db, err := OpenState(other)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if r, err := OpenCatalogReadOnly(other); err == nil {
		r.Close()
		t.Error("OpenCatalogReadOnly opened an installed-state database")
	}
}

// The DHT nodes an index names: none in an index without the key (an older
// server's), what was set read back in order, and what a hostile index
// holds bounded: only valid "host:port", each once, at most MaxDHTNodes,
// nothing from a value too large or not JSON.
func TestCatalogDHTNodes(t *testing.T) {
	c, err := OpenCatalog(filepath.Join(t.TempDir(), "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	read := func() (nodes []string) {
		t.Helper()
		c.View(func(tx *CatalogTx) error { nodes = tx.DHTNodes(); return nil })
		return nodes
	}
	if got := read(); got != nil {
		t.Fatalf("an index without the key names %q", got)
	}
	set := func(nodes []string) error {
		return c.Update(func(tx *CatalogTx) error { return tx.SetDHTNodes(nodes) })
	}
	want := []string{"repo.example:6881", "127.0.0.1:6881", "[::1]:7000"}
	if err := set(want); err != nil {
		t.Fatal(err)
	}
	if got := read(); !reflect.DeepEqual(got, want) {
		t.Fatalf("read %q, want %q", got, want)
	}
	if err := set(nil); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != nil {
		t.Fatalf("after none was set: %q", got)
	}

	hostile := []string{"", "repo", "repo:", "repo:0", "repo:65536", "repo:-1", "0.0.0.0:6881", "[::]:1",
		"224.0.0.1:6881", "[fe80::1%eth0]:1", "a b:1", "-x.example:1", "x..example:1", "\x00:1",
		strings.Repeat("a", 64) + ".example:1", strings.Repeat("a.", 127) + "example:1"}
	for _, n := range hostile {
		if err := CheckDHTNode(n); err == nil {
			t.Errorf("CheckDHTNode(%q) accepted it", n)
		}
		if err := set([]string{n}); err == nil {
			t.Errorf("SetDHTNodes(%q) accepted it", n)
		}
	}
	many := make([]string, MaxDHTNodes+1)
	for i := range many {
		many[i] = fmt.Sprintf("10.0.0.%d:6881", i+1)
	}
	if err := set(many); err == nil {
		t.Errorf("SetDHTNodes took %d nodes", len(many))
	}

	putRaw := func(raw []byte) {
		t.Helper()
		if err := c.Update(func(tx *CatalogTx) error { return tx.tx.Bucket(bucketCatMeta).Put(keyDHTNodes, raw) }); err != nil {
			t.Fatal(err)
		}
	}
	mixed := append(append([]string{"10.0.0.1:6881"}, hostile...), many...)
	raw, _ := json.Marshal(mixed)
	putRaw(raw)
	got := read()
	if len(got) != MaxDHTNodes || got[0] != "10.0.0.1:6881" || got[1] != "10.0.0.2:6881" {
		t.Fatalf("a hostile list read as %q", got)
	}
	for _, bad := range [][]byte{[]byte("not json"), []byte(`{"a":1}`), append(raw, bytes.Repeat([]byte(" "), maxDHTNodesBytes)...)} {
		putRaw(bad)
		if got := read(); got != nil {
			t.Errorf("%.20q read as %q", bad, got)
		}
	}
}
