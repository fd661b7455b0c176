package host

// Requests through the FIFOs themselves: garbage on both, a second daemon
// on the same run directory, a daemon killed mid-transaction, two requests
// at once, upgrades and the errors of planning.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"tpm/fifo"
	"tpm/messages/wire"
)

func TestGarbageIntoBothFIFOs(t *testing.T) {
	r := newRepository(t)
	srv := startServer(t, r)
	h := newHost(t)
	d := startClient(t, h, srv.url, r.pubPath)
	waitIndex(t, h.run, 3)
	for _, admin := range []bool{false, true} {
		w, err := os.OpenFile(fifo.Path(h.run, admin), os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, junk := range []string{"not json at all\n", "{}\n", `{"v":1,`, "\x00\x01\xff\xfe", strings.Repeat("x", 3*fifo.PipeBuf)} {
			if _, err := w.WriteString(junk); err != nil {
				t.Fatal(err)
			}
		}
		w.Close()
		// Requests that are no requests get an error reply.
		for _, c := range []struct {
			body, want string
		}{
			{"not json", "not valid JSON"},
			{`{"v":3,"verb":"frobnicate"}`, "not a request this FIFO takes"},
			{`{"v":99,"verb":"status"}`, "different releases"},
			{`{"v":3,"verb":"status","reply":"/etc/passwd"}`, "unknown field"},
			{`{"v":3,"verb":"status"} {}`, "data after the JSON object"},
			{strings.Repeat(" ", wire.MaxRequest+1), "longer than"},
		} {
			if got := rawRequest(t, h.run, admin, []byte(c.body)); !strings.Contains(got, c.want) || !strings.Contains(got, `"type":"error"`) {
				t.Fatalf("%.40q on admin=%v: %s", c.body, admin, got)
			}
		}
	}
	// An admin verb on the query FIFO (where local.Client never sends it)
	// is refused with what to do.
	if got := rawRequest(t, h.run, false, []byte(`{"v":3,"verb":"install","args":["hello"]}`)); !strings.Contains(got, "admin FIFO") {
		t.Fatalf("install on query.fifo: %s", got)
	}
	// The daemon still answers both FIFOs.
	if s := getStatus(t, h.run); s.PID != d.Cmd.Process.Pid {
		t.Fatalf("status: %+v", s)
	}
	var sr wire.SyncResult
	ok(t, h.run, "sync", nil, nil, &sr)
	if done, _ := d.Exited(); done {
		t.Fatal("daemon exited")
	}
	if !strings.Contains(d.Logs.String(), "refused a request") {
		t.Fatalf("garbage not logged:\n%s", d.Logs)
	}
}

func TestSecondDaemonRefused(t *testing.T) {
	r := newRepository(t, "greet-data")
	srv := startServer(t, r)
	h := newHost(t)
	first := startClient(t, h, srv.url, r.pubPath)
	out, err := exec.Command(tpmdBin, "client", "--server", srv.url, "--trusted-key", r.pubPath,
		"--state-dir", t.TempDir(), "--cache-dir", t.TempDir(), "--run-dir", h.run, "--prefix", h.prefix,
		"--torrent-listen", "127.0.0.1:0").CombinedOutput()
	if err == nil {
		t.Fatal("second daemon started")
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], fmt.Sprintf("another tpmd client (pid %d)", first.Cmd.Process.Pid)) {
		t.Fatalf("second daemon said: %q", out)
	}
	getStatus(t, h.run) // the first still answers
}

