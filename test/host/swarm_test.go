package host

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"tpm/messages/wire"
	"tpm/repo/repotest"
)

// proxy stands between a client and the server and can damage what passes:
// flip bytes of /index.db (the signature then fails), flip bytes of the web
// seed's /packages/ responses, or slow them down.
type proxy struct {
	*httptest.Server
	tamperIndex, corruptPackages atomic.Bool
	throttle                     atomic.Int64 // bytes per second for /packages/, 0 = no limit
	delivered                    atomic.Int64 // bytes of /packages/ read through the proxy
}

func newProxy(t *testing.T, target string) *proxy {
	u, _ := url.Parse(target)
	p := &proxy{}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	rp.ModifyResponse = func(resp *http.Response) error {
		path := resp.Request.URL.Path
		switch {
		case path == "/index.db" && p.tamperIndex.Load() && resp.StatusCode == 200 && resp.Request.Method == http.MethodGet:
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if len(b) > 0 {
				b[len(b)/2] ^= 0xff
			}
			resp.Body = io.NopCloser(strings.NewReader(string(b)))
		case strings.HasPrefix(path, "/packages/"):
			resp.Body = &damaging{ReadCloser: resp.Body, p: p}
		}
		return nil
	}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.tamperIndex.Load() {
			r.Header.Del("If-None-Match")
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

type damaging struct {
	io.ReadCloser
	p *proxy
}

func (d *damaging) Read(b []byte) (int, error) {
	if rate := d.p.throttle.Load(); rate > 0 {
		if len(b) > 16<<10 {
			b = b[:16<<10]
		}
		time.Sleep(time.Duration(int64(len(b)) * int64(time.Second) / rate))
	}
	n, err := d.ReadCloser.Read(b)
	d.p.delivered.Add(int64(n))
	if d.p.corruptPackages.Load() {
		for i := 0; i < n; i += 97 {
			b[i] ^= 0x5a
		}
	}
	return n, err
}

// A second client installs from the first one's seed: the server runs with
// --seed=false (it publishes, tracks and serves HTTP, but is no peer), and
// the second client runs with --web-seed=false, so the only source it has
// is the first client.
func TestSecondClientFromFirst(t *testing.T) {
	r := newRepository(t)
	srv := startServer(t, r, "--seed=false")
	h1, h2 := newHost(t), newHost(t)
	startClient(t, h1, srv.url, r.pubPath) // web seed on: the server does not seed
	waitIndex(t, h1.run, 3)
	var results []result
	ok(t, h1.run, "install", []string{"hello"}, nil, &results)
	if len(results) != 3 {
		t.Fatalf("first client: %+v", results)
	}
	waitFor(t, "first client seeding", func() bool { return getStatus(t, h1.run).Seeding == 3 })
	before := getStatus(t, h1.run).BytesUp

	startClient(t, h2, srv.url, r.pubPath, "--web-seed=false", "--stall-timeout", "30s")
	waitIndex(t, h2.run, 3)
	secondInstallsFromFirst(t, h1, h2, before, "")
	if s := getStatus(t, h2.run); s.BytesDown == 0 {
		t.Fatalf("the second client downloaded nothing from peers: %+v", s)
	}
}

// secondInstallsFromFirst installs hello on h2, whose only source is h1
// (which had uploaded before bytes), and checks that it came from there.
func secondInstallsFromFirst(t *testing.T, h1, h2 *host, before int64, how string) {
	t.Helper()
	start := time.Now()
	var results []result
	ok(t, h2.run, "install", []string{"hello"}, nil, &results)
	t.Logf("second client installed hello and its dependencies from the first%s in %v", how, time.Since(start).Round(time.Millisecond))
	if len(results) != 3 {
		t.Fatalf("second client: %+v", results)
	}
	if after := getStatus(t, h1.run); after.BytesUp <= before {
		t.Fatalf("the first client uploaded nothing: %+v", after)
	}
	if _, err := os.Stat(filepath.Join(h2.prefix, "usr/bin/hello")); err != nil {
		t.Fatal(err)
	}
}

// The demo's order: the first client installs while the server seeds; the
// server is restarted with --seed=false (same state, same URL: the index and
// the torrents stay the same), the first client is restarted so that it
// announces what it seeds to the new tracker, and a second client without
// the web seed installs from the first.
func TestSecondClientAfterServerStopsSeeding(t *testing.T) {
	r := newRepository(t)
	addr := freeAddr(t)
	srv := startServerAt(t, r, addr)
	h1, h2 := newHost(t), newHost(t)
	c1 := startClient(t, h1, srv.url, r.pubPath)
	waitIndex(t, h1.run, 3)
	ok(t, h1.run, "install", []string{"hello"}, nil, nil)
	srv.Stop(t)
	srv = startServerAt(t, r, addr, "--seed=false")
	c1.Stop(t)
	startClient(t, h1, srv.url, r.pubPath)
	waitFor(t, "first client seeding again", func() bool { return getStatus(t, h1.run).Seeding == 3 })
	startClient(t, h2, srv.url, r.pubPath, "--web-seed=false", "--stall-timeout", "30s")
	waitIndex(t, h2.run, 3)
	var results []result
	ok(t, h2.run, "install", []string{"hello"}, nil, &results)
	if len(results) != 3 || getStatus(t, h1.run).BytesUp == 0 {
		t.Fatalf("second client: %+v", results)
	}
}

func TestTamperedIndexRefused(t *testing.T) {
	r := newRepository(t)
	srv := startServer(t, r)
	px := newProxy(t, srv.url)
	h := newHost(t)
	startClient(t, h, px.URL, r.pubPath)
	s := waitIndex(t, h.run, 3)

	// A new generation on the server, damaged on the way.
	r.addPackage(t, `{"Name":"extra","Version":"1.0","Architecture":"any","Type":"Binary"}`,
		map[string]string{"data/usr/share/extra/x": "x"})
	srv.Cmd.Process.Signal(sighup)
	px.tamperIndex.Store(true)
	waitFor(t, "server generation 2", func() bool {
		resp, err := http.Get(srv.url + "/index.db")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.Header.Get("X-Tpm-Generation") == "2"
	})
	if e := fails(t, h.run, "sync", nil, nil); !strings.Contains(e, "refusing") || !strings.Contains(e, "signature") {
		t.Fatalf("tampered sync: %q", e)
	}
	if s2 := getStatus(t, h.run); s2.IndexGeneration != s.IndexGeneration || s2.IndexPackages != 3 {
		t.Fatalf("index changed after a tampered sync: %+v", s2)
	}
	fails(t, h.run, "info", []string{"extra"}, nil)
	ok(t, h.run, "info", []string{"hello"}, nil, nil)

	px.tamperIndex.Store(false)
	var sr wire.SyncResult
	ok(t, h.run, "sync", nil, nil, &sr)
	if sr.Generation != 2 { // changed, unless the syncer's retry got there first
		t.Fatalf("sync after the damage stopped: %+v", sr)
	}
	ok(t, h.run, "info", []string{"extra"}, nil, nil)
	ok(t, h.run, "sync", nil, nil, &sr)
	if sr.Changed {
		t.Fatalf("unchanged sync says changed: %+v", sr)
	}
}

func TestCorruptWebSeedRefused(t *testing.T) {
	r := newRepository(t)
	srv := startServer(t, r, "--seed=false") // the web seed is the only source
	px := newProxy(t, srv.url)
	px.corruptPackages.Store(true)
	h := newHost(t)
	startClient(t, h, px.URL, r.pubPath, "--stall-timeout", "60s")
	waitIndex(t, h.run, 3)
	e := fails(t, h.run, "install", []string{"greet-data"}, nil)
	if !strings.Contains(e, "does not match the signed index") {
		t.Fatalf("corrupt web seed: %q", e)
	}
	t.Logf("refused: %s", e)
	if l := list(t, h.run); len(l) != 0 {
		t.Fatalf("installed from corrupt bytes: %v", l)
	}
	if _, err := os.Stat(filepath.Join(h.prefix, "usr/share/greet/greeting.txt")); !os.IsNotExist(err) {
		t.Fatalf("file written: %v", err)
	}
	// The same install works once the bytes are good.
	px.corruptPackages.Store(false)
	ok(t, h.run, "install", []string{"greet-data"}, nil, nil)
}

// bigPackage adds a package large enough that a throttled web seed takes
// many seconds to deliver it.
func bigPackage(t *testing.T, r *repository) {
	repotest.Make(t, r.packages, repotest.Package{Name: "big", Version: "1.0", PayloadBytes: 8 << 20, Seed: 7})
}

// slowDownload is a host whose daemon can only get a big package from the
// web seed, through a proxy that throttles it to 256 KiB/s.
func slowDownload(t *testing.T) (*repository, *proxy, *host, *daemon) {
	r := newRepository(t, "greet-data")
	bigPackage(t, r)
	srv := startServer(t, r, "--seed=false")
	px := newProxy(t, srv.url)
	px.throttle.Store(256 << 10)
	h := newHost(t)
	d := startClient(t, h, px.URL, r.pubPath)
	waitIndex(t, h.run, 2)
	return r, px, h, d
}

func TestSIGTERMMidDownload(t *testing.T) {
	r, px, h, d := slowDownload(t)
	type out struct {
		final wire.Reply
		err   error
	}
	res := make(chan out, 1)
	go func() {
		f, _, err := callErr(context.Background(), h.run, "install", []string{"big"}, nil, 60*time.Second)
		res <- out{f, err}
	}()
	// Mid-download: pieces are coming in (128 KiB, half a second of the
	// throttled web seed), and the install still waits for the rest.
	waitFor(t, "download under way", func() bool { return px.delivered.Load() >= 128<<10 })
	select {
	case o := <-res:
		t.Fatalf("the install ended before the stop: %v %+v", o.err, o.final)
	default:
	}
	dt, _ := d.Stop(t)
	t.Logf("stopped %v after SIGTERM", dt)
	if dt > 5*time.Second {
		t.Fatalf("stop took %v", dt)
	}
	o := <-res
	if o.err == nil && o.final.Type != wire.ReplyError {
		t.Fatalf("install during stop: %+v", o.final)
	}
	t.Logf("the CLI got: %v %s", o.err, o.final.Error)
	// Nothing installed, and the next start is consistent.
	startClient(t, h, px.URL, r.pubPath)
	if l := list(t, h.run); len(l) != 0 {
		t.Fatalf("installed: %v", l)
	}
	verifyClean(t, h.run)
}

func TestCLIGoneCancelsDownload(t *testing.T) {
	_, _, h, d := slowDownload(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, _, err := callErr(ctx, h.run, "install", []string{"big"}, nil, 60*time.Second)
		done <- err
	}()
	waitFor(t, "download under way", func() bool {
		info, err := os.Stat(filepath.Join(h.cache, "big-1.0-any.tpkg"))
		return err == nil && info.Size() > 0
	})
	cancel() // like Ctrl-C: the CLI closes its reply FIFO and goes
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("CLI: %v", err)
	}
	waitFor(t, "download cancelled and its file deleted", func() bool {
		_, err := os.Stat(filepath.Join(h.cache, "big-1.0-any.tpkg"))
		return os.IsNotExist(err)
	})
	if l := list(t, h.run); len(l) != 0 {
		t.Fatalf("installed: %v", l)
	}
	if !strings.Contains(d.Logs.String(), "cancelled") && testing.Verbose() {
		t.Logf("log:\n%s", d.Logs)
	}
}

// TestUndoFromPeer: an upgrade undone on a host that no longer has the old
// version (clean dropped it), while the repository does not seed and the
// host has no web seed: the old version comes from the first host, which
// kept it in its cache when it upgraded.
func TestUndoFromPeer(t *testing.T) {
	r := newRepository(t)
	r.addPackage(t, `{"Name":"tool","Version":"1.0","Architecture":"any","Type":"Binary"}`, map[string]string{"data/usr/share/tool/v": "1"})
	r.addPackage(t, `{"Name":"tool","Version":"2.0","Architecture":"any","Type":"Binary"}`, map[string]string{"data/usr/share/tool/v": "2"})
	srv := startServer(t, r, "--seed=false")
	h1, h2 := newHost(t), newHost(t)
	startClient(t, h1, srv.url, r.pubPath) // web seed on: the server does not seed
	waitIndex(t, h1.run, 5)
	ok(t, h1.run, "install", []string{"tool=1.0"}, nil, nil)
	ok(t, h1.run, "upgrade", []string{"tool"}, nil, nil)
	waitFor(t, "first host seeding both versions", func() bool { return getStatus(t, h1.run).Seeding == 2 })

	startClient(t, h2, srv.url, r.pubPath, "--web-seed=false", "--stall-timeout", "30s")
	waitIndex(t, h2.run, 5)
	ok(t, h2.run, "install", []string{"tool=1.0"}, nil, nil)
	ok(t, h2.run, "upgrade", []string{"tool"}, nil, nil)
	var cleaned []wire.Cleaned
	ok(t, h2.run, "clean", nil, nil, &cleaned)
	if len(cleaned) != 1 || cleaned[0].Version != "1.0" {
		t.Fatalf("clean: %+v", cleaned)
	}
	waitFor(t, "tool 1.0 gone from the second host's cache", func() bool {
		_, err := os.Stat(filepath.Join(h2.cache, "tool-1.0-any.tpkg"))
		return os.IsNotExist(err)
	})
	before := getStatus(t, h1.run).BytesUp
	var plan wire.PlanResult
	ok(t, h2.run, "plan", []string{"2"}, func(r *wire.Request) { r.Options = wire.Options{Undo: true} }, &plan)
	if len(plan.Plan) != 1 || plan.Plan[0].Action != "downgrade" || plan.Plan[0].Version != "1.0" {
		t.Fatalf("undo plan: %+v", plan)
	}
	var results []result
	ok(t, h2.run, "undo", []string{"2"}, nil, &results)
	if len(results) != 1 || results[0].Action != "downgrade" || results[0].Version != "1.0" {
		t.Fatalf("undo: %+v", results)
	}
	if b, _ := os.ReadFile(filepath.Join(h2.prefix, "usr/share/tool/v")); string(b) != "1" {
		t.Fatalf("tool file after the undo: %q", b)
	}
	if after := getStatus(t, h1.run).BytesUp; after <= before {
		t.Fatalf("the first host uploaded nothing for the undo (%d bytes before, %d after)", before, after)
	}
}
