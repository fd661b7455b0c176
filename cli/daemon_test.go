package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"tpm/fifo"
	"tpm/messages/wire"
)

// fakeDaemon answers requests on real FIFOs in a run directory, as tpmd
// does, with scripted replies per verb; it records the requests.
type fakeDaemon struct {
	run     string
	answers map[string][]*wire.Reply // by verb; the id is filled in

	mu       sync.Mutex
	requests []wire.Request
}

func startFakeDaemon(t *testing.T, answers map[string][]*wire.Reply) *fakeDaemon {
	t.Helper()
	d := &fakeDaemon{run: t.TempDir(), answers: answers}
	spool, err := fifo.MakeSpool(d.run)
	if err != nil {
		t.Fatal(err)
	}
	for _, admin := range []bool{false, true} {
		l, err := fifo.Listen(fifo.Path(d.run, admin), 0o622, -1)
		if err != nil {
			t.Fatal(err)
		}
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			d.serve(t, l, spool)
		}()
		t.Cleanup(func() {
			l.Close()
			<-stopped
		})
	}
	return d
}

func (d *fakeDaemon) serve(t *testing.T, l *fifo.Listener, spool string) {
	for {
		tokens, _, err := l.Next()
		if errors.Is(err, os.ErrClosed) {
			return
		}
		if err != nil {
			t.Errorf("fake daemon: %v", err)
			return
		}
		for _, tok := range tokens {
			d.answer(t, spool, tok)
		}
	}
}

func (d *fakeDaemon) answer(t *testing.T, spool, token string) {
	in, err := fifo.Accept(spool, token, wire.MaxRequest, 5*time.Second)
	if err != nil {
		t.Errorf("fake daemon: %v", err)
		return
	}
	w := in.Reply
	var req wire.Request
	if err := json.Unmarshal(in.Request, &req); err != nil {
		t.Errorf("fake daemon: %v", err)
		return
	}
	req.ID = token
	d.mu.Lock()
	d.requests = append(d.requests, req)
	d.mu.Unlock()
	replies := d.answers[req.Verb]
	if replies == nil {
		replies = []*wire.Reply{wire.Failure("no answer scripted for " + req.Verb)}
	}
	for _, r := range replies {
		out := *r
		out.ID = req.ID
		b, _ := json.Marshal(&out)
		if err := w.WriteLine(b); err != nil {
			t.Errorf("fake daemon: %v", err)
		}
	}
	w.Close()
}

// got is the requests so far.
func (d *fakeDaemon) got() []wire.Request {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]wire.Request(nil), d.requests...)
}

func (d *fakeDaemon) verbs() string {
	var out []string
	for _, r := range d.got() {
		out = append(out, r.Verb)
	}
	return strings.Join(out, " ")
}

// mustItems is a streamed answer: the items in one part, and the end.
func mustItems(t *testing.T, items any) []*wire.Reply {
	t.Helper()
	b, err := json.Marshal(items)
	if err != nil {
		t.Fatal(err)
	}
	return []*wire.Reply{{Type: wire.ReplyItems, Data: b}, {Type: wire.ReplyResult}}
}

func mustResult(t *testing.T, data any) *wire.Reply {
	t.Helper()
	r, err := wire.Result(data)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// runTPM runs tpm in-process with no terminal and empty input, guarded
// (GuardEnv) from the system's own directories.
func runTPM(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	getenv := func(name string) string {
		if name == GuardEnv {
			return "1"
		}
		return ""
	}
	code = Main(ctx, args, Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut, Getenv: getenv})
	return code, out.String(), errOut.String()
}

// installAnswers is what tpmd says to tpm install hello: its plan (one
// package it needs), then the transaction's stream.
func installAnswers(t *testing.T) map[string][]*wire.Reply {
	plan := []wire.PlanItem{
		{Action: "install", Name: "greet-data", Version: "1.0-1", Size: 2048},
		{Action: "install", Name: "hello", Version: "2.0-1", Requested: true, Size: 4096},
	}
	greet := wire.OpResult{Action: "install", Name: "greet-data", Version: "1.0-1", Warnings: []string{}}
	hello := wire.OpResult{Action: "install", Name: "hello", Version: "2.0-1", Warnings: []string{"postinstall of hello 2.0-1 failed (exit status 1)"}}
	return map[string][]*wire.Reply{
		wire.VerbPlan: {
			{Type: wire.ReplyPlan, Plan: plan},
			mustResult(t, wire.PlanResult{Plan: plan}),
		},
		wire.VerbInstall: {
			{Type: wire.ReplyPlan, Plan: plan},
			{Type: wire.ReplyProgress, Progress: &wire.Progress{Package: "greet-data", Stage: wire.StageDownload, Total: 2048}},
			{Type: wire.ReplyProgress, Progress: &wire.Progress{Package: "greet-data", Stage: wire.StageVerify, Bytes: 2048, Total: 2048, Peers: 2}},
			{Type: wire.ReplyProgress, Progress: &wire.Progress{Package: "greet-data", Stage: wire.StageInstall, Bytes: 2048, Total: 2048}},
			{Type: wire.ReplyDone, Done: &greet},
			{Type: wire.ReplyOutput, Output: &wire.Output{Package: "hello", Step: "configure", Line: "$ ./configure"}},
			{Type: wire.ReplyOutput, Output: &wire.Output{Package: "hello", Step: "configure", Line: "checking for cc"}},
			{Type: wire.ReplyOutput, Output: &wire.Output{Package: "hello", Step: "done", Line: "built hello"}},
			{Type: wire.ReplyOutput, Output: &wire.Output{Package: "hello", Step: "postinstall", Line: "hi"}},
			{Type: wire.ReplyDone, Done: &hello},
			mustResult(t, []wire.OpResult{greet, hello}),
		},
	}
}

