package index

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tpm/manifest"
	"tpm/resolve"
	"tpm/signing"
	"tpm/store"
)

// foreign is an architecture that is not this host's.
func foreign() string {
	if manifest.HostArchitecture() == "riscv64" {
		return "s390x"
	}
	return "riscv64"
}

// entryOf is a valid catalog entry of "name=version" (architecture any),
// "name=version/arch" ("host" for this host's), with deps.
func entryOf(spec string, deps ...string) *store.CatalogEntry {
	nv, arch, ok := strings.Cut(spec, "/")
	switch {
	case !ok:
		arch = manifest.ArchAny
	case arch == "host":
		arch = manifest.HostArchitecture()
	}
	n, v, _ := strings.Cut(nv, "=")
	m := manifest.Manifest{Name: n, Version: v, Architecture: arch, Type: manifest.TypeBinary, Description: "the " + n + " package"}
	for _, d := range deps {
		c, err := manifest.ParseConstraint(d)
		if err != nil {
			panic(err)
		}
		m.Dependencies = append(m.Dependencies, manifest.Dependency{c})
	}
	return &store.CatalogEntry{Manifest: m, File: m.FileName(), Size: 10,
		SHA256: strings.Repeat("ab", 32), InfoHash: strings.Repeat("cd", 20)}
}

// catalogOf is the bytes of an index of generation gen holding entries.
func catalogOf(t testing.TB, gen uint64, entries ...*store.CatalogEntry) []byte {
	t.Helper()
	return catalogWith(t, gen, nil, entries...)
}

// catalogWith is catalogOf with more written by meta, when set.
func catalogWith(t testing.TB, gen uint64, meta func(*store.CatalogTx) error, entries ...*store.CatalogEntry) []byte {
	t.Helper()
	cat, err := store.OpenCatalog(filepath.Join(t.TempDir(), "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	err = cat.Update(func(tx *store.CatalogTx) error {
		for _, e := range entries {
			if err := tx.PutEntry(e); err != nil {
				return err
			}
		}
		if err := tx.SetValidUntil(time.Now().Add(time.Hour)); err != nil {
			return err
		}
		if meta != nil {
			if err := meta(tx); err != nil {
				return err
			}
		}
		return tx.SetGeneration(gen, time.Now())
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := cat.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// kept writes db and its signature as a host's kept index and loads it.
func kept(t testing.TB, pub signing.PublicKey, sign func([]byte) []byte, db []byte) (*Snapshot, *Keeper) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, IndexFile), db, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, SigFile), sign(db), 0o644); err != nil {
		t.Fatal(err)
	}
	m := New([]string{"http://127.0.0.1:1"}, pub, dir)
	idx, err := m.Load()
	if err != nil {
		t.Fatal(err)
	}
	return idx, m
}

func versionsOf(es []*store.CatalogEntry) string {
	var out []string
	for _, e := range es {
		out = append(out, e.Version+"/"+e.Architecture)
	}
	return strings.Join(out, " ")
}

