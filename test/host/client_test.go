package host

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"tpm/messages/wire"
)

func TestInstallWithDependencies(t *testing.T) {
	r := newRepository(t)
	srv := startServer(t, r)
	h := newHost(t)
	d := startClient(t, h, srv.url, r.pubPath)
	waitIndex(t, h.run, 3)

	var found []wire.SearchResult
	ok(t, h.run, "search", []string{"greet"}, nil, &found) // names and descriptions
	if len(found) != 3 || found[0].Name != "greet-data" || found[1].Name != "hello" || found[2].Installed != "" {
		t.Fatalf("search greet: %+v", found)
	}
	var info wire.PackageInfo
	ok(t, h.run, "info", []string{"hello"}, nil, &info)
	if info.Version != "2.0-1" || info.Installed != nil || len(info.Dependencies) != 1 {
		t.Fatalf("info hello: %+v", info)
	}
	if e := fails(t, h.run, "info", []string{"nope"}, nil); e != "no package named nope in the index (run tpm sync?)" {
		t.Fatalf("info nope: %q", e)
	}

	var plan wire.PlanResult
	stream := ok(t, h.run, "plan", []string{"hello"}, nil, &plan)
	if len(stream) != 1 || stream[0].Type != wire.ReplyPlan || len(plan.Plan) != 3 {
		t.Fatalf("plan: %v %v", stream, plan)
	}
	if p := plan.Plan; p[0].Name != "greet-data" || p[1].Name != "libgreet" || p[2].Name != "hello" || !p[2].Requested || p[0].Requested {
		t.Fatalf("plan order: %+v", p)
	}
	expect := map[string]string{}
	for _, p := range plan.Plan {
		expect[p.Name] = p.Version
	}

	// A plan that no longer matches is refused.
	if e := fails(t, h.run, "install", []string{"hello"}, func(r *wire.Request) {
		r.Expect = map[string]string{"hello": "1.0"}
	}); !strings.Contains(e, "the index changed since the plan was shown") {
		t.Fatalf("stale expect: %q", e)
	}

	var results []result
	stream = ok(t, h.run, "install", []string{"hello"}, func(r *wire.Request) { r.Expect = expect }, &results)
	if len(results) != 3 || results[2].Name != "hello" || results[2].Action != "install" {
		t.Fatalf("install results: %+v", results)
	}
	var sawDone, sawOutput bool
	for _, s := range stream {
		if s.Type == wire.ReplyProgress && s.Progress.Stage == wire.StageDone && s.Progress.Package == "hello" {
			sawDone = true
		}
		if s.Type == wire.ReplyOutput && s.Output.Package == "hello" && s.Output.Step == "postinstall" {
			sawOutput = true
		}
	}
	if !sawDone || !sawOutput {
		t.Fatalf("stream lacks progress done or postinstall output: %+v", stream)
	}
	out, err := exec.Command(filepath.Join(h.prefix, "usr/bin/hello"), "test").CombinedOutput()
	if err != nil {
		t.Fatalf("hello: %v %s", err, out)
	}
	t.Logf("hello says: %s", out)

	l := list(t, h.run)
	if l["hello"].Reason != "explicit" || l["libgreet"].Reason != "dependency" || l["greet-data"].Reason != "dependency" || l["hello"].Prefix != h.prefix {
		t.Fatalf("list: %+v", l)
	}
	var files []wire.PackageFile
	ok(t, h.run, "files", []string{"hello"}, nil, &files)
	hello := filepath.Join(h.prefix, "usr/bin/hello")
	foundFile := false
	for _, f := range files {
		foundFile = foundFile || (f.Path == hello && f.Type == "file")
	}
	if !foundFile {
		t.Fatalf("files hello: %+v", files)
	}
	var owners []wire.Owner
	ok(t, h.run, "owns", []string{hello}, nil, &owners)
	if len(owners) != 1 || owners[0].Name != "hello" {
		t.Fatalf("owns: %+v", owners)
	}
	if e := fails(t, h.run, "owns", []string{filepath.Join(h.prefix, "nothing")}, nil); !strings.Contains(e, "not owned") {
		t.Fatalf("owns unowned: %q", e)
	}
	verifyClean(t, h.run)
	info = wire.PackageInfo{}
	ok(t, h.run, "info", []string{"hello"}, nil, &info)
	if info.Installed == nil || info.Installed.Version != "2.0-1" {
		t.Fatalf("info after install: %+v", info)
	}
	if s := getStatus(t, h.run); s.Seeding != 3 {
		t.Fatalf("status after install: %+v", s)
	}
	// Nothing to do the second time.
	ok(t, h.run, "install", []string{"hello"}, nil, &results)
	if len(results) != 0 {
		t.Fatalf("second install: %+v", results)
	}

	// Removal refuses to break dependents, and cascades when asked.
	if e := fails(t, h.run, "remove", []string{"greet-data"}, nil); !strings.Contains(e, "--cascade") || !strings.Contains(e, "libgreet") {
		t.Fatalf("remove without cascade: %q", e)
	}
	ok(t, h.run, "remove", []string{"greet-data"}, func(r *wire.Request) { r.Options = wire.Options{Cascade: true} }, &results)
	if len(results) != 3 {
		t.Fatalf("cascade: %+v", results)
	}
	if l := list(t, h.run); len(l) != 0 {
		t.Fatalf("list after remove: %v", l)
	}
	if _, err := os.Stat(hello); !os.IsNotExist(err) {
		t.Fatalf("hello still there: %v", err)
	}
	// The removed versions stay in the cache, for tpm undo, until clean.
	var cleaned []wire.Cleaned
	ok(t, h.run, "clean", nil, nil, &cleaned)
	if len(cleaned) != 3 {
		t.Fatalf("clean after removing everything: %+v", cleaned)
	}
	waitFor(t, "cache emptied", func() bool {
		ents, _ := os.ReadDir(h.cache)
		n := 0
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".tpkg") {
				n++
			}
		}
		return n == 0
	})
	if dt, _ := d.Stop(t); dt > 5e9 {
		t.Fatalf("stop took %v", dt)
	}
}

// SIGHUP (a reload by upstart or systemd) makes tpmd client fetch the index
// now; it ended the daemon before.
func TestSIGHUPSyncs(t *testing.T) {
	r := newRepository(t)
	srv := startServer(t, r)
	h := newHost(t)
	d := startClient(t, h, srv.url, r.pubPath)
	if err := d.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(d.Logs.String(), "SIGHUP: syncing the index"); time.Sleep(20 * time.Millisecond) {
		if done, err := d.Exited(); done {
			t.Fatalf("tpmd client ended on SIGHUP: %v\n%s", err, d.Logs)
		}
		if time.Now().After(deadline) {
			t.Fatalf("tpmd client did not take SIGHUP\n%s", d.Logs)
		}
	}
	if final, _ := call(t, h.run, "status", nil, nil); final.Type != wire.ReplyResult {
		t.Fatalf("status after SIGHUP: %+v", final)
	}
}
