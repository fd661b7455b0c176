package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"

	"tpm/generation"
	"tpm/repo/repotest"
	"tpm/signing"
	"tpm/store"
	"tpm/swarm"
)

type fixture struct {
	dir     string // package directory
	state   string
	cat     *store.Catalog
	key     *signing.Key
	pub     signing.PublicKey
	scanner *Scanner
}

func newFixture(t *testing.T, check Check) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), state: t.TempDir()}
	keyPath, pubPath, err := signing.Keygen(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	if f.key, err = signing.LoadKey(keyPath); err != nil {
		t.Fatal(err)
	}
	if f.pub, err = signing.LoadPublicKey(pubPath); err != nil {
		t.Fatal(err)
	}
	f.open(t, check)
	return f
}

func (f *fixture) open(t *testing.T, check Check) {
	t.Helper()
	cat, err := store.OpenCatalog(filepath.Join(f.state, "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	f.cat = cat
	f.scanner = NewScanner(cat, Options{Dir: f.dir, PublicURL: "http://127.0.0.1:9/", Signer: f.key, Check: check,
		Trackers: []string{"http://127.0.0.1:9/announce"}})
}

func (f *fixture) scan(t *testing.T) (*generation.Generation, ScanStats) {
	t.Helper()
	g, st, err := f.scanner.Scan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return g, st
}

func pkg(name, version string, size int, seed uint64) repotest.Package {
	return repotest.Package{Name: name, Version: version, PayloadBytes: size, Seed: seed}
}

func blobBytes(t *testing.T, b generation.Blob) []byte {
	t.Helper()
	data, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// torrentOf is the .torrent the publisher serves for p of g.
func torrentOf(t *testing.T, g *generation.Generation, p *generation.Package) []byte {
	t.Helper()
	tor, err := swarm.MetaInfoFile(p.InfoBytes, g.Trackers, g.WebSeeds)
	if err != nil {
		t.Fatal(err)
	}
	return tor
}

// checkGeneration verifies everything a generation says against the files.
func checkGeneration(t *testing.T, f *fixture, g *generation.Generation) {
	t.Helper()
	index := blobBytes(t, g.Index)
	if err := f.pub.Verify(index, g.IndexSig); err != nil {
		t.Errorf("generation %d: %v", g.Number, err)
	}
	// The signature (over the index) makes the ETag: verified above, it
	// stands for these bytes.
	sum := sha256.Sum256(g.IndexSig)
	if g.IndexETag != `"`+hex.EncodeToString(sum[:])+`"` {
		t.Errorf("ETag %s is not the sha256 of the index's signature", g.IndexETag)
	}
	for _, p := range g.Packages {
		data, err := os.ReadFile(filepath.Join(f.dir, p.File))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		if p.SHA256 != hex.EncodeToString(sum[:]) || p.Size != int64(len(data)) {
			t.Errorf("%s: sha256/size do not match the file", p.File)
		}
		mi, err := metainfo.Load(bytes.NewReader(torrentOf(t, g, &p)))
		if err != nil {
			t.Fatalf("%s: torrent: %v", p.File, err)
		}
		if mi.HashInfoBytes() != p.InfoHash {
			t.Errorf("%s: .torrent infohash differs", p.File)
		}
		info, _ := mi.UnmarshalInfo()
		if info.Name != p.File || info.Length != p.Size {
			t.Errorf("%s: torrent info %q %d", p.File, info.Name, info.Length)
		}
		if mi.Announce != "http://127.0.0.1:9/announce" || len(mi.UrlList) != 1 || mi.UrlList[0] != "http://127.0.0.1:9/packages/" {
			t.Errorf("%s: announce %q url-list %q", p.File, mi.Announce, mi.UrlList)
		}
		if g.Package(p.File) == nil || g.ByInfoHash(p.InfoHash) == nil {
			t.Errorf("%s: lookups fail", p.File)
		}
	}
	// index.db is a catalog with the same packages.
	path := filepath.Join(t.TempDir(), "index.db")
	os.WriteFile(path, blobBytes(t, g.Index), 0o644)
	c, err := store.OpenCatalogReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.View(func(tx *store.CatalogTx) error {
		es, _ := tx.Entries()
		if len(es) != len(g.Packages) {
			t.Errorf("index.db has %d entries, generation %d", len(es), len(g.Packages))
		}
		for i, e := range es {
			if e.File != g.Packages[i].File || e.SHA256 != g.Packages[i].SHA256 {
				t.Errorf("index.db entry %d = %s, generation has %s", i, e.File, g.Packages[i].File)
			}
		}
		if tx.Generation() != g.Number {
			t.Errorf("index.db generation %d, want %d", tx.Generation(), g.Number)
		}
		return nil
	})
	var doc IndexJSON
	blob, err := g.IndexJSON.Get()
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(blobBytes(t, blob), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Generation != g.Number || len(doc.Packages) != len(g.Packages) || len(doc.Rejected) != len(g.Rejected) {
		t.Errorf("index.json: generation %d, %d packages, %d rejected", doc.Generation, len(doc.Packages), len(doc.Rejected))
	}
}

func infoHashes(g *generation.Generation) map[string][20]byte {
	m := make(map[string][20]byte)
	for _, p := range g.Packages {
		m[p.File] = p.InfoHash
	}
	return m
}

func TestScanAddChangeRemove(t *testing.T) {
	f := newFixture(t, CheckFull)
	a := repotest.Make(t, f.dir, pkg("a", "1.0-1", 300<<10, 1))
	repotest.Make(t, f.dir, pkg("b", "1.0-1", 20<<10, 2))
	c := repotest.Make(t, f.dir, pkg("c", "2:1.0-1", 1<<20, 3))
	os.WriteFile(filepath.Join(f.dir, "README"), []byte("not a package"), 0o644)

	g1, st := f.scan(t)
	if g1.Number != 1 || len(g1.Packages) != 3 || st.Added != 3 || !st.NewGeneration || len(g1.Rejected) != 0 {
		t.Fatalf("first scan: generation %d with %d packages, stats %+v", g1.Number, len(g1.Packages), st)
	}
	checkGeneration(t, f, g1)
	if g1.Package("c-2:1.0-1-any.tpkg") == nil {
		t.Error("an epoch version's file is missing")
	}

	// Nothing changed: the same generation, and no file read.
	g, st := f.scan(t)
	if g != g1 || st.NewGeneration || st.Unchanged != 3 || st.BytesRead != 0 {
		t.Fatalf("unchanged rescan: generation %d, stats %+v", g.Number, st)
	}

	// Add d, change b (a new version of its payload under the same name),
	// remove c.
	repotest.Make(t, f.dir, pkg("d", "1", 10<<10, 4))
	repotest.Make(t, f.dir, pkg("b", "1.0-1", 20<<10, 22))
	os.Remove(c)
	g2, st := f.scan(t)
	if g2.Number != 2 || st.Added != 1 || st.Changed != 1 || st.Removed != 1 || st.Unchanged != 1 {
		t.Fatalf("second scan: generation %d, stats %+v", g2.Number, st)
	}
	checkGeneration(t, f, g2)
	ih1, ih2 := infoHashes(g1), infoHashes(g2)
	if ih1[filepath.Base(a)] != ih2[filepath.Base(a)] {
		t.Error("the unchanged package's infohash changed")
	}
	if ih1["b-1.0-1-any.tpkg"] == ih2["b-1.0-1-any.tpkg"] {
		t.Error("the changed package kept its infohash")
	}
	if _, ok := ih2[filepath.Base(c)]; ok {
		t.Error("the removed package is still published")
	}

	// A restarted server (new scanner, same catalog) publishes the same
	// generation number for the same content.
	f.cat.Close()
	f.open(t, CheckFull)
	g3, st := f.scan(t)
	same := bytes.Equal(blobBytes(t, g3.Index), blobBytes(t, g2.Index))
	if g3.Number != 2 || st.BytesRead != 0 || !same {
		t.Errorf("after restart: generation %d, read %d bytes, same index %v", g3.Number, st.BytesRead, same)
	}
}

// The same file hashes to the same infohash in any directory, whatever else
// is there.
func TestInfoHashIndependentOfDirectory(t *testing.T) {
	f1, f2 := newFixture(t, CheckFull), newFixture(t, CheckManifest)
	p := repotest.Make(t, f1.dir, pkg("x", "1", 50<<10, 9))
	data, _ := os.ReadFile(p)
	os.WriteFile(filepath.Join(f2.dir, filepath.Base(p)), data, 0o644)
	repotest.Make(t, f2.dir, pkg("y", "1", 50<<10, 10))
	g1, _ := f1.scan(t)
	g2, _ := f2.scan(t)
	if g1.Package(filepath.Base(p)).InfoHash != g2.Package(filepath.Base(p)).InfoHash {
		t.Error("infohash depends on the directory")
	}
}

func TestScanRejects(t *testing.T) {
	f := newFixture(t, CheckFull)
	good := repotest.Make(t, f.dir, pkg("good", "1", 100<<10, 1))
	data, _ := os.ReadFile(good)

	write := func(name string, b []byte) { os.WriteFile(filepath.Join(f.dir, name), b, 0o644) }
	// Same content as good under the wrong name.
	write("other-1-any.tpkg", data)
	// Cut off: the manifest is readable, the rest is not.
	truncSrc := repotest.Make(t, t.TempDir(), pkg("trunc", "1", 100<<10, 2))
	trunc, _ := os.ReadFile(truncSrc)
	write("trunc-1-any.tpkg", trunc[:len(trunc)-100])
	write("garbage-1-any.tpkg", []byte("this is not gzip"))
	write("empty-1-any.tpkg", nil)
	os.Symlink(good, filepath.Join(f.dir, "link-1-any.tpkg"))
	write(".hidden-1-any.tpkg", []byte("ignored"))

	g, st := f.scan(t)
	if len(g.Packages) != 1 || g.Packages[0].File != "good-1-any.tpkg" {
		t.Fatalf("published %+v, want only good", g.Packages)
	}
	reasons := make(map[string]string)
	for _, r := range g.Rejected {
		reasons[r.File] = r.Reason
	}
	for file, want := range map[string]string{
		"other-1-any.tpkg":   "file name should be good-1-any.tpkg",
		"trunc-1-any.tpkg":   "truncated",
		"garbage-1-any.tpkg": "gzip",
		"empty-1-any.tpkg":   "truncated",
		"link-1-any.tpkg":    "not a regular file",
	} {
		if !strings.Contains(reasons[file], want) {
			t.Errorf("%s: reason %q, want it to mention %q", file, reasons[file], want)
		}
		if strings.ContainsAny(reasons[file], "\n") {
			t.Errorf("%s: reason has several lines", file)
		}
	}
	if len(reasons) != 5 || st.Rejected != 5 || len(st.Rejections) != 5 {
		t.Errorf("rejected %v, stats %+v", reasons, st)
	}
	checkGeneration(t, f, g)

	// Unchanged bad files are neither re-read nor reported again.
	g2, st := f.scan(t)
	if g2 != g || st.BytesRead != 0 || st.Rejected != 0 {
		t.Errorf("rescan: new generation %v, read %d, rejected %d", g2 != g, st.BytesRead, st.Rejected)
	}

	// Fixing a file publishes it; removing a rejected file forgets it.
	os.Remove(filepath.Join(f.dir, "trunc-1-any.tpkg"))
	write("trunc-1-any.tpkg", trunc)
	os.Remove(filepath.Join(f.dir, "garbage-1-any.tpkg"))
	g3, st := f.scan(t)
	if len(g3.Packages) != 2 || len(g3.Rejected) != 3 || st.Added != 1 {
		t.Errorf("after fixing: %d published, %d rejected, stats %+v", len(g3.Packages), len(g3.Rejected), st)
	}
}

// The manifest check reads only up to package.json: a truncated archive
// passes it (clients catch it), while the full check rejects it.
func TestCheckManifestMode(t *testing.T) {
	f := newFixture(t, CheckManifest)
	src := repotest.Make(t, t.TempDir(), pkg("trunc", "1", 100<<10, 2))
	data, _ := os.ReadFile(src)
	os.WriteFile(filepath.Join(f.dir, "trunc-1-any.tpkg"), data[:len(data)-100], 0o644)
	os.WriteFile(filepath.Join(f.dir, "garbage-1-any.tpkg"), []byte("garbage"), 0o644)
	g, _ := f.scan(t)
	if len(g.Packages) != 1 || len(g.Rejected) != 1 {
		t.Errorf("manifest check: %d published, %d rejected; want 1 and 1", len(g.Packages), len(g.Rejected))
	}
	checkGeneration(t, f, g)
}

// A file rewritten in place with its old size and mtime put back is still
// noticed: its ctime moved.
func TestScanNoticesRestoredMtime(t *testing.T) {
	f := newFixture(t, CheckFull)
	p := repotest.Make(t, f.dir, pkg("a", "1", 64<<10, 1))
	g1, _ := f.scan(t)
	fi, _ := os.Stat(p)
	other := repotest.Make(t, t.TempDir(), pkg("a", "1", 64<<10, 2))
	data, _ := os.ReadFile(other)
	if int64(len(data)) != fi.Size() {
		t.Skip("the repacked file has another size; the test needs the same")
	}
	time.Sleep(10 * time.Millisecond) // a visibly later ctime
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(p, fi.ModTime(), fi.ModTime())
	g2, st := f.scan(t)
	if st.Changed != 1 || g2.Packages[0].InfoHash == g1.Packages[0].InfoHash {
		t.Errorf("rewritten file not noticed: stats %+v", st)
	}
}

func TestScanCancelled(t *testing.T) {
	f := newFixture(t, CheckFull)
	for i := range 8 {
		repotest.Make(t, f.dir, pkg("p"+string(rune('a'+i)), "1", 10<<10, uint64(i)))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := f.scanner.Scan(ctx); err == nil {
		t.Fatal("a cancelled scan succeeded")
	}
	f.cat.View(func(tx *store.CatalogTx) error {
		if es, _ := tx.Entries(); len(es) != 0 || tx.Generation() != 0 {
			t.Errorf("a cancelled scan committed %d entries, generation %d", len(es), tx.Generation())
		}
		return nil
	})
	g, _ := f.scan(t)
	if len(g.Packages) != 8 {
		t.Errorf("scan after cancel: %d packages", len(g.Packages))
	}
}

// The announce list is in the signed index, and changing it (a restart
// with other --announce flags) makes a new generation whose torrents name
// the new list.
func TestTrackersInTheIndex(t *testing.T) {
	f := newFixture(t, CheckFull)
	repotest.Make(t, f.dir, pkg("a", "1", 100, 1))
	g1, _ := f.scan(t)
	if g, st := f.scan(t); g.Number != g1.Number || st.NewGeneration {
		t.Fatalf("unchanged rescan made generation %d", g.Number)
	}
	trackers := []string{"udp://127.0.0.1:6969", "http://127.0.0.1:6969/announce"}
	f.scanner = NewScanner(f.cat, Options{Dir: f.dir, PublicURL: "http://127.0.0.1:9/", Signer: f.key, Trackers: trackers})
	g2, _ := f.scan(t)
	if g2.Number != g1.Number+1 {
		t.Fatalf("new trackers: generation %d after %d", g2.Number, g1.Number)
	}
	f.cat.View(func(tx *store.CatalogTx) error {
		if got := tx.Trackers(); !slices.Equal(got, trackers) {
			t.Errorf("catalog trackers %q, want %q", got, trackers)
		}
		return nil
	})
	mi, err := metainfo.Load(bytes.NewReader(torrentOf(t, g2, &g2.Packages[0])))
	if err != nil {
		t.Fatal(err)
	}
	if got := mi.UpvertedAnnounceList().DistinctValues(); !slices.Equal(got, trackers) {
		t.Errorf("torrent trackers %q, want %q", got, trackers)
	}
}

// The DHT nodes are in the signed index: naming them (a restart with
// --dht) makes a new generation whose index.db names them, an unchanged
// rescan does not, and dropping them makes one that names none.
func TestDHTNodesInTheIndex(t *testing.T) {
	f := newFixture(t, CheckFull)
	repotest.Make(t, f.dir, pkg("a", "1", 100, 1))
	g1, _ := f.scan(t)
	if got := indexDHTNodes(t, g1); got != nil {
		t.Fatalf("an index without the DHT names %q", got)
	}
	nodes := []string{"127.0.0.1:6881"}
	scanWith := func(nodes []string) *generation.Generation {
		f.scanner = NewScanner(f.cat, Options{Dir: f.dir, PublicURL: "http://127.0.0.1:9/", Signer: f.key,
			Trackers: []string{"http://127.0.0.1:9/announce"}, DHTNodes: nodes})
		g, _ := f.scan(t)
		return g
	}
	g2 := scanWith(nodes)
	if g2.Number != g1.Number+1 || !slices.Equal(indexDHTNodes(t, g2), nodes) {
		t.Fatalf("generation %d after %d names %q, want %q", g2.Number, g1.Number, indexDHTNodes(t, g2), nodes)
	}
	checkGeneration(t, f, g2)
	if g, st := f.scan(t); g.Number != g2.Number || st.NewGeneration {
		t.Fatalf("unchanged rescan made generation %d", g.Number)
	}
	if g3 := scanWith(nil); g3.Number != g2.Number+1 || indexDHTNodes(t, g3) != nil {
		t.Fatalf("generation %d after %d names %q", g3.Number, g2.Number, indexDHTNodes(t, g3))
	}
}

// indexDHTNodes reads the DHT nodes of g's index.db as a host does.
func indexDHTNodes(t *testing.T, g *generation.Generation) []string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "index.db")
	if err := os.WriteFile(path, blobBytes(t, g.Index), 0o644); err != nil {
		t.Fatal(err)
	}
	cat, err := store.OpenCatalogReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	var nodes []string
	cat.View(func(tx *store.CatalogTx) error { nodes = tx.DHTNodes(); return nil })
	return nodes
}

func TestEmptyDirectoryIsGenerationOne(t *testing.T) {
	f := newFixture(t, CheckFull)
	g, st := f.scan(t)
	if g.Number != 1 || len(g.Packages) != 0 || !st.NewGeneration {
		t.Errorf("empty directory: generation %d, %d packages", g.Number, len(g.Packages))
	}
	checkGeneration(t, f, g)
	if _, _, err := NewScanner(f.cat, Options{Dir: filepath.Join(f.dir, "missing")}).Scan(context.Background()); err == nil {
		t.Error("scanning a missing directory succeeded")
	}
}

// TestIndexIsSignedAgainBeforeItExpires: with nothing changed, a scan once
// a quarter of the validity has passed makes a new generation with a new
// expiry; before that it keeps the last one.
func TestIndexIsSignedAgainBeforeItExpires(t *testing.T) {
	f := newFixture(t, CheckFull)
	repotest.Make(t, f.dir, pkg("a", "1", 100, 1))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.scanner = NewScanner(f.cat, Options{Dir: f.dir, PublicURL: "http://127.0.0.1:9/", Signer: f.key,
		Trackers: []string{"http://127.0.0.1:9/announce"}, ValidFor: 8 * time.Hour, Now: func() time.Time { return now }})
	validUntil := func() time.Time {
		var u time.Time
		f.cat.View(func(tx *store.CatalogTx) error { u = tx.ValidUntil(); return nil })
		return u
	}
	g1, _ := f.scan(t)
	if want := now.Add(8 * time.Hour); !validUntil().Equal(want) {
		t.Fatalf("valid until %v, want %v", validUntil(), want)
	}
	now = now.Add(2*time.Hour - time.Second)
	if g, st := f.scan(t); g.Number != g1.Number || st.NewGeneration {
		t.Fatalf("before a quarter passed: generation %d (new %v), want %d", g.Number, st.NewGeneration, g1.Number)
	}
	now = now.Add(time.Second)
	g2, st := f.scan(t)
	if g2.Number != g1.Number+1 || !st.NewGeneration || len(g2.Packages) != 1 {
		t.Fatalf("a quarter passed: generation %d (new %v), %d packages", g2.Number, st.NewGeneration, len(g2.Packages))
	}
	if want := now.Add(8 * time.Hour); !validUntil().Equal(want) {
		t.Fatalf("re-signed: valid until %v, want %v", validUntil(), want)
	}
	checkGeneration(t, f, g2)
	if RescanEvery(8*time.Hour) != 2*time.Hour {
		t.Fatal("RescanEvery is not a quarter")
	}
}

// TestVerifyRejectsBytesThatChangedUnseen: a file whose bytes no longer
// match its entry while its size and times say nothing changed (bit rot;
// made here by changing the recorded hash, as userland cannot write a file
// and keep its ctime) is kept by a scan, and rejected by a verify.
func TestVerifyRejectsBytesThatChangedUnseen(t *testing.T) {
	f := newFixture(t, CheckFull)
	repotest.Make(t, f.dir, pkg("a", "1", 1000, 1))
	repotest.Make(t, f.dir, pkg("b", "1", 1000, 2))
	g1, _ := f.scan(t)
	if g, st, err := f.scanner.Verify(context.Background()); err != nil || g.Number != g1.Number || st.NewGeneration || st.Unchanged != 2 {
		t.Fatalf("verify of good files: generation %d, %+v, %v", g.Number, st, err)
	}
	var file string
	err := f.cat.Update(func(tx *store.CatalogTx) error {
		es, err := tx.Entries()
		if err != nil {
			return err
		}
		e := es[0]
		file = e.File
		e.SHA256 = strings.Repeat("0", 64)
		return tx.PutEntry(e)
	})
	if err != nil {
		t.Fatal(err)
	}
	if g, st := f.scan(t); st.Rejected != 0 || len(g.Packages) != 2 {
		t.Fatalf("a scan saw the change: %+v", st)
	}
	g, st, err := f.scanner.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !st.NewGeneration || st.Rejected != 1 || len(g.Packages) != 1 || st.Rejections[0].File != file ||
		!strings.Contains(st.Rejections[0].Reason, "bit rot") {
		t.Fatalf("verify: %d packages, %+v", len(g.Packages), st)
	}
	// Until the file changes, later scans keep it rejected.
	if g, st := f.scan(t); st.NewGeneration || len(g.Packages) != 1 {
		t.Fatalf("scan after the verify: %d packages, %+v", len(g.Packages), st)
	}
}

// TestScanKeepsListings: the files of a package read whole are kept by
// its sha256, and forgotten when it is no longer published.
func TestScanKeepsListings(t *testing.T) {
	f := newFixture(t, CheckFull)
	l, err := store.OpenListings(filepath.Join(t.TempDir(), "listings.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	f.scanner = NewScanner(f.cat, Options{Dir: f.dir, PublicURL: "http://127.0.0.1:9/", Signer: f.key, Listings: l})
	path := repotest.Make(t, f.dir, pkg("a", "1", 100, 1))
	g, _ := f.scan(t)
	sum := g.Packages[0].SHA256
	if files, _, ok := l.Get(sum, 100); !ok || !slices.Contains(files, "usr/share/a/payload") {
		t.Fatalf("listing of a: %q %v", files, ok)
	}
	os.Remove(path)
	f.scan(t)
	if _, _, ok := l.Get(sum, 100); ok {
		t.Fatal("the listing of a removed package was kept")
	}
}
