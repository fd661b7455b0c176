package host

import (
	"bytes"
	"crypto/sha256"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"
)

// mirror is a running tpmd mirror.
type mirror struct {
	*proc
	url      string
	packages string
}

// startMirror starts tpmd mirror copying from upstreams; with wait, it
// returns once the mirror publishes (every package in).
func startMirror(t *testing.T, pubPath string, upstreams []string, wait bool, extra ...string) *mirror {
	t.Helper()
	addr := freeAddr(t)
	args := []string{"mirror", "--trusted-key", pubPath, "--state-dir", t.TempDir(), "--http", addr,
		"--public-url", "http://" + addr, "--torrent-listen", "127.0.0.1:0", "--log-level", "debug"}
	m := &mirror{url: "http://" + addr, packages: t.TempDir()}
	args = append(args, "--packages", m.packages)
	for _, u := range upstreams {
		args = append(args, "--upstream", u)
	}
	m.proc = startProc(t, append(args, extra...)...)
	if !wait {
		return m
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if code, _ := httpGet(t, m.url+"/healthz"); code == 200 {
			return m
		}
		if done, err := m.Exited(); done {
			t.Fatalf("tpmd mirror exited at start: %v\n%s", err, m.Logs)
		}
		if time.Now().After(deadline) {
			t.Fatalf("tpmd mirror did not publish a copy\n%s", m.Logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func httpGet(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil
	}
	return resp.StatusCode, b
}

// sameCopy checks that the mirror serves the origin's index and signature
// byte for byte, the same infohashes, and the packages' bytes, its own web
// seed first in the url-list.
func sameCopy(t *testing.T, origin *server, m *mirror) {
	t.Helper()
	for _, path := range []string{"/index.db", "/index.db.sig", "/packages/" + interopPackage} {
		c1, want := httpGet(t, origin.url+path)
		c2, got := httpGet(t, m.url+path)
		if c1 != 200 || c2 != 200 || !bytes.Equal(want, got) {
			t.Fatalf("%s: origin %d (%d bytes), mirror %d (%d bytes)", path, c1, len(want), c2, len(got))
		}
	}
	load := func(base string) *metainfo.MetaInfo {
		_, b := httpGet(t, base+"/torrents/"+interopPackage+".torrent")
		mi, err := metainfo.Load(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s torrent: %v", base, err)
		}
		return mi
	}
	om, mm := load(origin.url), load(m.url)
	if om.HashInfoBytes() != mm.HashInfoBytes() {
		t.Fatal("the mirror's torrent has another infohash")
	}
	if len(mm.UrlList) < 2 || mm.UrlList[0] != m.url+"/packages/" {
		t.Fatalf("the mirror's url-list: %q", mm.UrlList)
	}
	if mm.Announce != om.Announce {
		t.Fatalf("the mirror's trackers %q differ from the signed index's %q", mm.Announce, om.Announce)
	}
	data, err := os.ReadFile(filepath.Join(m.packages, interopPackage))
	if err != nil {
		t.Fatal(err)
	}
	orig, _ := os.ReadFile(filepath.Join(origin.packages, interopPackage))
	if sha256.Sum256(data) != sha256.Sum256(orig) {
		t.Fatal("the mirror's copy differs from the origin's file")
	}
}

// A chain: origin → mirror 1 → mirror 2. Both mirrors serve the origin's
// index byte for byte and the same torrents; with the origin gone, a host
// that knows only the second mirror installs from it.
func TestMirrorChain(t *testing.T) {
	r := newRepository(t)
	srv := startServer(t, r)
	m1 := startMirror(t, r.pubPath, []string{srv.url}, true)
	m2 := startMirror(t, r.pubPath, []string{m1.url}, true)
	sameCopy(t, srv, m1)
	sameCopy(t, srv, m2)

	srv.Stop(t)
	h := newHost(t)
	startClient(t, h, m2.url, r.pubPath, "--stall-timeout", "30s")
	waitIndex(t, h.run, 3)
	var results []result
	ok(t, h.run, "install", []string{"hello"}, nil, &results)
	if len(results) != 3 {
		t.Fatalf("install from the mirror: %+v", results)
	}
	verifyClean(t, h.run)
	if took, err := m2.Stop(t); err != nil || took > 5*time.Second {
		t.Fatalf("mirror stop: %v after %v", err, took)
	}
}

// A mirror is untrusted: one that serves a tampered index or tampered
// package bytes is refused by a host exactly as the origin would be, and a
// mirror refuses a tampered upstream (it publishes nothing).
func TestTamperedMirrorRefused(t *testing.T) {
	r := newRepository(t)
	srv := startServer(t, r)

	bad := newProxy(t, srv.url)
	bad.tamperIndex.Store(true)
	m0 := startMirror(t, r.pubPath, []string{bad.URL}, false)
	waitFor(t, "the mirror refusing a tampered upstream", func() bool {
		return strings.Contains(m0.Logs.String(), "refusing the repository's index")
	})
	if code, _ := httpGet(t, m0.url+"/index.db"); code != http.StatusServiceUnavailable {
		t.Fatalf("a mirror of a tampered upstream serves an index: HTTP %d", code)
	}

	// Corrupt package bytes from the upstream's web seed, the only source
	// (the origin does not seed): the mirror publishes nothing.
	r2 := *r // the same packages and key, a second server that does not seed
	r2.state = t.TempDir()
	seedless := startServer(t, &r2, "--seed=false")
	corrupt := newProxy(t, seedless.url)
	corrupt.corruptPackages.Store(true)
	m1 := startMirror(t, r.pubPath, []string{corrupt.URL}, false)
	waitFor(t, "the mirror refusing corrupt package bytes", func() bool {
		return strings.Contains(m1.Logs.String(), "does not match the signed index")
	})
	if code, _ := httpGet(t, m1.url+"/index.db"); code != http.StatusServiceUnavailable {
		t.Fatalf("a mirror of corrupt packages serves an index: HTTP %d", code)
	}

	m := startMirror(t, r.pubPath, []string{srv.url}, true)
	px := newProxy(t, m.url) // the mirror's operator, tampering
	srv.Stop(t)              // no tracker: the mirror's web seed is the only source
	h := newHost(t)
	startClient(t, h, px.URL, r.pubPath, "--stall-timeout", "60s")
	s := waitIndex(t, h.run, 3)

	px.tamperIndex.Store(true)
	if e := fails(t, h.run, "sync", nil, nil); !strings.Contains(e, "refusing") || !strings.Contains(e, "signature") {
		t.Fatalf("tampered index from a mirror: %q", e)
	}
	if s2 := getStatus(t, h.run); s2.IndexGeneration != s.IndexGeneration || s2.IndexPackages != 3 {
		t.Fatalf("index changed after a tampered sync: %+v", s2)
	}
	px.tamperIndex.Store(false)

	px.corruptPackages.Store(true)
	if e := fails(t, h.run, "install", []string{"greet-data"}, nil); !strings.Contains(e, "does not match the signed index") {
		t.Fatalf("corrupt package from a mirror: %q", e)
	}
	if l := list(t, h.run); len(l) != 0 {
		t.Fatalf("installed from corrupt bytes: %v", l)
	}
	px.corruptPackages.Store(false)
	ok(t, h.run, "install", []string{"greet-data"}, nil, nil)
}

// Like the server, the mirror reads a config file (several upstream lines)
// and holds a pid lock: a second mirror on the same state directory is
// refused.
func TestMirrorConfigAndPidLock(t *testing.T) {
	r := newRepository(t)
	srv := startServer(t, r)
	state, addr := t.TempDir(), freeAddr(t)
	conf := filepath.Join(t.TempDir(), "mirror.conf")
	down := "http://" + freeAddr(t)
	text := "upstream = " + down + "\nupstream = " + srv.url + "\ntrusted-key = " + r.pubPath + "\nstate-dir = " + state +
		"\npackages = " + t.TempDir() + "\nhttp = " + addr + "\npublic-url = http://" + addr + "\ntorrent-listen = 127.0.0.1:0\n"
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	m := startProc(t, "mirror", "--config", conf)
	waitFor(t, "the mirror publishing", func() bool {
		code, _ := httpGet(t, "http://"+addr+"/healthz")
		return code == 200
	})
	second := startProc(t, "mirror", "--config", conf, "--http", "127.0.0.1:0")
	if exited, _ := second.Wait(15 * time.Second); !exited || !strings.Contains(second.Logs.String(), "another tpmd mirror") {
		t.Fatalf("a second mirror on the same state directory: exited %v\n%s", exited, second.Logs)
	}
	if took, err := m.Stop(t); err != nil || took > 5*time.Second {
		t.Fatalf("mirror stop: %v after %v", err, took)
	}
}

// A host with the origin and a mirror that lags: the index comes from the
// origin once it is newer, tpm status says the mirror is behind; with the
// origin gone, the host syncs from the mirror, which has caught up.
func TestNewestGenerationWinsAndFailover(t *testing.T) {
	r := newRepository(t)
	srv := startServer(t, r)
	m := startMirror(t, r.pubPath, []string{srv.url}, true, "--sync-interval", "1h")
	h := newHost(t)
	startClient(t, h, m.url, r.pubPath, "--server", srv.url)
	s := waitIndex(t, h.run, 3)

	r.addPackage(t, `{"Name":"extra","Version":"1.0","Architecture":"any","Type":"Binary"}`,
		map[string]string{"data/usr/share/extra/x": "x"})
	srv.Cmd.Process.Signal(sighup)
	waitFor(t, "the origin's next generation", func() bool {
		resp, err := http.Get(srv.url + "/index.db")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.Header.Get("X-Tpm-Generation") == "2"
	})
	ok(t, h.run, "sync", nil, nil, nil)
	st := getStatus(t, h.run)
	if st.IndexGeneration != s.IndexGeneration+1 || st.Servers[0].State != "behind" || st.Servers[1].State != "ok" {
		t.Fatalf("after the origin moved on: generation %d, servers %+v", st.IndexGeneration, st.Servers)
	}
	ok(t, h.run, "info", []string{"extra"}, nil, nil)

	m.Cmd.Process.Signal(sighup) // the mirror catches up
	waitFor(t, "the mirror's copy of generation 2", func() bool {
		code, body := httpGet(t, m.url+"/healthz")
		return code == 200 && strings.Contains(string(body), "generation=2 ")
	})
	srv.Stop(t)
	ok(t, h.run, "sync", nil, nil, nil)
	st = getStatus(t, h.run)
	if st.Servers[0].State != "ok" || st.Servers[1].State != "down" || st.IndexGeneration != s.IndexGeneration+1 {
		t.Fatalf("failover: %+v", st.Servers)
	}
	ok(t, h.run, "install", []string{"extra"}, nil, nil)
}

// A restarted mirror serves the copy it kept at once, even with its
// upstream down, and checks every file again in the background.
func TestMirrorRestartServesTheKeptCopy(t *testing.T) {
	r := newRepository(t)
	srv := startServer(t, r)
	state, packages, addr := t.TempDir(), t.TempDir(), freeAddr(t)
	args := []string{"mirror", "--upstream", srv.url, "--trusted-key", r.pubPath, "--state-dir", state, "--packages", packages,
		"--http", addr, "--public-url", "http://" + addr, "--torrent-listen", "127.0.0.1:0", "--log-level", "debug"}
	healthy := func() bool {
		code, _ := httpGet(t, "http://"+addr+"/healthz")
		return code == 200
	}
	m := startProc(t, args...)
	waitFor(t, "the mirror publishing", healthy)
	_, before := httpGet(t, "http://"+addr+"/index.db")
	if _, err := m.Stop(t); err != nil {
		t.Fatal(err)
	}
	srv.Stop(t)

	m = startProc(t, args...)
	waitFor(t, "the restarted mirror publishing with its upstream down", healthy)
	if _, after := httpGet(t, "http://"+addr+"/index.db"); !bytes.Equal(before, after) {
		t.Fatal("the restarted mirror serves another index")
	}
	waitFor(t, "the restarted mirror reading its files again", func() bool {
		return strings.Contains(m.Logs.String(), "msg=mirrored")
	})
	h := newHost(t)
	startClient(t, h, "http://"+addr, r.pubPath, "--stall-timeout", "30s")
	waitIndex(t, h.run, 3)
	ok(t, h.run, "install", []string{"greet-data"}, nil, nil)
}

// A copied file whose bytes change on the mirror's disk (rot, or someone
// with the disk) is not served; the mirror notices, fetches the package
// again, and serves the signed bytes again.
func TestMirrorRepairsAChangedFile(t *testing.T) {
	r := newRepository(t)
	srv := startServer(t, r)
	m := startMirror(t, r.pubPath, []string{srv.url}, true, "--sync-interval", "1s")
	path := filepath.Join(m.packages, interopPackage)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(good)
	bad[len(bad)/2] ^= 0xff
	if err := os.WriteFile(path, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _ := httpGet(t, m.url+"/packages/"+interopPackage); code != http.StatusServiceUnavailable {
		t.Fatalf("a changed file: HTTP %d, want 503", code)
	}
	waitFor(t, "the mirror serving the signed bytes again", func() bool {
		code, body := httpGet(t, m.url+"/packages/"+interopPackage)
		return code == 200 && bytes.Equal(body, good)
	})
}

// A mirror deletes a package no copy lists any more even when the copies
// that listed it were made before it restarted: the origin drops hello,
// the mirror publishes the index without it (hello stays: the copy
// published before lists it), and restarted, once its first copy is
// published, it deletes hello. What else is in its package directory
// stays: a note, a link to a package outside it, and the link's target.
func TestRestartedMirrorDeletesPackagesOfEarlierCopies(t *testing.T) {
	r := newRepository(t)
	srv := startServer(t, r)
	state, packages, addr := t.TempDir(), t.TempDir(), freeAddr(t)
	args := []string{"mirror", "--upstream", srv.url, "--trusted-key", r.pubPath, "--state-dir", state, "--packages", packages,
		"--http", addr, "--public-url", "http://" + addr, "--torrent-listen", "127.0.0.1:0", "--log-level", "debug", "--sync-interval", "1s"}
	healthy := func() bool {
		code, _ := httpGet(t, "http://"+addr+"/healthz")
		return code == 200
	}
	m := startProc(t, args...)
	waitFor(t, "the mirror publishing", healthy)
	_, first := httpGet(t, srv.url+"/index.db")
	hellos, _ := filepath.Glob(filepath.Join(r.packages, "hello-*.tpkg"))
	if len(hellos) != 1 {
		t.Fatalf("hello's package: %v", hellos)
	}
	hello := filepath.Base(hellos[0])
	if err := os.Remove(hellos[0]); err != nil {
		t.Fatal(err)
	}
	srv.Cmd.Process.Signal(sighup)
	waitFor(t, "the mirror publishing the origin's index without hello", func() bool {
		_, o := httpGet(t, srv.url+"/index.db")
		_, c := httpGet(t, "http://"+addr+"/index.db")
		return o != nil && !bytes.Equal(o, first) && bytes.Equal(o, c)
	})
	if _, err := os.Stat(filepath.Join(packages, hello)); err != nil {
		t.Fatalf("hello went with the first copy without it, not the second: %v", err)
	}
	if _, err := m.Stop(t); err != nil {
		t.Fatal(err)
	}
	elsewhere := filepath.Join(t.TempDir(), "other-1-any.tpkg")
	os.WriteFile(elsewhere, []byte("not the mirror's"), 0o644)
	os.WriteFile(filepath.Join(packages, "notes.txt"), []byte("the admin's"), 0o644)
	if err := os.Symlink(elsewhere, filepath.Join(packages, "other-1-any.tpkg")); err != nil {
		t.Fatal(err)
	}

	m = startProc(t, args...)
	waitFor(t, "the restarted mirror deleting hello", func() bool {
		_, err := os.Lstat(filepath.Join(packages, hello))
		return os.IsNotExist(err)
	})
	for _, p := range []string{filepath.Join(packages, "notes.txt"), filepath.Join(packages, "other-1-any.tpkg"), elsewhere,
		filepath.Join(packages, interopPackage)} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	if !healthy() {
		t.Fatalf("the restarted mirror stopped publishing\n%s", m.Logs)
	}
}
