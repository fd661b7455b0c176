package index

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"tpm/manifest"
	"tpm/signing"
	"tpm/store"
)

// repo serves a catalog and its signature like tpmd server does.
type repo struct {
	mu       sync.Mutex
	db, sig  []byte
	etag     string
	requests int
	byPath   map[string]int
	// afterIndex, when set, runs once after an /index.db is served: a
	// server publishing between a client's two requests.
	afterIndex func(*repo)
}

func (r *repo) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	r.byPath[req.URL.Path]++
	switch req.URL.Path {
	case "/index.db":
		if req.Header.Get("If-None-Match") == r.etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", r.etag)
		w.Write(r.db)
		if f := r.afterIndex; f != nil {
			r.afterIndex = nil
			f(r)
		}
	case "/index.db.sig":
		w.Write(r.sig)
	default:
		http.NotFound(w, req)
	}
}

func catalog(t *testing.T, gen uint64, names ...string) []byte {
	t.Helper()
	return catalogValidUntil(t, gen, time.Now().Add(time.Hour), names...)
}

func catalogValidUntil(t *testing.T, gen uint64, validUntil time.Time, names ...string) []byte {
	t.Helper()
	cat, err := store.OpenCatalog(filepath.Join(t.TempDir(), "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	err = cat.Update(func(tx *store.CatalogTx) error {
		for _, nv := range names {
			n, v, _ := strings.Cut(nv, "=")
			e := &store.CatalogEntry{
				Manifest: manifest.Manifest{Name: n, Version: v, Architecture: "any", Type: "Binary"},
				File:     n + "-" + v + "-any.tpkg", Size: 10,
				SHA256: strings.Repeat("ab", 32), InfoHash: strings.Repeat("cd", 20),
			}
			if err := tx.PutEntry(e); err != nil {
				return err
			}
		}
		if !validUntil.IsZero() {
			if err := tx.SetValidUntil(validUntil); err != nil {
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

// newKey makes a repository key pair: the public key, and a signer.
func newKey(t testing.TB) (signing.PublicKey, func([]byte) []byte) {
	t.Helper()
	keyPath, pubPath, err := signing.Keygen(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := signing.LoadKey(keyPath)
	pub, _ := signing.LoadPublicKey(pubPath)
	return pub, func(b []byte) []byte {
		s, err := key.Sign(b, "test")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

func TestFetchVerifySwap(t *testing.T) {
	pub, sign := newKey(t)
	r := &repo{byPath: map[string]int{}}
	r.db = catalog(t, 3, "hello=1.0", "hello=2.0", "libgreet=1.2")
	r.sig, r.etag = sign(r.db), `"a"`
	srv := httptest.NewServer(r)
	defer srv.Close()
	dir := t.TempDir()
	m := New([]string{srv.URL}, pub, dir)
	ctx := context.Background()

	idx, changed, err := m.Fetch(ctx, Empty())
	if err != nil || !changed {
		t.Fatalf("first fetch: changed %v, %v", changed, err)
	}
	if idx.Generation != 3 || idx.Best("hello").Version != "2.0" || idx.Len() != 3 {
		t.Fatalf("index: gen %d best %v entries %d", idx.Generation, idx.Best("hello"), idx.Len())
	}
	again, changed, err := m.Fetch(ctx, idx)
	if err != nil || changed || again.Generation != 3 {
		t.Fatalf("unchanged fetch: changed %v, %v", changed, err)
	}

	// A tampered index is refused and the kept one stays.
	r.mu.Lock()
	r.db = catalog(t, 4, "evil=1.0")
	r.etag = `"b"`
	r.mu.Unlock()
	if _, _, err := m.Fetch(ctx, idx); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Fatalf("tampered: %v", err)
	}
	kept, err := m.Load()
	if err != nil || kept.Generation != 3 {
		t.Fatalf("kept index: %v %v", kept, err)
	}
	// Unsigned (no signature at all) is refused too.
	r.mu.Lock()
	r.sig = nil
	r.mu.Unlock()
	if _, _, err := m.Fetch(ctx, idx); err == nil {
		t.Fatal("unsigned index accepted")
	}
	// An older generation, properly signed, is a replay.
	r.mu.Lock()
	r.db = catalog(t, 2, "old=1.0")
	r.sig, r.etag = sign(r.db), `"c"`
	r.mu.Unlock()
	if _, _, err := m.Fetch(ctx, idx); err == nil || !strings.Contains(err.Error(), "older") {
		t.Fatalf("replay: %v", err)
	}
	// A newer one is taken.
	r.mu.Lock()
	r.db = catalog(t, 5, "hello=3.0")
	r.sig, r.etag = sign(r.db), `"d"`
	r.mu.Unlock()
	idx5, changed, err := m.Fetch(ctx, idx)
	if err != nil || !changed || idx5.Best("hello").Version != "3.0" {
		t.Fatalf("newer: %v %v", changed, err)
	}
	// The file on disk changed behind our back: Load refuses it.
	os.WriteFile(filepath.Join(dir, IndexFile), catalog(t, 9, "evil=1.0"), 0o644)
	if _, err := m.Load(); err == nil {
		t.Fatal("Load accepted a tampered file")
	}
}

// A generation published between the index and its signature is not a
// tampered index: the client fetches again and takes the new one.
func TestFetchAcrossAPublish(t *testing.T) {
	pub, sign := newKey(t)
	r := &repo{byPath: map[string]int{}}
	r.db = catalog(t, 1, "hello=1.0")
	r.sig, r.etag = sign(r.db), `"1"`
	next := catalog(t, 2, "hello=2.0")
	r.afterIndex = func(r *repo) { r.db, r.sig, r.etag = next, sign(next), `"2"` }
	srv := httptest.NewServer(r)
	defer srv.Close()
	idx, changed, err := New([]string{srv.URL}, pub, t.TempDir()).Fetch(context.Background(), Empty())
	if err != nil || !changed || idx.Generation != 2 {
		t.Fatalf("fetch across a publish: %v, changed %v, %+v", err, changed, idx)
	}
}

// TestExpiredIndexIsRefused: a validly signed index past its validity is
// refused, fetched or kept; the kept one is loaded (queries answer from
// it) but says it expired.
func TestExpiredIndexIsRefused(t *testing.T) {
	pub, sign := newKey(t)
	r := &repo{byPath: map[string]int{}}
	r.db = catalog(t, 3, "hello=1.0")
	r.sig, r.etag = sign(r.db), `"3"`
	srv := httptest.NewServer(r)
	defer srv.Close()
	now := time.Now()
	m := New([]string{srv.URL}, pub, t.TempDir())
	m.Now = func() time.Time { return now }
	idx, _, err := m.Fetch(context.Background(), Empty())
	if err != nil || idx.Expired(now) || !idx.ValidUntil.After(now) {
		t.Fatalf("fresh index: %v, expired %v", err, idx.Expired(now))
	}
	// An hour on, the server still answers with the same index: the host
	// says so instead of "up to date".
	now = now.Add(time.Hour)
	if _, _, err := m.Fetch(context.Background(), idx); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("fetch of the same index once expired: %v", err)
	}
	kept, err := m.Load()
	if err != nil || !kept.Expired(now) || kept.Generation != 3 {
		t.Fatalf("kept: %v, expired %v", err, kept.Expired(now))
	}
	// A fresh host shown an old, signed, expired generation refuses it.
	r.mu.Lock()
	r.db = catalogValidUntil(t, 2, now.Add(-time.Minute), "hello=0.9")
	r.sig, r.etag = sign(r.db), `"2"`
	r.mu.Unlock()
	fresh := New([]string{srv.URL}, pub, t.TempDir())
	fresh.Now = m.Now
	if _, _, err := fresh.Fetch(context.Background(), Empty()); err == nil || !strings.Contains(err.Error(), "generation 2 expired") {
		t.Fatalf("fresh host, expired index: %v", err)
	}
	// An index that says nothing of its validity is expired too.
	r.mu.Lock()
	r.db = catalogValidUntil(t, 4, time.Time{}, "hello=1.1")
	r.sig, r.etag = sign(r.db), `"4"`
	r.mu.Unlock()
	if _, _, err := fresh.Fetch(context.Background(), Empty()); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("index without validity: %v", err)
	}
}

// TestOversizedAnswersAreCutShort: a signature larger than a signature can
// be is refused after reading at most the limit, and fetched once.
func TestOversizedAnswersAreCutShort(t *testing.T) {
	pub, sign := newKey(t)
	r := &repo{byPath: map[string]int{}}
	r.db = catalog(t, 1, "hello=1.0")
	r.sig, r.etag = append(sign(r.db), make([]byte, 10<<20)...), `"1"`
	srv := httptest.NewServer(r)
	defer srv.Close()
	_, _, err := New([]string{srv.URL}, pub, t.TempDir()).Fetch(context.Background(), Empty())
	if err == nil || !strings.Contains(err.Error(), "4096 bytes") {
		t.Fatalf("10 MB signature: %v", err)
	}
	if n := r.byPath["/"+SigFile]; n != 1 {
		t.Fatalf("the signature was fetched %d times", n)
	}
	// A bad signature of the right size is not fetched again and again.
	r.mu.Lock()
	r.sig = sign([]byte("something else"))
	r.byPath = map[string]int{}
	r.mu.Unlock()
	if _, _, err := New([]string{srv.URL}, pub, t.TempDir()).Fetch(context.Background(), Empty()); err == nil {
		t.Fatal("a bad signature was accepted")
	}
	if n := r.byPath["/"+IndexFile] + r.byPath["/"+SigFile]; n > 3 {
		t.Fatalf("a bad signature cost %d requests: %v", n, r.byPath)
	}
}

// Several servers, asked at once: the newest valid generation wins, a
// server that is down, behind or tampered with is named as such, and the
// fetch fails only when none gives a valid index.
func TestSeveralServers(t *testing.T) {
	pub, sign := newKey(t)
	serve := func(db, sig []byte, etag string) (*repo, *httptest.Server) {
		r := &repo{byPath: map[string]int{}, db: db, sig: sig, etag: etag}
		srv := httptest.NewServer(r)
		t.Cleanup(srv.Close)
		return r, srv
	}
	db3, db2 := catalog(t, 3, "hello=1.0"), catalog(t, 2, "hello=0.9")
	_, origin := serve(db3, sign(db3), `"3"`)
	mirror, mirrorSrv := serve(db2, sign(db2), `"2"`)
	evil := catalog(t, 9, "evil=1.0")
	_, tampered := serve(evil, sign(db3), `"9"`) // a signature, but not of these bytes
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()

	m := New([]string{down.URL, mirrorSrv.URL, tampered.URL, origin.URL}, pub, t.TempDir())
	idx, changed, err := m.Fetch(context.Background(), Empty())
	if err != nil || !changed || idx.Generation != 3 || idx.Best("evil") != nil {
		t.Fatalf("fetch: %v, changed %v, %+v", err, changed, idx)
	}
	st := idx.Servers
	if len(st) != 4 || st[0].Err == "" || !st[1].Behind || st[1].Generation != 2 ||
		!strings.Contains(st[2].Err, "refusing") || st[3].Err != "" || st[3].Generation != 3 {
		t.Fatalf("server states: %+v", st)
	}

	// The origin goes; the mirror has caught up, with the same bytes.
	origin.Close()
	mirror.mu.Lock()
	mirror.db, mirror.sig, mirror.etag = db3, sign(db3), `"3"`
	mirror.mu.Unlock()
	idx2, changed, err := m.Fetch(context.Background(), idx)
	if err != nil || changed || idx2.Generation != 3 || idx2.Servers[1].Err != "" || idx2.Servers[1].Behind || idx2.Servers[3].Err == "" {
		t.Fatalf("failover: %v, changed %v, %+v", err, changed, idx2.Servers)
	}

	// A mirror that serves an older generation than the one kept is
	// behind, not down, and not believed.
	mirror.mu.Lock()
	mirror.db, mirror.sig, mirror.etag = db2, sign(db2), `"2"`
	mirror.mu.Unlock()
	idx3, _, err := m.Fetch(context.Background(), idx2)
	if err == nil || idx3 != nil {
		t.Fatalf("only an older index left: %v", err)
	}
	var fe *FetchError
	if !errors.As(err, &fe) || !fe.States[1].Behind || fe.States[1].Generation != 2 || fe.States[1].Err != "" {
		t.Fatalf("a lagging mirror: %+v", fe)
	}

	// Nobody left with a valid index.
	mirrorSrv.Close()
	_, _, err = m.Fetch(context.Background(), idx2)
	if !errors.As(err, &fe) || len(fe.States) != 4 || !strings.Contains(err.Error(), "no server gave a valid index") {
		t.Fatalf("all down: %v", err)
	}
	if kept, err := m.Load(); err != nil || kept.Generation != 3 {
		t.Fatalf("kept index: %v %v", kept, err)
	}
}

// TestOversizedIndexCostsNoMemory: an index longer than an index may be,
// sent chunked (no length to refuse it by), is streamed to a temporary
// file and refused at the limit, without the host holding it in memory
// (it reached 618 MB, and 1.2 GB after a second sync, when the body was
// read into memory), and the temporary file goes.
func TestOversizedIndexCostsNoMemory(t *testing.T) {
	pub, _ := newKey(t)
	chunk := make([]byte, 1<<20)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/"+IndexFile {
			http.NotFound(w, r)
			return
		}
		for sent := 0; sent <= maxIndex+len(chunk); sent += len(chunk) { // one chunk past the limit
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	dir := t.TempDir()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, _, err := New([]string{srv.URL}, pub, dir).Fetch(context.Background(), Empty())
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("an index over the limit: %v", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 32<<20 {
		t.Fatalf("refusing a %d MiB index allocated %d MiB", maxIndex>>20, grew>>20)
	}
	left, _ := os.ReadDir(dir)
	for _, e := range left {
		if strings.Contains(e.Name(), IndexFile) {
			t.Fatalf("%s was left behind", e.Name())
		}
	}
}
