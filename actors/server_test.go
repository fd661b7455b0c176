package actors

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"tpm/generation"
	"tpm/repo/repotest"
	"tpm/signing"
)

// syncBuffer is a log sink that tests read while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type testServer struct {
	*Server
	dir  string
	logs *syncBuffer
	url  string
}

func startTestServer(t *testing.T, cfg ServerConfig) *testServer {
	t.Helper()
	ts := &testServer{dir: t.TempDir(), logs: &syncBuffer{}}
	keyPath, _, err := signing.Keygen(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := signing.LoadKey(keyPath)
	cfg.PackageDir = ts.dir
	cfg.StateDir = t.TempDir()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.TorrentAddr = "127.0.0.1:0"
	cfg.PublicURL = "http://127.0.0.1:1" // only written into .torrent files here
	cfg.Signer = key
	cfg.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(ts.logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	repotest.Make(t, ts.dir, repotest.Package{Name: "a", Version: "1", PayloadBytes: 50 << 10, Seed: 1})
	repotest.Make(t, ts.dir, repotest.Package{Name: "b", Version: "1", PayloadBytes: 50 << 10, Seed: 2})
	s, err := StartServer(cfg.withCrashes())
	if err != nil {
		t.Fatal(err)
	}
	ts.Server = s
	ts.url = "http://" + s.HTTPAddr()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Stop(ctx)
	})
	ts.waitGeneration(t, 1)
	return ts
}