// TestSnapshotLookups: versions newest first by pacman's order (not the
// catalog's, which is by file name), only what runs on this host, equal
// versions in file name order; Best, Entry, Len, Newest and the resolver
// agree.
func TestSnapshotLookups(t *testing.T) {
	pub, sign := newKey(t)
	host, far := manifest.HostArchitecture(), foreign()
	idx, _ := kept(t, pub, sign, catalogOf(t, 7,
		entryOf("hello=1.9"), entryOf("hello=1.10"), entryOf("hello=1:0.1"), entryOf("hello=2.0/"+far),
		entryOf("hello=1.10/host"), entryOf("libgreet=1.2"), entryOf("zed=1.0/"+far), entryOf("abc=3")))

	if idx.Generation != 7 || idx.Len() != 6 {
		t.Fatalf("generation %d, %d packages, want 7 and 6", idx.Generation, idx.Len())
	}
	want := "1:0.1/any 1.10/any 1.10/" + host + " 1.9/any"
	if got := versionsOf(idx.Versions("hello")); got != want {
		t.Fatalf("hello: %s, want %s", got, want)
	}
	if b := idx.Best("hello"); b == nil || b.Version != "1:0.1" || b.File != "hello-1:0.1-any.tpkg" {
		t.Fatalf("best hello: %+v", b)
	}
	if e := idx.Entry("hello", "1.9"); e == nil || e.Version != "1.9" || e.SHA256 != strings.Repeat("ab", 32) {
		t.Fatalf("entry hello 1.9: %+v", e)
	}
	for _, absent := range [][2]string{{"hello", "2.0"}, {"zed", "1.0"}, {"nope", "1"}, {"", ""}} {
		if e := idx.Entry(absent[0], absent[1]); e != nil {
			t.Errorf("entry %s %s: %+v, want none (foreign or absent)", absent[0], absent[1], e)
		}
	}
	for _, n := range []string{"zed", "nope", "", "hell", "hello0", "a", "zzz"} {
		if vs := idx.Versions(n); vs != nil || idx.Best(n) != nil {
			t.Errorf("versions of %q: %s", n, versionsOf(vs))
		}
	}
	var got []string
	for p := range idx.Newest() {
		got = append(got, p.Name+"="+p.Version+" "+p.Description)
	}
	if w := []string{"abc=3 the abc package", "hello=1:0.1 the hello package", "libgreet=1.2 the libgreet package"}; !slices.Equal(got, w) {
		t.Fatalf("newest: %q, want %q", got, w)
	}
	for range idx.Newest() {
		break // stopping early is allowed
	}
	ms := idx.Resolver().Versions("hello")
	if len(ms) != 4 || ms[0] != &idx.Versions("hello")[0].Manifest {
		t.Fatalf("resolver's hello: %v", ms)
	}
	// A copy of the struct (as an unchanged fetch makes) reads the same.
	cp := *idx
	if cp.Best("libgreet").Version != "1.2" || cp.Len() != 6 {
		t.Fatal("a copy of the snapshot reads differently")
	}

	empty := Empty()
	if empty.Len() != 0 || empty.Versions("hello") != nil || empty.Best("hello") != nil || empty.Entry("a", "1") != nil || empty.Resolver().Versions("a") != nil {
		t.Fatal("the empty index has packages")
	}
	for range empty.Newest() {
		t.Fatal("the empty index has packages")
	}
}

// TestSnapshotAgreesWithResolveIndex: over random catalogs, the snapshot
// lists every name's versions as resolve.NewIndex does over the same
// manifests in the catalog's order, and resolves the same.
func TestSnapshotAgreesWithResolveIndex(t *testing.T) {
	pub, sign := newKey(t)
	r := rand.New(rand.NewPCG(1, 2))
	archs := []string{manifest.ArchAny, manifest.HostArchitecture(), foreign()}
	vers := []string{"1", "1.0", "1.0a", "1.1", "2.0-1", "2.0-2", "1:0.5", "0.9.9", "10", "1.0.0"}
	for round := range 5 {
		seen := map[string]bool{}
		var entries []*store.CatalogEntry
		for range 60 {
			p := r.IntN(12)
			spec := fmt.Sprintf("p%d=%s/%s", p, vers[r.IntN(len(vers))], archs[r.IntN(len(archs))])
			if seen[spec] {
				continue
			}
			seen[spec] = true
			var deps []string
			d := r.IntN(12)
			if d != p && r.IntN(3) == 0 {
				deps = append(deps, fmt.Sprintf("p%d >= %s", d, vers[r.IntN(len(vers))]))
			}
			e := entryOf(spec, deps...)
			if v := r.IntN(8); v < 4 {
				e.Provides = manifest.Constraints{{Name: fmt.Sprintf("v%d", v)}}
			} else if v < 6 && d%2 == 0 {
				e.Dependencies = append(e.Dependencies, manifest.Dependency{{Name: fmt.Sprintf("v%d", v-4)}})
			}
			entries = append(entries, e)
		}
		idx, _ := kept(t, pub, sign, catalogOf(t, 1, entries...))
		slices.SortFunc(entries, func(a, b *store.CatalogEntry) int { return strings.Compare(a.File, b.File) })
		var ms []*manifest.Manifest
		for _, e := range entries {
			ms = append(ms, &e.Manifest)
		}
		mem := resolve.NewIndex(ms, manifest.HostArchitecture())
		n := 0
		for name := range 13 {
			p := fmt.Sprintf("p%d", name)
			var want []string
			for _, m := range mem.Versions(p) {
				want = append(want, m.Version+"/"+m.Architecture)
			}
			n += len(want)
			if got := versionsOf(idx.Versions(p)); got != strings.Join(want, " ") {
				t.Fatalf("round %d, %s: %s, want %s", round, p, got, strings.Join(want, " "))
			}
			want1, err1 := resolve.Resolve(mem, nil, []manifest.Constraint{{Name: p}})
			got1, err2 := resolve.Resolve(idx.Resolver(), nil, []manifest.Constraint{{Name: p}})
			if fmt.Sprint(err1) != fmt.Sprint(err2) || choices(want1) != choices(got1) {
				t.Fatalf("round %d, resolve %s: %s %v, want %s %v", round, p, choices(got1), err2, choices(want1), err1)
			}
		}
		if idx.Len() != n {
			t.Fatalf("round %d: %d packages, want %d", round, idx.Len(), n)
		}
		// Virtual names: the same providers, in the same order.
		for v := range 5 {
			name := fmt.Sprintf("v%d", v)
			var want, got []string
			for _, m := range mem.Providers(name) {
				want = append(want, m.String()+"/"+m.Architecture)
			}
			for _, m := range idx.Resolver().Providers(name) {
				got = append(got, m.String()+"/"+m.Architecture)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("round %d, providers of %s: %q, want %q", round, name, got, want)
			}
			want1, err1 := resolve.Resolve(mem, nil, []manifest.Constraint{{Name: name}})
			got1, err2 := resolve.Resolve(idx.Resolver(), nil, []manifest.Constraint{{Name: name}})
			if fmt.Sprint(err1) != fmt.Sprint(err2) || choices(want1) != choices(got1) {
				t.Fatalf("round %d, resolve %s: %s %v, want %s %v", round, name, choices(got1), err2, choices(want1), err1)
			}
		}
	}
}

