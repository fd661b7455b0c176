package host

// Faults from the network between a host and its repository.

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"tpm/messages/wire"
)

// freezer stands between a host and its repository. Until freeze, it
// passes everything through; then it answers the index and its signature
// with what the server published at that moment, forever: someone who
// keeps a fleet on an old index.
type freezer struct {
	mu       sync.Mutex
	upstream string
	frozen   map[string][]byte // path → body
	proxy    *httputil.ReverseProxy
}

func newFreezer(t *testing.T, upstream string) (*freezer, string) {
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{upstream: upstream, proxy: httputil.NewSingleHostReverseProxy(u)}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func (f *freezer) freeze(t *testing.T) {
	t.Helper()
	frozen := map[string][]byte{}
	for _, p := range []string{"/index.db", "/index.db.sig"} {
		resp, err := http.Get(f.upstream + p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %v %s", p, err, resp.Status)
		}
		frozen[p] = b
	}
	f.mu.Lock()
	f.frozen = frozen
	f.mu.Unlock()
}

func (f *freezer) thaw() {
	f.mu.Lock()
	f.frozen = nil
	f.mu.Unlock()
}

func (f *freezer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	body, ok := f.frozen[r.URL.Path]
	f.mu.Unlock()
	if ok {
		w.Write(body)
		return
	}
	f.proxy.ServeHTTP(w, r)
}

// TestFrozenIndexExpires: a host kept on an old, validly signed index
// stops installing from it once it expires, says why in one line, and keeps
// answering about what it has installed; a fresh index ends it.
func TestFrozenIndexExpires(t *testing.T) {
	r := newRepository(t)
	srv := startServer(t, r, "--index-valid-for", "6s")
	fz, fzURL := newFreezer(t, srv.url)
	h := newHost(t)
	startClient(t, h, fzURL, r.pubPath, "--sync-interval", "1h")
	waitIndex(t, h.run, 3)
	ok(t, h.run, "install", []string{"greet-data"}, nil, nil)

	fz.freeze(t)
	// The server re-signs every 1.5 s; the frozen copy expires within 6 s.
	deadline := time.Now().Add(30 * time.Second)
	for {
		final, _ := call(t, h.run, "sync", nil, nil)
		if final.Type == wire.ReplyError {
			if !strings.Contains(final.Error, "expired") || strings.Contains(final.Error, "\n") {
				t.Fatalf("sync of a frozen index: %q", final.Error)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the frozen index never expired")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if e := fails(t, h.run, "install", []string{"hello"}, nil); !strings.Contains(e, "expired at") || !strings.Contains(e, "installed packages keep working") {
		t.Fatalf("install from an expired index: %q", e)
	}
	if s := getStatus(t, h.run); !s.IndexExpired || s.IndexValidUntil.IsZero() {
		t.Fatalf("status: %+v", s)
	}
	if l := list(t, h.run); len(l) != 1 {
		t.Fatalf("list with an expired index: %v", l)
	}
	verifyClean(t, h.run)

	fz.thaw()
	var sr wire.SyncResult
	ok(t, h.run, "sync", nil, nil, &sr)
	if !sr.Changed {
		t.Fatalf("sync after the thaw: %+v", sr)
	}
	// Status first: the index is valid for 6 s only, and an install may
	// take longer than what is left of it (a download that waits for a
	// quiet connection to be closed takes 10 s); it is planned at once.
	if s := getStatus(t, h.run); s.IndexExpired {
		t.Fatalf("status after the thaw: %+v", s)
	}
	ok(t, h.run, "install", []string{"hello"}, nil, nil)
}

// TestScriptTimeoutOfTheDaemon: tpmd client --script-timeout bounds a
// package's script as tpm --offline's does.
func TestScriptTimeoutOfTheDaemon(t *testing.T) {
	r := newRepository(t)
	r.addPackage(t, `{"Name":"sleepy","Version":"1.0","Architecture":"any","Type":"Binary"}`, map[string]string{
		"data/usr/share/sleepy/x": "x",
		"info/preinstall":         "#!/bin/sh\nsleep 60\n",
	})
	srv := startServer(t, r)
	h := newHost(t)
	startClient(t, h, srv.url, r.pubPath, "--script-timeout", "1s")
	waitIndex(t, h.run, 4)
	if e := fails(t, h.run, "install", []string{"sleepy"}, nil); !strings.Contains(e, "timed out after 1s") {
		t.Fatalf("install with a script that sleeps: %q", e)
	}
	if l := list(t, h.run); len(l) != 0 {
		t.Fatalf("installed: %v", l)
	}
}

// TestCorruptRepositoryCopyWithAGoodPeer: the repository's file rots on
// disk after a host installed it; the next host installs from the good
// peer, not from the repository's bad bytes.
func TestCorruptRepositoryCopyWithAGoodPeer(t *testing.T) {
	r := newRepository(t, "greet-data")
	bigPackage(t, r)
	srv := startServer(t, r, "--scan-interval", "1h")
	// Each host on an address of its own, as on a network: a peer that
	// sends bad data is banned by address, so on one shared loopback
	// address the good peer would go with the repository.
	a := newHost(t)
	startClient(t, a, srv.url, r.pubPath, "--torrent-listen", "127.0.0.2:0")
	waitIndex(t, a.run, 2)
	ok(t, a.run, "install", []string{"big"}, nil, nil)

	// Rot: the middle of the file, same size and mtime.
	path := filepath.Join(r.packages, "big-1.0-any.tpkg")
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xff}, 1<<20), info.Size()/2); err != nil {
		t.Fatal(err)
	}
	f.Close()
	os.Chtimes(path, info.ModTime(), info.ModTime())

	b := newHost(t)
	d := startClient(t, b, srv.url, r.pubPath, "--torrent-listen", "127.0.0.3:0")
	waitIndex(t, b.run, 2)
	final, _ := call(t, b.run, "install", []string{"big"}, nil)
	if final.Type != wire.ReplyResult {
		t.Fatalf("install with a corrupt repository and a good peer: %s\n%s", final.Error, d.Logs)
	}
	verifyClean(t, b.run)
}

// TestTrackerKnowsSeedersAfterAKill: the server is killed with -9 and
// started again; a host that can only get a package from another host (no
// seeding server, no web seed) finds that host at once, not at its next
// announce ten minutes later.
func TestTrackerKnowsSeedersAfterAKill(t *testing.T) {
	r := newRepository(t)
	addr := freeAddr(t)
	srv := startServerAt(t, r, addr, "--seed=false")
	a := newHost(t)
	startClient(t, a, srv.url, r.pubPath)
	waitIndex(t, a.run, 3)
	ok(t, a.run, "install", []string{"greet-data"}, nil, nil)
	// A seeds it; the tracker saves its peers every 2 s when they change.
	peersFile := filepath.Join(r.state, "tracker-peers.json")
	waitFor(t, "the tracker to save a seeder", func() bool {
		b, err := os.ReadFile(peersFile)
		return err == nil && strings.Contains(string(b), `"seeder":true`)
	})
	srv.Kill()
	startServerAt(t, r, addr, "--seed=false")
	b := newHost(t)
	startClient(t, b, srv.url, r.pubPath, "--web-seed=false", "--stall-timeout", "20s")
	waitIndex(t, b.run, 3)
	ok(t, b.run, "install", []string{"greet-data"}, nil, nil)
	verifyClean(t, b.run)
}