// The daemon is killed with SIGKILL in the middle of a transaction (after
// the first package is in, while the second is being placed); the next
// start finishes or undoes it, and the receipts match the disk.
func TestKilledMidInstallRecovers(t *testing.T) {
	r := newRepository(t)
	srv := startServer(t, r)
	h := newHost(t)
	d := startClient(t, h, srv.url, r.pubPath, "--test-kill-at-step", "journal placing libgreet")
	waitIndex(t, h.run, 3)
	_, _, err := callErr(context.Background(), h.run, "install", []string{"hello"}, nil, 3*time.Second)
	if err == nil {
		t.Fatal("install finished although the daemon was killed")
	}
	if killed, _ := d.Wait(10 * time.Second); !killed {
		t.Fatal("daemon not killed")
	}
	os.Remove(filepath.Join(h.run, fifo.PidFile)) // what kill -9 leaves behind is harmless either way
	startClient(t, h, srv.url, r.pubPath)
	l := list(t, h.run)
	t.Logf("after recovery: %v", l)
	if _, ok := l["greet-data"]; !ok {
		t.Fatalf("greet-data (committed before the kill) is gone: %v", l)
	}
	if _, ok := l["hello"]; ok {
		t.Fatalf("hello was never placed but has a receipt: %v", l)
	}
	verifyClean(t, h.run)
	// And the install can be finished.
	var results []result
	ok(t, h.run, "install", []string{"hello"}, nil, &results)
	verifyClean(t, h.run)
	if _, err := os.Stat(filepath.Join(h.prefix, "usr/bin/hello")); err != nil {
		t.Fatal(err)
	}
}

// Two CLIs at once: both installs succeed, one after the other, and a
// query is answered while they run.
func TestTwoRequestsAtOnce(t *testing.T) {
	r := newRepository(t)
	r.addPackage(t, `{"Name":"slow","Version":"1.0","Architecture":"any","Type":"Binary"}`, map[string]string{
		"data/usr/share/slow/x": "x",
		"info/preinstall":       "#!/bin/sh\nsleep 1\n",
	})
	srv := startServer(t, r)
	h := newHost(t)
	startClient(t, h, srv.url, r.pubPath)
	waitIndex(t, h.run, 4)
	var wg sync.WaitGroup
	errs := make([]string, 2)
	for i, name := range []string{"slow", "hello"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			final, _, err := callErr(context.Background(), h.run, "install", []string{name}, nil, 60*time.Second)
			switch {
			case err != nil:
				errs[i] = err.Error()
			case final.Type != wire.ReplyResult:
				errs[i] = final.Error
			}
		}()
	}
	// Status is answered while a transaction runs (the slow package's
	// preinstall sleeps a second): it says what is being installed.
	waitFor(t, "status to show an install under way", func() bool {
		s := getStatus(t, h.run)
		return s.Installing != "" || s.Queued > 0
	})
	wg.Wait()
	if errs[0] != "" || errs[1] != "" {
		t.Fatalf("installs: %q", errs)
	}
	if l := list(t, h.run); len(l) != 4 {
		t.Fatalf("list: %v", l)
	}
	verifyClean(t, h.run)
}

