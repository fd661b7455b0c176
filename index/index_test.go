package index

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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
func newKey(t *testing.T) (signing.PublicKey, func([]byte) []byte) {
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
	m := New(srv.URL, pub, dir)
	ctx := context.Background()

	idx, changed, err := m.Fetch(ctx, Empty())
	if err != nil || !changed {
		t.Fatalf("first fetch: changed %v, %v", changed, err)
	}
	if idx.Generation != 3 || idx.Best("hello").Version != "2.0" || len(idx.Entries) != 3 {
		t.Fatalf("index: gen %d best %v entries %d", idx.Generation, idx.Best("hello"), len(idx.Entries))
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
	idx, changed, err := New(srv.URL, pub, t.TempDir()).Fetch(context.Background(), Empty())
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
	m := New(srv.URL, pub, t.TempDir())
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
	fresh := New(srv.URL, pub, t.TempDir())
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
	_, _, err := New(srv.URL, pub, t.TempDir()).Fetch(context.Background(), Empty())
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
	if _, _, err := New(srv.URL, pub, t.TempDir()).Fetch(context.Background(), Empty()); err == nil {
		t.Fatal("a bad signature was accepted")
	}
	if n := r.byPath["/"+IndexFile] + r.byPath["/"+SigFile]; n > 3 {
		t.Fatalf("a bad signature cost %d requests: %v", n, r.byPath)
	}
}