func TestDaemonInstallText(t *testing.T) {
	d := startFakeDaemon(t, installAnswers(t))
	code, out, errOut := runTPM(t, "--run-dir", d.run, "install", "-y", "hello")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := []string{
		"This will:",
		"  install greet-data 1.0-1  2.0 KiB  (needed)",
		"  install hello 2.0-1       4.0 KiB",
		"  2 package(s), 6.0 KiB to download",
		"downloading greet-data (2.0 KiB)",
		"downloaded greet-data from 2 peer(s)",
		"installing greet-data",
		"installed greet-data 1.0-1",
		"building hello: configure (tpm install --verbose shows its output)",
		"hello: built hello",
		"hello: postinstall: hi",
		"installed hello 2.0-1",
	}
	if got := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("stdout:\n%s\nwant:\n%s", out, strings.Join(want, "\n"))
	}
	if errOut != "tpm: warning: postinstall of hello 2.0-1 failed (exit status 1) (the package is in place)\n" {
		t.Fatalf("stderr: %q", errOut)
	}
	if v := d.verbs(); v != "plan install" {
		t.Fatalf("requests: %v", v)
	}
	req := d.got()[1]
	if req.Expect["hello"] != "2.0-1" || req.Expect["greet-data"] != "1.0-1" || req.Options.Upgrade {
		t.Fatalf("install request: %+v", req)
	}
	if req.Prefix != "" {
		t.Fatalf("prefix sent without --prefix: %q", req.Prefix)
	}
}

func TestDaemonInstallVerbose(t *testing.T) {
	d := startFakeDaemon(t, installAnswers(t))
	_, out, _ := runTPM(t, "--run-dir", d.run, "install", "-y", "--verbose", "hello")
	for _, line := range []string{"hello: configure: $ ./configure", "hello: configure: checking for cc", "hello: done: built hello"} {
		if !strings.Contains(out, "\n"+line+"\n") {
			t.Fatalf("no %q in:\n%s", line, out)
		}
	}
}

func TestDaemonInstallNotConfirmed(t *testing.T) {
	d := startFakeDaemon(t, installAnswers(t))
	code, _, errOut := runTPM(t, "--run-dir", d.run, "install", "hello")
	if code != 1 || !strings.Contains(errOut, "nothing done: not confirmed") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if v := d.verbs(); v != "plan" {
		t.Fatalf("requests: %v", v)
	}
}

// jsonLines decodes tpm --json output, failing on anything that is not a
// Reply a line.
func jsonLines(t *testing.T, out string) []wire.Reply {
	t.Helper()
	var rs []wire.Reply
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		var r wire.Reply
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if r.ID != "" || strings.Contains(line, `"id"`) {
			t.Fatalf("line with an id: %s", line)
		}
		rs = append(rs, r)
	}
	return rs
}

func types(rs []wire.Reply) string {
	var ts []string
	for _, r := range rs {
		ts = append(ts, r.Type)
	}
	return strings.Join(ts, " ")
}

func TestDaemonInstallJSON(t *testing.T) {
	d := startFakeDaemon(t, installAnswers(t))
	code, out, errOut := runTPM(t, "--run-dir", d.run, "--json", "install", "-y", "hello")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	// The install request's stream, as the daemon sent it; the plan
	// request before it is tpm's business.
	rs := jsonLines(t, out)
	if got := types(rs); got != "plan progress progress progress done output output output output done result" {
		t.Fatalf("types: %s\n%s", got, out)
	}
	var results []wire.OpResult
	if err := json.Unmarshal(rs[len(rs)-1].Data, &results); err != nil || len(results) != 2 {
		t.Fatalf("result: %s %v", rs[len(rs)-1].Data, err)
	}
}

