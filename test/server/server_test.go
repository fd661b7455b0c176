// Package server runs the real tpmd server binary on loopback, in temporary
// directories, and checks what a client and an operator see: the index,
// rescans on SIGHUP, rejections, the signature, the pid file, a clean stop,
// and a download by a standard BitTorrent client.
package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"

	"tpm/repo"
	"tpm/repo/repotest"
	"tpm/signing"
	"tpm/store"
	"tpm/test/testenv"
)

var tpmdBin string

func TestMain(m *testing.M) { testenv.Main(m, &tpmdBin) }

// repoDirs is one repository's directories and key.
type repoDirs struct {
	packages, state string
	keyPath         string
	pubPath         string
	pub             signing.PublicKey
}

func newRepo(t *testing.T) *repoDirs {
	t.Helper()
	r := &repoDirs{packages: t.TempDir(), state: t.TempDir()}
	var err error
	r.keyPath, r.pubPath, err = signing.Keygen(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	r.pub, _ = signing.LoadPublicKey(r.pubPath)
	return r
}

func (r *repoDirs) add(t *testing.T, name, version string, size int, seed uint64, deps ...string) string {
	t.Helper()
	return repotest.Make(t, r.packages, repotest.Package{Name: name, Version: version, PayloadBytes: size, Seed: seed, Deps: deps})
}

// tpmd is a running server.
type tpmd struct {
	*testenv.Proc
	url string
}

func startTpmd(t *testing.T, r *repoDirs, extra ...string) *tpmd {
	t.Helper()
	return startTpmdAt(t, r, testenv.FreeAddr(t), extra...)
}

// startTpmdAt starts tpmd server on addr, so that a restarted one keeps
// its URL.
func startTpmdAt(t *testing.T, r *repoDirs, addr string, extra ...string) *tpmd {
	t.Helper()
	args := append([]string{"server", "--packages", r.packages, "--state-dir", r.state,
		"--key", r.keyPath, "--http", addr, "--public-url", "http://" + addr,
		"--torrent-listen", "127.0.0.1:0", "--log-level", "debug"}, extra...)
	d := &tpmd{Proc: testenv.Start(t, tpmdBin, args...), url: "http://" + addr}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if code, _ := get(d.url + "/healthz"); code == 200 {
			return d
		}
		if exited, err := d.Exited(); exited {
			t.Fatalf("tpmd exited at start: %v\n%s", err, d.Logs)
		}
		if time.Now().After(deadline) {
			t.Fatalf("tpmd did not become healthy\n%s", d.Logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func get(url string) (int, []byte) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func mustGet(t *testing.T, url string) []byte {
	t.Helper()
	code, b := get(url)
	if code != 200 {
		t.Fatalf("GET %s: %d", url, code)
	}
	return b
}

// index fetches and opens /index.db, checks its signature, and returns its
// entries by file name and its generation.
func (d *tpmd) index(t *testing.T, r *repoDirs) (map[string]*store.CatalogEntry, uint64) {
	t.Helper()
	// A rescan may publish between the two requests: take a pair only
	// when the index is still the same afterwards.
	idx := mustGet(t, d.url+"/index.db")
	sig := mustGet(t, d.url+"/index.db.sig")
	for range 3 {
		again := mustGet(t, d.url+"/index.db")
		if bytes.Equal(again, idx) {
			break
		}
		idx, sig = again, mustGet(t, d.url+"/index.db.sig")
	}
	if err := r.pub.Verify(idx, sig); err != nil {
		t.Fatalf("index signature: %v", err)
	}
	path := filepath.Join(t.TempDir(), "index.db")
	os.WriteFile(path, idx, 0o644)
	c, err := store.OpenCatalogReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out := make(map[string]*store.CatalogEntry)
	var gen uint64
	c.View(func(tx *store.CatalogTx) error {
		es, err := tx.Entries()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			out[e.File] = e
		}
		gen = tx.Generation()
		return nil
	})
	return out, gen
}

func (d *tpmd) waitGeneration(t *testing.T, r *repoDirs, n uint64) map[string]*store.CatalogEntry {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		es, gen := d.index(t, r)
		if gen >= n {
			return es
		}
		if time.Now().After(deadline) {
			t.Fatalf("generation %d never published (at %d)", n, gen)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func TestIndexAfterScan(t *testing.T) {
	r := newRepo(t)
	a := r.add(t, "liba", "1.0-1", 100<<10, 1)
	b := r.add(t, "app", "2:3.1-2", 200<<10, 2, "liba >= 1.0")
	d := startTpmd(t, r)

	es, gen := d.index(t, r)
	if gen != 1 || len(es) != 2 {
		t.Fatalf("index: generation %d, %d entries", gen, len(es))
	}
	app := es[filepath.Base(b)]
	if app == nil || app.Name != "app" || app.Version != "2:3.1-2" || app.Architecture != "any" ||
		app.Type != "Binary" || len(app.Dependencies) != 1 || app.Dependencies[0].String() != "liba >= 1.0" {
		t.Fatalf("app entry: %+v", app)
	}
	for _, path := range []string{a, b} {
		e := es[filepath.Base(path)]
		fi, _ := os.Stat(path)
		if e.SHA256 != fileSHA256(t, path) || e.Size != fi.Size() {
			t.Errorf("%s: index sha256/size do not match the file", e.File)
		}
		tor := mustGet(t, d.url+"/torrents/"+e.File+".torrent")
		mi, err := metainfo.Load(bytes.NewReader(tor))
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(mi.InfoBytes) != hex.EncodeToString(e.InfoBytes) ||
			mi.HashInfoBytes().HexString() != e.InfoHash {
			t.Errorf("%s: torrent and index disagree", e.File)
		}
		if got := mustGet(t, d.url+"/packages/"+e.File); fmt.Sprintf("%x", sha256.Sum256(got)) != e.SHA256 {
			t.Errorf("%s: downloaded bytes do not match", e.File)
		}
	}
	var doc repo.IndexJSON
	if err := json.Unmarshal(mustGet(t, d.url+"/index.json"), &doc); err != nil || doc.Generation != 1 || len(doc.Packages) != 2 {
		t.Errorf("index.json: %v, %+v", err, doc)
	}
	if !regexp.MustCompile(`msg=scan generation=1 new=true added=2 changed=0 removed=0 rejected=0 .* took=`).MatchString(d.Logs.String()) {
		t.Errorf("no scan log line with the counts and the time:\n%s", d.Logs)
	}
}

// The signature verifies with the public key (ours and Debian's minisign)
// and fails after one changed byte.
func TestSignature(t *testing.T) {
	r := newRepo(t)
	r.add(t, "a", "1", 10<<10, 1)
	d := startTpmd(t, r)
	// A rescan may publish between the two requests: take a pair only
	// when the index is still the same afterwards.
	idx := mustGet(t, d.url+"/index.db")
	sig := mustGet(t, d.url+"/index.db.sig")
	for range 3 {
		again := mustGet(t, d.url+"/index.db")
		if bytes.Equal(again, idx) {
			break
		}
		idx, sig = again, mustGet(t, d.url+"/index.db.sig")
	}
	if err := r.pub.Verify(idx, sig); err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(idx)
	bad[len(bad)/3] ^= 0x01
	if err := r.pub.Verify(bad, sig); err == nil {
		t.Error("the signature verified an index with one changed byte")
	}
	if _, err := exec.LookPath("minisign"); err != nil {
		t.Skip("minisign is not installed (apt-get install minisign); skipping the check with Debian's tool")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "index.db"), idx, 0o644)
	os.WriteFile(filepath.Join(dir, "index.db.sig"), sig, 0o644)
	out, err := exec.Command("minisign", "-V", "-p", r.pubPath, "-m", filepath.Join(dir, "index.db"), "-x", filepath.Join(dir, "index.db.sig")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "generation:1") {
		t.Errorf("minisign -V: %v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(dir, "index.db"), bad, 0o644)
	if out, err := exec.Command("minisign", "-V", "-p", r.pubPath, "-m", filepath.Join(dir, "index.db"), "-x", filepath.Join(dir, "index.db.sig")).CombinedOutput(); err == nil {
		t.Errorf("minisign verified a changed index:\n%s", out)
	}
}

// Add, change and remove packages, SIGHUP, and see the next generation; an
// unchanged package keeps its infohash, and ETags let a poller skip the
// download.
func TestRescanOnSIGHUP(t *testing.T) {
	r := newRepo(t)
	keep := r.add(t, "keep", "1", 100<<10, 1)
	change := r.add(t, "change", "1", 100<<10, 2)
	remove := r.add(t, "remove", "1", 10<<10, 3)
	d := startTpmd(t, r)
	es1, _ := d.index(t, r)

	resp, err := http.Get(d.url + "/index.db")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	etag := resp.Header.Get("ETag")
	req, _ := http.NewRequest("GET", d.url+"/index.db", nil)
	req.Header.Set("If-None-Match", etag)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match on an unchanged index: %v %v", resp.StatusCode, err)
	}

	added := r.add(t, "added", "1", 50<<10, 4)
	r.add(t, "change", "1", 100<<10, 22) // same file name, new content
	os.Remove(remove)
	d.Cmd.Process.Signal(syscall.SIGHUP)
	es2 := d.waitGeneration(t, r, 2)

	if len(es2) != 3 || es2[filepath.Base(added)] == nil || es2[filepath.Base(remove)] != nil {
		t.Fatalf("generation 2 has %v", keys(es2))
	}
	k := filepath.Base(keep)
	if es1[k].InfoHash != es2[k].InfoHash {
		t.Error("the unchanged package's infohash changed across the rescan")
	}
	c := filepath.Base(change)
	if es1[c].InfoHash == es2[c].InfoHash || es2[c].SHA256 != fileSHA256(t, change) {
		t.Error("the changed package's index entry did not follow the file")
	}
	if code, _ := get(d.url + "/packages/" + filepath.Base(remove)); code != 404 {
		t.Errorf("removed package: %d, want 404", code)
	}
	if code, _ := get(d.url + "/torrents/" + filepath.Base(remove) + ".torrent"); code != 404 {
		t.Errorf("removed package's torrent: %d, want 404", code)
	}
	req, _ = http.NewRequest("GET", d.url+"/index.db", nil)
	req.Header.Set("If-None-Match", etag)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Errorf("If-None-Match with the old ETag after a change: %v %v", resp.StatusCode, err)
	}
	if !strings.Contains(d.Logs.String(), "added=1 changed=1 removed=1") {
		t.Errorf("the rescan's log line does not count the changes:\n%s", d.Logs)
	}

	// A restart at the same URL keeps the generation and the infohashes
	// (at another, the trackers the index names change with it).
	if took, err := d.Stop(t); err != nil || took > 5*time.Second {
		t.Fatalf("stop: %v after %v", err, took)
	}
	d2 := startTpmdAt(t, r, strings.TrimPrefix(d.url, "http://"))
	es3, gen := d2.index(t, r)
	if gen != 2 || es3[k].InfoHash != es1[k].InfoHash {
		t.Errorf("after restart: generation %d", gen)
	}
}

func TestCorruptPackageRejected(t *testing.T) {
	r := newRepo(t)
	good := r.add(t, "good", "1", 100<<10, 1)
	bad := r.add(t, "bad", "1", 100<<10, 2)
	data, _ := os.ReadFile(bad)
	data[len(data)-20] ^= 0xff // inside the compressed stream or its CRC
	os.WriteFile(bad, data[:len(data)-8], 0o644)
	d := startTpmd(t, r)

	es, _ := d.index(t, r)
	if len(es) != 1 || es[filepath.Base(good)] == nil {
		t.Fatalf("published %v, want only good", keys(es))
	}
	var doc repo.IndexJSON
	json.Unmarshal(mustGet(t, d.url+"/index.json"), &doc)
	if len(doc.Rejected) != 1 || doc.Rejected[0].File != filepath.Base(bad) || doc.Rejected[0].Reason == "" {
		t.Fatalf("index.json rejected = %+v", doc.Rejected)
	}
	if !strings.Contains(d.Logs.String(), `msg="package rejected" file=`+filepath.Base(bad)) {
		t.Errorf("no log line for the rejection:\n%s", d.Logs)
	}
	if code, _ := get(d.url + "/packages/" + filepath.Base(bad)); code != 404 {
		t.Errorf("rejected package served: %d", code)
	}
}

// tpmd refuses a second start on the same state directory, writes its pid
// file, and stops cleanly within 5 s of SIGTERM, removing the pid file.
func TestPidFileAndCleanStop(t *testing.T) {
	r := newRepo(t)
	r.add(t, "a", "1", 10<<10, 1)
	d := startTpmd(t, r)
	pidFile := filepath.Join(r.state, "tpmd-server.pid")
	b, err := os.ReadFile(pidFile)
	if err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(d.Cmd.Process.Pid) {
		t.Fatalf("pid file: %q, %v; want %d", b, err, d.Cmd.Process.Pid)
	}

	addr := testenv.FreeAddr(t)
	out, err := exec.Command(tpmdBin, "server", "--packages", r.packages, "--state-dir", r.state,
		"--key", r.keyPath, "--http", addr, "--torrent-listen", "127.0.0.1:0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "another tpmd server") || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
		t.Errorf("second start: %v, %q; want one line that names the running server", err, out)
	}

	// Keep a download in flight while stopping: it is drained or cut, but
	// the stop stays within 5 s.
	took, err := d.Stop(t)
	if err != nil {
		t.Errorf("tpmd exited with %v after SIGTERM\n%s", err, d.Logs)
	}
	if took > 5*time.Second {
		t.Errorf("stop took %v", took)
	}
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Errorf("pid file left behind: %v", err)
	}
	if !strings.Contains(d.Logs.String(), "msg=stopped") {
		t.Errorf("no stop log line:\n%s", d.Logs)
	}
}

func TestConfigFile(t *testing.T) {
	r := newRepo(t)
	r.add(t, "a", "1", 10<<10, 1)
	addr := testenv.FreeAddr(t)
	conf := filepath.Join(t.TempDir(), "server.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("# test\npackages = %s\nstate-dir = %s\nkey = %q\nhttp = %s\npublic-url = http://%s\ntorrent-listen = 127.0.0.1:0\nscan-interval = 1h\n",
		r.packages, r.state, r.keyPath, addr, addr)), 0o644)
	cmd := exec.Command(tpmdBin, "server", "--config", conf)
	var logs testenv.LogBuffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if code, _ := get("http://" + addr + "/healthz"); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tpmd with --config never answered:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	os.WriteFile(conf, []byte("packages = /x\nbogus = 1\n"), 0o644)
	out, err := exec.Command(tpmdBin, "server", "--config", conf).CombinedOutput()
	if err == nil || !strings.Contains(string(out), `line`) && !strings.Contains(string(out), `:2: unknown setting "bogus"`) {
		t.Errorf("bad config: %v %q", err, out)
	}
}

// A standard BitTorrent client downloads a package with only its .torrent
// and the server as its peer, and the bytes match the index's sha256. The
// clients reach the server through a proxy that refuses /packages/, so the
// web seed is out of the picture and every byte comes from the seeder (which
// the tracker hands out); then again with the web seed allowed.
func TestAria2Download(t *testing.T) {
	if _, err := exec.LookPath("aria2c"); err != nil {
		t.Skip("aria2c is not installed (apt-get install aria2); skipping the BitTorrent client test")
	}
	r := newRepo(t)
	pkg := r.add(t, "big", "1", 4<<20, 7)

	var target atomic.Pointer[url.URL]
	blockWebSeed := atomic.Bool{}
	blockWebSeed.Store(true)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if blockWebSeed.Load() && strings.HasPrefix(req.URL.Path, "/packages/") {
			http.Error(w, "web seed disabled by the test", http.StatusNotFound)
			return
		}
		httputil.NewSingleHostReverseProxy(target.Load()).ServeHTTP(w, req)
	}))
	defer proxy.Close()
	d := startTpmd(t, r, "--public-url", proxy.URL)
	u, _ := url.Parse(d.url)
	target.Store(u)
	es, _ := d.index(t, r)
	e := es[filepath.Base(pkg)]

	// Wait until the seeder has verified the file.
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, body := get(d.url + "/healthz")
		if strings.Contains(string(body), "seeding=1/1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the seeder never completed: %s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	torrent := filepath.Join(t.TempDir(), "pkg.torrent")
	os.WriteFile(torrent, mustGet(t, proxy.URL+"/torrents/"+e.File+".torrent"), 0o644)

	uploaded := func() int64 {
		_, body := get(d.url + "/healthz")
		m := regexp.MustCompile(`uploaded=(\d+)`).FindStringSubmatch(string(body))
		if m == nil {
			t.Fatalf("healthz has no upload count: %s", body)
		}
		n, _ := strconv.ParseInt(m[1], 10, 64)
		return n
	}
	for _, webSeed := range []bool{false, true} {
		blockWebSeed.Store(!webSeed)
		dir := t.TempDir()
		port := strings.TrimPrefix(testenv.FreeAddr(t), "127.0.0.1:")
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := exec.CommandContext(ctx, "aria2c", "--dir="+dir, "--seed-time=0",
			"--enable-dht=false", "--enable-dht6=false", "--enable-peer-exchange=false", "--bt-enable-lpd=false",
			"--listen-port="+port, "--no-conf", "--summary-interval=0", "--console-log-level=warn", torrent)
		before := uploaded()
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("aria2c (web seed %v): %v\n%s", webSeed, err, out)
		}
		if fileSHA256(t, filepath.Join(dir, e.File)) != e.SHA256 {
			t.Fatalf("aria2c's download (web seed %v) does not match the index's sha256", webSeed)
		}
		sent := uploaded() - before
		t.Logf("web seed %v: the seeder sent %d of %d bytes", webSeed, sent, e.Size)
		if !webSeed && sent < e.Size {
			t.Errorf("without the web seed the seeder sent only %d of %d bytes", sent, e.Size)
		}
	}
}

func keys(m map[string]*store.CatalogEntry) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