func choices(cs []resolve.Choice) string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name+"-"+c.Version+"-"+c.Architecture)
	}
	return strings.Join(out, " ")
}

// TestSnapshotCacheIsBounded: reading more names than the cache keeps
// leaves it bounded and every answer right.
func TestSnapshotCacheIsBounded(t *testing.T) {
	pub, sign := newKey(t)
	var entries []*store.CatalogEntry
	for i := range cacheNames + 50 {
		entries = append(entries, entryOf(fmt.Sprintf("p%04d=1.%d", i, i)))
	}
	idx, _ := kept(t, pub, sign, catalogOf(t, 1, entries...))
	for round := range 2 {
		for i := range cacheNames + 50 {
			if b := idx.Best(fmt.Sprintf("p%04d", i)); b == nil || b.Version != fmt.Sprintf("1.%d", i) {
				t.Fatalf("round %d, p%04d: %+v", round, i, b)
			}
		}
	}
	if n := len(idx.t.cache); n > cacheNames {
		t.Fatalf("%d names cached, at most %d", n, cacheNames)
	}
}

// openFiles are the files of dir this process has open, and those it has
// mapped (an os.File closes itself once unreachable, a mapping stays).
func openFiles(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	var out []string
	for _, de := range des {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", de.Name())); err == nil && strings.HasPrefix(l, dir) {
			out = append(out, "open "+l)
		}
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(maps), "\n") {
		if i := strings.Index(l, dir); i >= 0 {
			out = append(out, "mapped "+l[i:])
		}
	}
	return out
}