func TestUpgradeAndPlanErrors(t *testing.T) {
	r := newRepository(t)
	r.addPackage(t, `{"Name":"cyc-a","Version":"1","Architecture":"any","Type":"Binary","Dependencies":["cyc-b"]}`, nil)
	r.addPackage(t, `{"Name":"cyc-b","Version":"1","Architecture":"any","Type":"Binary","Dependencies":["cyc-a"]}`, nil)
	r.addPackage(t, `{"Name":"needy","Version":"1","Architecture":"any","Type":"Binary","Dependencies":["hello >= 9"]}`, nil)
	r.addPackage(t, `{"Name":"tool","Version":"1.0","Architecture":"any","Type":"Binary"}`, map[string]string{"data/usr/share/tool/v": "1"})
	srv := startServer(t, r)
	h := newHost(t)
	startClient(t, h, srv.url, r.pubPath)
	waitIndex(t, h.run, 7)
	if e := fails(t, h.run, "plan", []string{"cyc-a"}, nil); !strings.Contains(e, "cyc-a") || !strings.Contains(e, "cyc-b") {
		t.Fatalf("cycle: %q", e)
	}
	if e := fails(t, h.run, "plan", []string{"needy"}, nil); !strings.Contains(e, "hello >= 9") {
		t.Fatalf("unsatisfiable: %q", e)
	}
	if e := fails(t, h.run, "install", []string{"nothing-here"}, nil); !strings.Contains(e, "no package named nothing-here") {
		t.Fatalf("missing: %q", e)
	}
	ok(t, h.run, "install", []string{"tool"}, nil, nil)
	r.addPackage(t, `{"Name":"tool","Version":"2.0","Architecture":"any","Type":"Binary"}`, map[string]string{"data/usr/share/tool/v": "2"})
	srv.Cmd.Process.Signal(sighup)
	waitFor(t, "tool 2.0 in the index", func() bool {
		var sr wire.SyncResult
		ok(t, h.run, "sync", nil, nil, &sr)
		var info wire.PackageInfo
		ok(t, h.run, "info", []string{"tool"}, nil, &info)
		return info.Version == "2.0"
	})
	var plan wire.PlanResult
	ok(t, h.run, "plan", nil, func(r *wire.Request) { r.Options = wire.Options{Upgrade: true} }, &plan)
	if len(plan.Plan) != 1 || plan.Plan[0].Action != "upgrade" || plan.Plan[0].OldVersion != "1.0" {
		t.Fatalf("upgrade plan: %+v", plan)
	}
	var results []result
	ok(t, h.run, "upgrade", nil, nil, &results)
	if len(results) != 1 || results[0].Action != "upgrade" || results[0].Version != "2.0" {
		t.Fatalf("upgrade: %+v", results)
	}
	if b, _ := os.ReadFile(filepath.Join(h.prefix, "usr/share/tool/v")); string(b) != "2" {
		t.Fatalf("tool file: %q", b)
	}
	// The version before stays in the cache, for an undo; clean drops it.
	if _, err := os.Stat(filepath.Join(h.cache, "tool-1.0-any.tpkg")); err != nil {
		t.Fatalf("the version before left the cache: %v", err)
	}
	var cleaned []wire.Cleaned
	ok(t, h.run, "clean", nil, nil, &cleaned)
	if len(cleaned) != 1 || cleaned[0].Name != "tool" || cleaned[0].Version != "1.0" {
		t.Fatalf("clean: %+v", cleaned)
	}
	waitFor(t, "old version's file dropped from the cache", func() bool {
		_, err := os.Stat(filepath.Join(h.cache, "tool-1.0-any.tpkg"))
		return os.IsNotExist(err)
	})
	// A file conflict is refused before anything is written.
	r.addPackage(t, `{"Name":"clash","Version":"1","Architecture":"any","Type":"Binary"}`, map[string]string{"data/usr/share/tool/v": "mine"})
	srv.Cmd.Process.Signal(sighup)
	waitFor(t, "clash in the index", func() bool {
		ok(t, h.run, "sync", nil, nil, nil)
		final, _ := call(t, h.run, "info", []string{"clash"}, nil)
		return final.Type == wire.ReplyResult
	})
	if e := fails(t, h.run, "install", []string{"clash"}, nil); !strings.Contains(e, "usr/share/tool/v") {
		t.Fatalf("conflict: %q", e)
	}
	if b, _ := os.ReadFile(filepath.Join(h.prefix, "usr/share/tool/v")); string(b) != "2" {
		t.Fatalf("tool file after a refused conflict: %q", b)
	}
}

// One client asking question after question as fast as it gets answers
// (a script, a configuration agent) is never refused: an answered request
// frees its slot at once, whatever its actor still does afterwards. The
// actors linger a minute here (20 ms in service), so that more questions
// than the 16 a uid may have in flight are asked while they are all there.
func TestQuestionsInARowAreAnswered(t *testing.T) {
	r := newRepository(t)
	srv := startServer(t, r)
	h := newHost(t)
	startClient(t, h, srv.url, r.pubPath, "--test-linger", "1m")
	waitIndex(t, h.run, 3)
	for i := range 40 {
		final, _, err := callErr(context.Background(), h.run, "info", []string{"hello"}, nil, 30*time.Second)
		if err != nil || final.Type != wire.ReplyResult {
			t.Fatalf("question %d: %v %s", i+1, err, final.Error)
		}
	}
}
