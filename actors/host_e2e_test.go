package actors

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tpm/fifo"
	"tpm/messages/wire"
	"tpm/repo/repotest"
	"tpm/signing"
	"tpm/tarball"
)

// startPair runs a server (not seeding, so downloads come from its web
// seed, which starts about 5 s late) and a client in this process.
func startPair(t testing.TB) (*testHost, string) {
	t.Helper()
	return startPairWith(t, nil)
}

// testHost is a running host with the folders tests look into.
type testHost struct {
	*Host
	cacheDir, buildRoot string
	starts              *starts
}

// startPairWith is startPair with more packages, which addPackages writes
// into the repository before the server starts.
func startPairWith(t testing.TB, addPackages func(dir string)) (*testHost, string) {
	t.Helper()
	return startPairOpts(t, pairOptions{addPackages: addPackages})
}

// pairOptions vary startPair's repository and host.
type pairOptions struct {
	addPackages func(dir string) // writes more packages before the server starts
	parallel    int              // the host's ParallelDownloads
	// front, when set, returns the URL the host is given for the server
	// (whose own it is given): a proxy in between.
	front func(server string) string
}

func startPairOpts(t testing.TB, o pairOptions) (*testHost, string) {
	t.Helper()
	keyPath, pubPath, err := signing.Keygen(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := signing.LoadKey(keyPath)
	pub, _ := signing.LoadPublicKey(pubPath)
	pkgs := t.TempDir()
	repotest.Make(t, pkgs, repotest.Package{Name: "small", Version: "1", PayloadBytes: 1 << 10, Seed: 1})
	repotest.Make(t, pkgs, repotest.Package{Name: "big", Version: "1", PayloadBytes: 4 << 20, Seed: 2})
	if o.addPackages != nil {
		o.addPackages(pkgs)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv, err := StartServer(ServerConfig{PackageDir: pkgs, StateDir: t.TempDir(), HTTPAddr: "127.0.0.1:0",
		TorrentAddr: "127.0.0.1:0", PublicURL: "http://127.0.0.1:1", Signer: key, Logger: log, NoSeed: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Stop(ctx)
	})
	for deadline := time.Now().Add(20 * time.Second); srv.Current() == nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the server published no generation")
		}
	}
	run := t.TempDir()
	th := &testHost{cacheDir: t.TempDir(), buildRoot: buildRoot(t), starts: newStarts()}
	server := "http://" + srv.HTTPAddr()
	if o.front != nil {
		server = o.front(server)
	}
	c, err := StartHost(HostConfig{Servers: []string{server}, TrustedKey: pub, StateDir: t.TempDir(),
		CacheDir: th.cacheDir, RunDir: run, AdminGID: -1, Prefix: t.TempDir(), TorrentAddr: "127.0.0.1:0", Logger: log,
		BuildRoot: th.buildRoot, ParallelDownloads: o.parallel}.withCrashes().withStarts(th.starts))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	// The server published before the host started, and the host opens
	// its FIFOs only once its first fetch is done: the index is there.
	var st wire.Status
	if r := final(t, request(t, run, "status")); r.Type != wire.ReplyResult || json.Unmarshal(r.Data, &st) != nil || st.IndexPackages < 2 {
		t.Fatalf("status at start: %+v", r)
	}
	th.Host = c
	return th, run
}

// request sends one request and returns a function that reads its next
// reply line; the whole request has 20 s.
func request(t testing.TB, run, verb string, args ...string) func() wire.Reply {
	t.Helper()
	return requestFor(t, 20*time.Second, run, verb, args...)
}

// requestFor is request with its time limit.
func requestFor(t testing.TB, limit time.Duration, run, verb string, args ...string) func() wire.Reply {
	t.Helper()
	rep, err := fifo.NewOutgoing(filepath.Join(run, fifo.SpoolDir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rep.Close() })
	line, _ := json.Marshal(wire.Request{V: wire.ProtocolVersion, Verb: verb, Args: args})
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	t.Cleanup(cancel)
	if err := rep.Send(ctx, fifo.Path(run, wire.IsAdmin(verb)), line, -1); err != nil {
		t.Fatal(err)
	}
	return func() wire.Reply {
		t.Helper()
		b, err := rep.ReadLine(ctx)
		if err != nil {
			t.Fatalf("%s: %v", verb, err)
		}
		var r wire.Reply
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
}

func final(t testing.TB, next func() wire.Reply) wire.Reply {
	t.Helper()
	for {
		if r := next(); r.Final() {
			return r
		}
	}
}

// A failing installer is restarted by its supervisor; the CLI that waited
// gets an error, the download it asked for stops, and the daemon keeps
// answering.
func TestClientInstallerCrashReported(t *testing.T) {
	c, run := startPair(t)
	next := request(t, run, "install", "big")
	for r := next(); r.Type != wire.ReplyProgress; r = next() {
		if r.Final() {
			t.Fatalf("install ended early: %+v", r)
		}
	}
	c.InjectCrash(Installer)
	r := final(t, next)
	if r.Type != wire.ReplyError || !strings.Contains(r.Error, "installer failed and was restarted") {
		t.Fatalf("after the crash: %+v", r)
	}
	if r := final(t, request(t, run, "status")); r.Type != wire.ReplyResult {
		t.Fatalf("status after the crash: %+v", r)
	}
	// The cancelled download leaves nothing behind, and the restarted
	// installer works.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(c.cacheDir, "big-1-any.tpkg")); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the cancelled download's file is still in the cache")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r := final(t, request(t, run, "install", "small")); r.Type != wire.ReplyResult {
		t.Fatalf("install after the restart: %+v", r)
	}
}