// TestReplacedSnapshotReadsOnAndIsClosed: a snapshot whose file the next
// sync replaced on disk reads on from the file it owns, and its file is
// closed once nothing holds the snapshot; a fetched index that is not
// kept (refused, or the same generation again) is closed at once.
func TestReplacedSnapshotReadsOnAndIsClosed(t *testing.T) {
	pub, sign := newKey(t)
	r := &repo{byPath: map[string]int{}}
	r.db = catalogOf(t, 1, entryOf("hello=1.0"))
	r.sig, r.etag = sign(r.db), `"1"`
	srv := httptest.NewServer(r)
	defer srv.Close()
	dir := t.TempDir()
	m := New([]string{srv.URL}, pub, dir)
	old, _, err := m.Fetch(context.Background(), Empty())
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := m.Load() // a second snapshot of the same file
	if err != nil {
		t.Fatal(err)
	}

	r.mu.Lock()
	r.db = catalogOf(t, 2, entryOf("hello=2.0"), entryOf("other=1"))
	r.sig, r.etag = sign(r.db), `"2"`
	r.mu.Unlock()
	cur, changed, err := m.Fetch(context.Background(), old)
	if err != nil || !changed || cur.Best("hello").Version != "2.0" {
		t.Fatalf("second fetch: %v, changed %v", err, changed)
	}
	// The old file is gone from the directory, yet the old snapshots read it.
	if b := old.Best("hello"); b == nil || b.Version != "1.0" || old.Len() != 1 || loaded.Best("hello").Version != "1.0" {
		t.Fatalf("the replaced snapshot reads %+v", b)
	}
	if n := len(openFiles(t, dir)); n != 6 {
		t.Fatalf("open files of the state directory: %q, want the two snapshots' old file and the new one, open and mapped", openFiles(t, dir))
	}

	// Refused (older) and unchanged (same generation, new ETag) fetches
	// leave nothing open.
	r.mu.Lock()
	r.db = catalogOf(t, 1, entryOf("hello=0.1"))
	r.sig, r.etag = sign(r.db), `"old"`
	r.mu.Unlock()
	if _, _, err := m.Fetch(context.Background(), cur); err == nil {
		t.Fatal("an older generation was taken")
	}
	r.mu.Lock()
	r.db = catalogOf(t, 2, entryOf("hello=2.0"), entryOf("other=1"))
	r.sig, r.etag = sign(r.db), `"2 again"`
	r.mu.Unlock()
	same, changed, err := m.Fetch(context.Background(), cur)
	if err != nil || changed || same.Best("other") == nil {
		t.Fatalf("same generation: %v, changed %v", err, changed)
	}
	if n := len(openFiles(t, dir)); n != 6 {
		t.Fatalf("open files after refused and unchanged fetches: %q", openFiles(t, dir))
	}

	runtime.KeepAlive(old)    // held until here: the garbage collector may
	runtime.KeepAlive(loaded) // close the file of a snapshot not used again

	// Nothing holds the old snapshots: their file is closed. The current
	// one stays open.
	deadline := time.Now().Add(10 * time.Second)
	for len(openFiles(t, dir)) > 2 && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	files := openFiles(t, dir)
	if len(files) != 2 || files[0] != "open "+filepath.Join(dir, IndexFile) || files[1] != "mapped "+filepath.Join(dir, IndexFile) {
		t.Fatalf("open files once the old snapshots are unreachable: %q", files)
	}
	if same.Best("hello").Version != "2.0" || cur.Len() != 2 {
		t.Fatal("the current snapshot no longer reads")
	}
	runtime.KeepAlive(cur)
}