// testWriter shows the server's log in the test's output (with -v or on
// failure).
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (ts *testServer) waitGeneration(t *testing.T, n uint64) *generation.Generation {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if g := ts.Current(); g != nil && g.Number >= n {
			return g
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("generation %d was not published", n)
	return nil
}

func (ts *testServer) waitLog(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(ts.logs.String(), s) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("log never said %q", s)
}

func status(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func TestServerPublishesAndRescans(t *testing.T) {
	ts := startTestServer(t, ServerConfig{ScanInterval: time.Hour})
	g := ts.Current()
	if len(g.Packages) != 2 || status(ts.url+"/index.db") != 200 {
		t.Fatalf("generation 1: %d packages", len(g.Packages))
	}
	ts.waitLog(t, "seeding")
	if _, port, _ := net.SplitHostPort(ts.TorrentAddr()); port == "0" || port == "" {
		t.Errorf("the seeder's address %q has no port", ts.TorrentAddr())
	}

	repotest.Make(t, ts.dir, repotest.Package{Name: "c", Version: "1", PayloadBytes: 10 << 10, Seed: 3})
	ts.Rescan("test")
	g2 := ts.waitGeneration(t, 2)
	if len(g2.Packages) != 3 {
		t.Errorf("generation 2 has %d packages", len(g2.Packages))
	}
	if !strings.Contains(ts.logs.String(), "added=1") {
		t.Error("the scan's log line does not count the added package")
	}
	// The seeder applies what each generation changed: the two packages
	// it seeds already are not compared again (kept=0).
	ts.waitLog(t, "msg=seeding generation=2 added=1 dropped=0 kept=0 ")
	ts.waitHealth(t, "seeding=3/3 ")
	if err := os.Remove(filepath.Join(ts.dir, "a-1-any.tpkg")); err != nil {
		t.Fatal(err)
	}
	ts.Rescan("test")
	ts.waitGeneration(t, 3)
	ts.waitLog(t, "msg=seeding generation=3 added=0 dropped=1 kept=0 ")
	ts.waitHealth(t, "seeding=2/2 ")
}

// A crashing scanner is restarted, and /index.db answers throughout.
func TestScannerCrashIsRestarted(t *testing.T) {
	ts := startTestServer(t, ServerConfig{ScanInterval: time.Hour})
	stop := make(chan struct{})
	failures := make(chan int, 1)
	go func() {
		bad := 0
		for {
			select {
			case <-stop:
				failures <- bad
				return
			default:
			}
			if status(ts.url+"/index.db") != 200 {
				bad++
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	ts.InjectCrash(Scanner)
	ts.waitLog(t, "component failed")
	// The restarted scanner scans again at start, and takes requests.
	repotest.Make(t, ts.dir, repotest.Package{Name: "c", Version: "1", PayloadBytes: 10 << 10, Seed: 3})
	ts.Rescan("after crash")
	ts.waitGeneration(t, 2)
	close(stop)
	if bad := <-failures; bad != 0 {
		t.Errorf("/index.db failed %d times while the scanner restarted", bad)
	}
	select {
	case err := <-ts.Failed():
		t.Errorf("server failed: %v", err)
	default:
	}
}

// A restarted publisher listens on the same address again; a restarted
// seeder gets the current generation back.
func TestPublisherAndSeederRestart(t *testing.T) {
	ts := startTestServer(t, ServerConfig{ScanInterval: time.Hour})
	addr := ts.HTTPAddr()
	ts.waitLog(t, "seeding")
	ts.InjectCrash(Publisher)
	ts.InjectCrash(Seeder)
	deadline := time.Now().Add(10 * time.Second)
	for status(ts.url+"/index.db") != 200 {
		if time.Now().After(deadline) {
			t.Fatal("the publisher did not come back")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ts.HTTPAddr() != addr {
		t.Errorf("restarted publisher moved from %s to %s", addr, ts.HTTPAddr())
	}
	for strings.Count(ts.logs.String(), "msg=seeding") < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the restarted seeder did not seed the current generation")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// /healthz says what the seeder seeds, asked of the seeder's actor, and
// says it again once a restarted seeder is up.
func TestHealthzAsksTheSeeder(t *testing.T) {
	ts := startTestServer(t, ServerConfig{ScanInterval: time.Hour})
	ts.waitHealth(t, "seeding=2/2 ")
	ts.InjectCrash(Seeder)
	ts.waitLog(t, "component failed")
	ts.waitHealth(t, "seeding=2/2 ")
}

func (ts *testServer) waitHealth(t *testing.T, want string) {
	t.Helper()
	var body []byte
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get(ts.url + "/healthz")
		if err != nil {
			continue
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(body), want) {
			return
		}
	}
	t.Fatalf("/healthz never said %q: %s", want, body)
}

// A component that keeps failing is stopped and reported, not restarted
// forever.
func TestRepeatedFailureIsReported(t *testing.T) {
	ts := startTestServer(t, ServerConfig{ScanInterval: time.Hour, MaxRestarts: 2, RestartWindow: time.Minute})
	for range 3 {
		ts.InjectCrash(Scanner)
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case err := <-ts.Failed():
		if !strings.Contains(err.Error(), "scanner") {
			t.Errorf("failure %q does not name the scanner", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no failure reported")
	}
	if status(ts.url+"/index.db") != 200 {
		t.Error("the publisher stopped serving when the scanner gave up")
	}
}

func TestStopIsQuick(t *testing.T) {
	ts := startTestServer(t, ServerConfig{ScanInterval: time.Hour})
	ts.waitLog(t, "seeding")
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Stop took %v", d)
	}
	if status(ts.url+"/index.db") != 0 {
		t.Error("the HTTP server still answers after Stop")
	}
}

// A port in use fails StartServer with the listener's error.
func TestStartFailsOnBusyPort(t *testing.T) {
	ts := startTestServer(t, ServerConfig{ScanInterval: time.Hour})
	keyPath, _, _ := signing.Keygen(t.TempDir(), false)
	key, _ := signing.LoadKey(keyPath)
	_, err := StartServer(ServerConfig{PackageDir: ts.dir, StateDir: t.TempDir(), HTTPAddr: ts.HTTPAddr(),
		TorrentAddr: "127.0.0.1:0", PublicURL: "http://x", Signer: key})
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("StartServer on a busy port: %v", err)
	}
	os.Remove(ts.dir) // nothing; keeps the fixture's dir in use
}