func TestDaemonErrorJSONOnce(t *testing.T) {
	d := startFakeDaemon(t, map[string][]*wire.Reply{
		wire.VerbInfo: {wire.Failure("no package named nope in the index (run tpm sync?)")},
	})
	code, out, errOut := runTPM(t, "--run-dir", d.run, "--json", "info", "nope")
	if code != 1 || errOut != "tpm: no package named nope in the index (run tpm sync?)\n" {
		t.Fatalf("exit %d: %q", code, errOut)
	}
	if out != `{"type":"error","error":"no package named nope in the index (run tpm sync?)"}`+"\n" {
		t.Fatalf("stdout: %q", out)
	}
}

func TestNoDaemonJSON(t *testing.T) {
	run := t.TempDir()
	code, out, errOut := runTPM(t, "--run-dir", run, "--json", "list")
	if code != 1 || !strings.HasPrefix(errOut, "tpm: tpmd is not running (nothing reads "+run+"/query.fifo)") || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("exit %d: %q", code, errOut)
	}
	if rs := jsonLines(t, out); types(rs) != "error" {
		t.Fatalf("stdout: %q", out)
	}
}

func TestDaemonQueriesText(t *testing.T) {
	installed := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	d := startFakeDaemon(t, map[string][]*wire.Reply{
		wire.VerbList:   mustItems(t, []wire.InstalledPackage{{Name: "hello", Version: "2.0-1", Reason: "explicit"}, {Name: "greet-data", Version: "1.0-1", Reason: "dependency"}}),
		wire.VerbSearch: {mustResult(t, []wire.SearchResult{{Name: "hello", Version: "2.0-1", Description: "says hello", Installed: "2.0-1"}})},
		wire.VerbVerify: mustItems(t, []wire.Problem{{Package: "hello", Path: "/usr/bin/hello", Kind: "missing", Detail: "recorded as file"}}),
		wire.VerbSync:   {mustResult(t, wire.SyncResult{Generation: 3, Changed: true})},
		wire.VerbInfo: {mustResult(t, wire.PackageInfo{Name: "hello", Version: "2.0-1", Dependencies: []string{"libgreet >= 1.0"},
			Installed: &wire.Installed{Version: "2.0-1", Reason: "explicit", InstalledAt: installed}})},
		wire.VerbRemove: {
			{Type: wire.ReplyDone, Done: &wire.OpResult{Action: "remove", Name: "hello", Version: "2.0-1"}},
			mustResult(t, []wire.OpResult{{Action: "remove", Name: "hello", Version: "2.0-1"}, {Action: "remove", Name: "greet-data", Version: "1.0-1"}}),
		},
	})
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"list"}, 0, "hello       2.0-1  explicit\ngreet-data  1.0-1  dependency\n"},
		{[]string{"search", "hel"}, 0, "hello  2.0-1  says hello  [installed 2.0-1]\n"},
		{[]string{"verify"}, 1, "hello: missing /usr/bin/hello (recorded as file)\n"},
		{[]string{"sync"}, 0, "index updated to generation 3\n"},
		// A result the stream did not announce is shown at the end.
		{[]string{"remove", "hello"}, 0, "removed hello 2.0-1\nremoved greet-data 1.0-1\n"},
	} {
		code, out, errOut := runTPM(t, append([]string{"--run-dir", d.run}, tc.args...)...)
		if code != tc.code || out != tc.out {
			t.Errorf("%v: exit %d, stdout:\n%s\nstderr: %s", tc.args, code, out, errOut)
		}
	}
	_, out, _ := runTPM(t, "--run-dir", d.run, "info", "hello")
	if !strings.Contains(out, "Depends on    libgreet >= 1.0\n") || !strings.Contains(out, "Installed     2.0-1 (explicit, ") {
		t.Errorf("info:\n%s", out)
	}
	reqs := d.got()
	if remove := reqs[len(reqs)-2]; remove.Verb != wire.VerbRemove || len(remove.Args) != 1 || remove.Args[0] != "hello" {
		t.Errorf("remove request: %+v", remove)
	}
}

func TestDaemonPrefix(t *testing.T) {
	d := startFakeDaemon(t, map[string][]*wire.Reply{wire.VerbList: mustItems(t, []wire.InstalledPackage{})})
	dir := t.TempDir()
	if code, _, errOut := runTPM(t, "--run-dir", d.run, "--prefix", dir+"/./x/..", "list"); code != 0 {
		t.Fatal(errOut)
	}
	if p := d.got()[0].Prefix; p != dir {
		t.Fatalf("prefix %q, want %q", p, dir)
	}
}
