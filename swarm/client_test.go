package swarm

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newTestClient(t *testing.T) *Client {
	t.Helper()
	c, err := NewClient(ClientConfig{CacheDir: t.TempDir(), StateDir: t.TempDir(), ListenAddr: "127.0.0.1:0", StallTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// webSeed serves dir under /packages/, flipping bytes when corrupt is set.
func webSeed(t *testing.T, dir string, corrupt bool) string {
	t.Helper()
	fs := http.StripPrefix("/packages/", http.FileServer(http.Dir(dir)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !corrupt {
			fs.ServeHTTP(w, r)
			return
		}
		b, err := os.ReadFile(filepath.Join(dir, strings.TrimPrefix(r.URL.Path, "/packages/")))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		for i := 0; i < len(b); i += 101 {
			b[i] ^= 0xa5
		}
		http.ServeContent(w, r, "", time.Time{}, strings.NewReader(string(b)))
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/packages/"
}

func specOf(tor *Torrent, seed string) Spec {
	return Spec{File: tor.Name, InfoHash: tor.InfoHash, InfoBytes: tor.InfoBytes, SHA256: tor.SHA256Hex(), Size: tor.Size, WebSeeds: []string{seed}}
}

func TestDownloadFromWebSeed(t *testing.T) {
	src := t.TempDir()
	tor := writePackage(t, src, "a-1-any.tpkg", randomBytes(300<<10, 3))
	c := newTestClient(t)
	var last Progress
	path, err := c.Download(context.Background(), specOf(tor, webSeed(t, src, false)), func(p Progress) { last = p })
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(c.cfg.CacheDir, tor.Name) || last.Bytes != tor.Size || last.Total != tor.Size {
		t.Fatalf("path %s, last progress %+v", path, last)
	}
	if st := c.Stats(); st.Torrents != 1 || st.Complete != 1 {
		t.Fatalf("stats after download: %+v", st)
	}
	// Removing drops the torrent and the file.
	if err := c.Remove(specOf(tor, "")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) || c.Stats().Torrents != 0 {
		t.Fatalf("after Remove: %v %+v", err, c.Stats())
	}
}

func TestDownloadRefusesCorruptWebSeed(t *testing.T) {
	src := t.TempDir()
	tor := writePackage(t, src, "b-1-any.tpkg", randomBytes(100<<10, 4))
	c := newTestClient(t)
	_, err := c.Download(context.Background(), specOf(tor, webSeed(t, src, true)), func(Progress) {})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt web seed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(c.cfg.CacheDir, tor.Name)); !os.IsNotExist(err) {
		t.Fatalf("corrupt file kept: %v", err)
	}
}

func TestDownloadCancelled(t *testing.T) {
	src := t.TempDir()
	tor := writePackage(t, src, "c-1-any.tpkg", randomBytes(100<<10, 5))
	c := newTestClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Download(ctx, specOf(tor, "http://127.0.0.1:1/packages/"), func(Progress) {})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Fatalf("cancelled download: %v after %v", err, time.Since(start))
	}
}

func TestAddRefusesMismatchedTorrent(t *testing.T) {
	src := t.TempDir()
	tor := writePackage(t, src, "d-1-any.tpkg", randomBytes(10<<10, 6))
	c := newTestClient(t)
	s := specOf(tor, "")
	s.File = "other.tpkg"
	if err := c.Seed(s); err == nil {
		t.Fatal("a torrent naming another file was accepted")
	}
	s = specOf(tor, "")
	s.InfoHash[0] ^= 1
	if err := c.Seed(s); err == nil {
		t.Fatal("info bytes that do not match the infohash were accepted")
	}
}