func TestClientGatewayAndSyncerRestart(t *testing.T) {
	c, run := startPair(t)
	c.crashAndAwaitRestart(t, Gateway, Syncer)
	if r := final(t, request(t, run, "sync")); r.Type != wire.ReplyResult {
		t.Fatalf("sync after restarts: %+v", r)
	}
	r := final(t, request(t, run, "info", "small"))
	if r.Type != wire.ReplyResult || !strings.Contains(string(r.Data), `"name":"small"`) {
		t.Fatalf("info after restarts: %+v", r)
	}
}

// The swarm is told what to seed once when the daemon starts (the
// installer's reconciliation), and once more when it restarts, having lost
// its torrents: not twice at every start.
func TestClientSeedsOnceAtStart(t *testing.T) {
	c, run := startPair(t)
	c.awaitCount(t, seedResets, 1)
	c.crashAndAwaitRestart(t, Swarm)
	c.awaitCount(t, seedResets, 2)
	// Every job the installer had queued is done once a job queued after
	// them is answered.
	if r := final(t, request(t, run, "remove", "nothing-installed")); r.Type != wire.ReplyError {
		t.Fatalf("remove of a package not installed: %+v", r)
	}
	if n := c.starts.count(seedResets); n != 2 {
		t.Fatalf("the swarm was told all it seeds %d times, want once at start and once after its restart", n)
	}
}

// Sync (SIGHUP) fetches the index at once, with no request to answer.
func TestClientSyncWithoutARequest(t *testing.T) {
	c, run := startPair(t)
	fetchedAt := func() time.Time {
		var st wire.Status
		if r := final(t, request(t, run, "status")); r.Type != wire.ReplyResult || json.Unmarshal(r.Data, &st) != nil {
			t.Fatalf("status: %+v", r)
		}
		return time.Now().Add(-time.Duration(st.IndexFetchedSecs * float64(time.Second)))
	}
	asked := time.Now()
	c.Sync()
	for deadline := time.Now().Add(10 * time.Second); !fetchedAt().After(asked); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Sync fetched no index")
		}
	}
	if r := final(t, request(t, run, "sync")); r.Type != wire.ReplyResult {
		t.Fatalf("tpm sync after a Sync without a request: %+v", r)
	}
}

// awaitCount waits until the starts counted n of key.
func (th *testHost) awaitCount(t testing.TB, key string, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); th.starts.count(key) < n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d, waited for %d", key, th.starts.count(key), n)
		}
	}
}

// crashAndAwaitRestart makes each component fail and waits until its
// supervisor has started it again (its Started handled: the gateway's
// FIFOs open again, the syncer takes syncs).
func (th *testHost) crashAndAwaitRestart(t testing.TB, components ...string) {
	t.Helper()
	before := map[string]int{}
	for _, c := range components {
		before[c] = th.starts.count(c)
		th.InjectCrash(c)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, c := range components {
		for th.starts.count(c) <= before[c] {
			if time.Now().After(deadline) {
				t.Fatalf("%s was not restarted after its crash", c)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// buildRoot gives each test's source builds a folder of its own.
func buildRoot(t testing.TB) string {
	dir := filepath.Join(t.TempDir(), "build")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A failing builder is restarted by its supervisor; the build it ran is
// killed, the CLI that waited is told, nothing is installed, and the daemon
// keeps answering.
func TestClientBuilderCrashReported(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	c, run := startPairWith(t, func(dir string) {
		src := t.TempDir()
		os.MkdirAll(filepath.Join(src, "info"), 0o755)
		os.MkdirAll(filepath.Join(src, "data"), 0o755)
		os.WriteFile(filepath.Join(src, "info", "package.json"), []byte(`{"Name":"slow","Version":"1","Architecture":"any","Type":"Source"}`), 0o644)
		os.WriteFile(filepath.Join(src, "data", "configure"), []byte("#!/bin/sh\nprintf 'all:\\n\\t@echo building; sleep 60\\n' > Makefile\n"), 0o755)
		if _, _, err := tarball.PackFile(src, dir, tarball.PackOptions{}); err != nil {
			t.Fatal(err)
		}
	})
	next := request(t, run, "install", "slow")
	for r := next(); r.Output == nil || r.Output.Line != "building"; r = next() {
		if r.Final() {
			t.Fatalf("install ended before the build ran: %+v", r)
		}
	}
	c.InjectCrash(Builder)
	r := final(t, next)
	if r.Type != wire.ReplyError || !strings.Contains(r.Error, "builder failed and was restarted") {
		t.Fatalf("after the crash: %+v", r)
	}
	if r := final(t, request(t, run, "list")); r.Type != wire.ReplyResult || strings.Contains(string(r.Data), "slow") {
		t.Fatalf("list after the crash: %+v", r)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		left, _ := os.ReadDir(c.buildRoot)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stopped build left %v", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
