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
	// afterIndex, when set, runs once after an /index.db is served: a
	// server publishing between a client's two requests.
	afterIndex func(*repo)
}

func (r *repo) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
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
	r := &repo{}
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
	r := &repo{}
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