// TestConcurrentReadersWhileReplaced: readers on many goroutines take the
// current snapshot and read it while fetches replace it; each snapshot
// reads its own generation throughout (go test -race).
func TestConcurrentReadersWhileReplaced(t *testing.T) {
	pub, sign := newKey(t)
	const gens = 12
	dbs := make([][]byte, gens+1)
	for g := 1; g <= gens; g++ {
		var es []*store.CatalogEntry
		for i := range 40 {
			es = append(es, entryOf(fmt.Sprintf("p%02d=%d", i, g), fmt.Sprintf("p%02d", (i+1)%40+40)))
			es = append(es, entryOf(fmt.Sprintf("p%02d=%d", i+40, g)))
		}
		dbs[g] = catalogOf(t, uint64(g), es...)
	}
	r := &repo{byPath: map[string]int{}}
	r.db, r.sig, r.etag = dbs[1], sign(dbs[1]), `"1"`
	srv := httptest.NewServer(r)
	defer srv.Close()
	m := New([]string{srv.URL}, pub, t.TempDir())
	first, _, err := m.Fetch(context.Background(), Empty())
	if err != nil {
		t.Fatal(err)
	}
	var cur atomic.Pointer[Snapshot]
	cur.Store(first)
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 6 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				idx := cur.Load()
				want := fmt.Sprint(idx.Generation)
				name := fmt.Sprintf("p%02d", (i*7+w)%80)
				if b := idx.Best(name); b == nil || b.Version != want {
					errs <- fmt.Errorf("generation %s: best %s is %+v", want, name, b)
					return
				}
				if w%2 == 0 {
					n := 0
					for p := range idx.Newest() {
						if p.Version != want {
							errs <- fmt.Errorf("generation %s: search shows %s %s", want, p.Name, p.Version)
							return
						}
						n++
					}
					if n != 80 {
						errs <- fmt.Errorf("generation %s: %d packages", want, n)
						return
					}
				} else {
					ch, err := resolve.Resolve(idx.Resolver(), nil, []manifest.Constraint{{Name: name}})
					if err != nil || ch[len(ch)-1].Version != want {
						errs <- fmt.Errorf("generation %s: resolve %s: %v %v", want, name, choices(ch), err)
						return
					}
				}
				if i%50 == 0 {
					runtime.GC() // let cleanups of replaced snapshots run meanwhile
				}
			}
		})
	}
	for g := 2; g <= gens; g++ {
		r.mu.Lock()
		r.db, r.sig, r.etag = dbs[g], sign(dbs[g]), fmt.Sprintf(`"%d"`, g)
		r.mu.Unlock()
		idx, changed, err := m.Fetch(context.Background(), cur.Load())
		if err != nil || !changed || idx.Generation != uint64(g) {
			t.Fatalf("fetch of generation %d: %v, changed %v", g, err, changed)
		}
		cur.Store(idx)
		time.Sleep(20 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestDamagedSignedIndexIsRefused: an index whose bbolt file is damaged
// yet signed (a leaked key, a broken server) is refused with a one-line
// error before bbolt opens it, kept or fetched, never a crash.
func TestDamagedSignedIndexIsRefused(t *testing.T) {
	pub, sign := newKey(t)
	good := catalogOf(t, 3, entryOf("hello=1.0"))
	for name, db := range map[string][]byte{
		"truncated": good[:len(good)/2],
		"empty":     {},
		"garbage":   []byte(strings.Repeat("not a database ", 1000)),
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, IndexFile), db, 0o644)
			os.WriteFile(filepath.Join(dir, SigFile), sign(db), 0o644)
			_, err := New(nil, pub, dir).Load()
			if err == nil || strings.Contains(err.Error(), "\n") {
				t.Fatalf("kept: %q", err)
			}
			if name != "garbage" && !strings.Contains(err.Error(), "damaged database file") {
				t.Fatalf("kept: %v", err)
			}
			r := &repo{byPath: map[string]int{}, db: db, sig: sign(db), etag: `"x"`}
			srv := httptest.NewServer(r)
			defer srv.Close()
			state := t.TempDir()
			_, _, err = New([]string{srv.URL}, pub, state).Fetch(context.Background(), Empty())
			if err == nil || !strings.Contains(err.Error(), "refusing the repository's index") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("fetched: %q", err)
			}
			if left, _ := os.ReadDir(state); len(left) != 0 {
				t.Fatalf("left in the state directory: %v", left)
			}
		})
	}
}

// BenchmarkSnapshot: what a lookup and a search cost over 20,000 packages.
func BenchmarkSnapshot(b *testing.B) {
	pub, sign := newKey(b)
	var es []*store.CatalogEntry
	for i := range 20000 {
		es = append(es, entryOf(fmt.Sprintf("pkg%05d=1.%d", i, i%7)))
	}
	idx, _ := kept(b, pub, sign, catalogOf(b, 1, es...))
	b.Run("best", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if idx.Best(fmt.Sprintf("pkg%05d", i%20000)) == nil {
				b.Fatal("missing")
			}
		}
	})
	b.Run("newest", func(b *testing.B) {
		for b.Loop() {
			n := 0
			for range idx.Newest() {
				n++
			}
			if n != 20000 {
				b.Fatal(n)
			}
		}
	})
}

// The DHT nodes a signed index names reach the host's snapshot; an index
// without them (an older server's) names none.
func TestSnapshotDHTNodes(t *testing.T) {
	pub, sign := newKey(t)
	old, _ := kept(t, pub, sign, catalogOf(t, 1, entryOf("a=1")))
	if old.DHTNodes != nil {
		t.Fatalf("an index without DHT nodes names %q", old.DHTNodes)
	}
	nodes := []string{"repo.example:6881", "127.0.0.1:6881"}
	db := catalogWith(t, 2, func(tx *store.CatalogTx) error { return tx.SetDHTNodes(nodes) }, entryOf("a=1"))
	idx, _ := kept(t, pub, sign, db)
	if !slices.Equal(idx.DHTNodes, nodes) {
		t.Fatalf("snapshot DHT nodes %q, want %q", idx.DHTNodes, nodes)
	}
}
