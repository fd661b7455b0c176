// Package client runs the real tpmd server and tpmd client binaries on
// loopback, in temporary directories with a temporary prefix, and speaks the
// FIFO wire protocol to the client through package local, as tpm does.
package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"tpm/fifo"
	"tpm/local"
	"tpm/messages/wire"
	"tpm/signing"
	"tpm/tarball"
	"tpm/test/testenv"
)

var (
	tpmdBin    string
	buildFlags []string
)

func TestMain(m *testing.M) {
	if name := os.Getenv(attackEnv); name != "" { // hostile_test.go's attacker
		if err := attacker(name); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	testenv.Main(m, &tpmdBin, buildFlags...)
}

type logBuffer = testenv.LogBuffer

// repository is a package directory with the examples packed, and a key.
type repository struct {
	packages, state  string
	keyPath, pubPath string
}

func examplesDir() string {
	wd, _ := os.Getwd()
	return filepath.Join(wd, "..", "..", "examples")
}

func newRepository(t *testing.T, examples ...string) *repository {
	t.Helper()
	r := &repository{packages: t.TempDir(), state: t.TempDir()}
	var err error
	r.keyPath, r.pubPath, err = signing.Keygen(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(examples) == 0 {
		examples = []string{"greet-data", "libgreet", "hello"}
	}
	for _, e := range examples {
		if _, _, err := tarball.PackFile(filepath.Join(examplesDir(), e), r.packages, tarball.PackOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// addPackage packs a package made of a package.json, files under data/
// and scripts under info/.
func (r *repository) addPackage(t *testing.T, manifest string, files map[string]string) string {
	t.Helper()
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "info"), 0o755)
	os.MkdirAll(filepath.Join(src, "data"), 0o755)
	os.WriteFile(filepath.Join(src, "info", "package.json"), []byte(manifest), 0o644)
	for name, content := range files {
		p := filepath.Join(src, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		mode := os.FileMode(0o644)
		if strings.HasPrefix(name, "info/") || strings.Contains(name, "/bin/") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	path, _, err := tarball.PackFile(src, r.packages, tarball.PackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return path
}

type proc = testenv.Proc

func startProc(t *testing.T, args ...string) *proc { return testenv.Start(t, tpmdBin, args...) }

func freeAddr(t *testing.T) string { return testenv.FreeAddr(t) }

type server struct {
	*proc
	url      string
	packages string
}

func startServer(t *testing.T, r *repository, extra ...string) *server {
	t.Helper()
	return startServerAt(t, r, freeAddr(t), extra...)
}

// startServerAt starts a server on addr, so that a restarted server keeps
// the URL its clients know.
func startServerAt(t *testing.T, r *repository, addr string, extra ...string) *server {
	t.Helper()
	args := append([]string{"server", "--packages", r.packages, "--state-dir", r.state,
		"--key", r.keyPath, "--http", addr, "--public-url", "http://" + addr,
		"--torrent-listen", "127.0.0.1:0", "--log-level", "debug"}, extra...)
	s := &server{proc: startProc(t, args...), url: "http://" + addr, packages: r.packages}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.url + "/index.db.sig")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s
			}
		}
		if done, err := s.Exited(); done {
			t.Fatalf("tpmd server exited at start: %v\n%s", err, s.Logs)
		}
		if time.Now().After(deadline) {
			t.Fatalf("tpmd server did not publish an index\n%s", s.Logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// host is one client host's directories.
type host struct {
	state, cache, run, prefix string
}

func newHost(t *testing.T) *host {
	return &host{state: t.TempDir(), cache: t.TempDir(), run: t.TempDir(), prefix: t.TempDir()}
}

type daemon struct {
	*proc
	h *host
}

func startClient(t *testing.T, h *host, serverURL, pubPath string, extra ...string) *daemon {
	t.Helper()
	args := append([]string{"client", "--server", serverURL, "--trusted-key", pubPath,
		"--state-dir", h.state, "--cache-dir", h.cache, "--run-dir", h.run, "--prefix", h.prefix,
		"--build-dir", t.TempDir(),
		"--torrent-listen", "127.0.0.1:0", "--log-level", "debug"}, extra...)
	d := &daemon{proc: startProc(t, args...), h: h}
	deadline := time.Now().Add(30 * time.Second)
	for {
		// A killed daemon leaves its FIFOs: wait for an answer.
		if final, _, err := callErr(context.Background(), h.run, "status", nil, nil, 2*time.Second); err == nil && final.Type == wire.ReplyResult {
			return d
		}
		if done, err := d.Exited(); done {
			t.Fatalf("tpmd client exited at start: %v\n%s", err, d.Logs)
		}
		if time.Now().After(deadline) {
			t.Fatalf("tpmd client did not make its FIFOs\n%s", d.Logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// call sends one request and reads replies until the final one.
func call(t *testing.T, run, verb string, args []string, mod func(*wire.Request)) (final wire.Reply, stream []wire.Reply) {
	t.Helper()
	final, stream, err := callErr(context.Background(), run, verb, args, mod, 60*time.Second)
	if err != nil {
		t.Fatalf("%s %v: %v", verb, args, err)
	}
	return final, stream
}

// callErr is tpm's request loop (local.Client.Call) with the error reply
// handed back as the final reply, so tests can look at it like any other;
// err is for everything else (no daemon, the daemon gone, ctx).
func callErr(ctx context.Context, run, verb string, args []string, mod func(*wire.Request), timeout time.Duration) (final wire.Reply, stream []wire.Reply, err error) {
	req := wire.Request{Verb: verb, Args: args}
	if mod != nil {
		mod(&req)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cl := &local.Client{RunDir: run}
	r, err := cl.Call(ctx, req, func(r *wire.Reply) error {
		stream = append(stream, *r)
		return nil
	})
	var de *local.DaemonError
	switch {
	case errors.As(err, &de):
		return *wire.Failure(de.Message), stream, nil
	case err != nil:
		return final, stream, fmt.Errorf("%w (after %d lines)", err, len(stream))
	}
	return *r, stream, nil
}

// ok calls and decodes a result, failing on an error reply. A result that
// comes in parts (list, files, verify) is decoded whole.
func ok(t *testing.T, run, verb string, args []string, mod func(*wire.Request), data any) []wire.Reply {
	t.Helper()
	final, stream := call(t, run, verb, args, mod)
	if final.Type != wire.ReplyResult {
		t.Fatalf("%s %v: %s: %s", verb, args, final.Type, final.Error)
	}
	raw := []byte(final.Data)
	var items []json.RawMessage
	for _, r := range stream {
		if r.Type == wire.ReplyItems {
			var part []json.RawMessage
			if err := json.Unmarshal(r.Data, &part); err != nil {
				t.Fatalf("%s part %s: %v", verb, r.Data, err)
			}
			items = append(items, part...)
			raw, _ = json.Marshal(items)
		}
	}
	if data != nil {
		if err := json.Unmarshal(raw, data); err != nil {
			t.Fatalf("%s result %s: %v", verb, raw, err)
		}
	}
	return stream
}

// rawRequest leaves body as a request in run's spool, announces it on the
// query (or admin) FIFO, and returns the first reply line.
func rawRequest(t *testing.T, run string, admin bool, body []byte) string {
	t.Helper()
	out, err := fifo.NewOutgoing(filepath.Join(run, fifo.SpoolDir))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := out.Send(ctx, fifo.Path(run, admin), body, -1); err != nil {
		t.Fatal(err)
	}
	line, err := out.ReadLine(ctx)
	if err != nil {
		t.Fatalf("request %q: %v", body, err)
	}
	return string(line)
}

// fails calls and returns the error line, failing on success.
func fails(t *testing.T, run, verb string, args []string, mod func(*wire.Request)) string {
	t.Helper()
	final, _ := call(t, run, verb, args, mod)
	if final.Type != wire.ReplyError {
		t.Fatalf("%s %v succeeded: %s", verb, args, final.Data)
	}
	return final.Error
}

func getStatus(t *testing.T, run string) wire.Status {
	t.Helper()
	var s wire.Status
	ok(t, run, "status", nil, nil, &s)
	return s
}

// waitIndex waits until the daemon has an index with n packages.
func waitIndex(t *testing.T, run string, n int) wire.Status {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s := getStatus(t, run)
		if s.IndexGeneration > 0 && s.IndexPackages >= n {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("no index with %d packages: %+v", n, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type result = wire.OpResult

func list(t *testing.T, run string) map[string]wire.InstalledPackage {
	t.Helper()
	var items []wire.InstalledPackage
	ok(t, run, "list", nil, nil, &items)
	out := map[string]wire.InstalledPackage{}
	for _, it := range items {
		out[it.Name] = it
	}
	return out
}

func verifyClean(t *testing.T, run string) {
	t.Helper()
	var problems []wire.Problem
	ok(t, run, "verify", nil, nil, &problems)
	if len(problems) > 0 {
		t.Fatalf("verify: %+v", problems)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

const sighup = syscall.SIGHUP
