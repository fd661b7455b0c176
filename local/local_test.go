package local

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"tpm/fifo"
	"tpm/messages/wire"
)

// The daemon's side here is the real fifo package (Listen, Accept), as
// tpmd uses it; only what it answers is scripted.

// daemonFIFO is a request FIFO of a scripted daemon, with its spool.
type daemonFIFO struct {
	*fifo.Listener
	spool string
}

// listen makes the request FIFO of run for admin (or query) requests, and
// the spool unless it is there, as tpmd does.
func listen(t *testing.T, run string, admin bool) *daemonFIFO {
	t.Helper()
	spool := filepath.Join(run, fifo.SpoolDir)
	if _, err := os.Stat(spool); err != nil {
		if _, err := fifo.MakeSpool(run); err != nil {
			t.Fatal(err)
		}
	}
	l, err := fifo.Listen(fifo.Path(run, admin), 0o622, -1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return &daemonFIFO{l, spool}
}

// accept reads one request from l and opens its reply FIFO.
func accept(l *daemonFIFO) (*wire.Request, *fifo.ReplyWriter, error) {
	var tokens []string
	for len(tokens) == 0 {
		var err error
		if tokens, _, err = l.Next(); err != nil {
			return nil, nil, err
		}
	}
	in, err := fifo.Accept(l.spool, tokens[0], wire.MaxRequest, 5*time.Second)
	if err != nil {
		return nil, nil, err
	}
	var req wire.Request
	if err := json.Unmarshal(in.Request, &req); err != nil {
		return nil, nil, err
	}
	req.ID, req.UID = in.Token, in.UID
	return &req, in.Reply, nil
}

// daemon answers one request on l with what answer writes, in a goroutine;
// the returned channel gives the request once it is answered.
func daemon(t *testing.T, l *daemonFIFO, answer func(req *wire.Request, w *fifo.ReplyWriter) error) <-chan *wire.Request {
	t.Helper()
	got := make(chan *wire.Request, 1)
	go func() {
		defer close(got)
		req, w, err := accept(l)
		if err != nil {
			t.Errorf("daemon: %v", err)
			return
		}
		defer w.Close()
		if err := answer(req, w); err != nil {
			t.Errorf("daemon: %v", err)
		}
		got <- req
	}()
	return got
}

func send(w *fifo.ReplyWriter, replies ...*wire.Reply) error {
	for _, r := range replies {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		if err := w.WriteLine(b); err != nil {
			return err
		}
	}
	return nil
}

func result(t *testing.T, id string, data any) *wire.Reply {
	t.Helper()
	r, err := wire.Result(data)
	if err != nil {
		t.Fatal(err)
	}
	r.ID = id
	return r
}

// testContext bounds a test, so that a bug shows as a failure, not a hang.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newClient(t *testing.T) *Client {
	return &Client{RunDir: t.TempDir()}
}

func TestNoDaemon(t *testing.T) {
	ctx := testContext(t)
	c := newClient(t)
	query, admin := fifo.Path(c.RunDir, false), fifo.Path(c.RunDir, true)
	_, err := c.Status(ctx)
	want := "tpmd is not running (nothing reads " + query + "): start it (systemctl start tpmd, or tpmd client --server URL --trusted-key FILE), or use tpm --offline"
	if err == nil || err.Error() != want || !errors.Is(err, fifo.ErrNoDaemon) {
		t.Fatalf("no run dir: %v", err)
	}
	if _, err := c.Sync(ctx); err == nil || !strings.Contains(err.Error(), "nothing reads "+admin) {
		t.Fatalf("admin verb: %v", err)
	}
	// A FIFO and spool left behind by a daemon that is gone are the same
	// as none.
	if err := unix.Mkfifo(query, 0o622); err != nil {
		t.Fatal(err)
	}
	spool, err := fifo.MakeSpool(c.RunDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.List(ctx); err == nil || err.Error() != want || !errors.Is(err, fifo.ErrNoDaemon) {
		t.Fatalf("FIFO nobody reads: %v", err)
	}
	// The request's directory does not outlive the call.
	if ents, _ := os.ReadDir(spool); len(ents) != 0 {
		t.Fatalf("left in the spool: %v", ents)
	}
}

func TestPermissionDenied(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root may write any FIFO")
	}
	ctx := testContext(t)
	c := newClient(t)
	listen(t, c.RunDir, false)
	listen(t, c.RunDir, true)
	path := fifo.Path(c.RunDir, true)
	if err := os.Chmod(path, 0o400); err != nil {
		t.Fatal(err)
	}
	_, err := c.Sync(ctx)
	if err == nil || err.Error() != "you may not ask tpmd to change this host ("+path+"): run tpm as root" {
		t.Fatalf("admin FIFO not writable: %v", err)
	}
}

func TestSkipsOtherIDsAndStreams(t *testing.T) {
	ctx := testContext(t)
	c := newClient(t)
	c.Prefix = "/opt/p"
	l := listen(t, c.RunDir, false)
	got := daemon(t, l, func(req *wire.Request, w *fifo.ReplyWriter) error {
		// Nobody but the daemon may write our FIFO, but a line for another
		// request must still not end (or feed) our call.
		return send(w,
			&wire.Reply{ID: "someone-else", Type: wire.ReplyLog, Text: "not yours"},
			&wire.Reply{ID: req.ID, Type: wire.ReplyLog, Text: "yours"},
			result(t, "someone-else", []wire.InstalledPackage{{Name: "theirs"}}),
			&wire.Reply{ID: "someone-else", Type: wire.ReplyError, Error: "not yours either"},
			result(t, req.ID, []wire.InstalledPackage{{Name: "ours", Version: "1.0"}}))
	})
	var logs []string
	final, err := c.Call(ctx, wire.Request{Verb: wire.VerbList}, func(r *wire.Reply) error {
		logs = append(logs, r.Text)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(logs) != 1 || logs[0] != "yours" {
		t.Fatalf("stream: %q", logs)
	}
	var list []wire.InstalledPackage
	if err := json.Unmarshal(final.Data, &list); err != nil || len(list) != 1 || list[0].Name != "ours" {
		t.Fatalf("result: %s %v", final.Data, err)
	}
	req := <-got
	if req.V != wire.ProtocolVersion || req.Prefix != "/opt/p" || req.UID != os.Getuid() {
		t.Fatalf("request: %+v", req)
	}
}

func TestFillsOnlyZeroFields(t *testing.T) {
	ctx := testContext(t)
	c := newClient(t)
	c.Prefix = "/client/default"
	l := listen(t, c.RunDir, false)
	got := daemon(t, l, func(req *wire.Request, w *fifo.ReplyWriter) error {
		return send(w, result(t, req.ID, wire.Status{PID: 7}))
	})
	final, err := c.Call(ctx, wire.Request{V: 99, Verb: wire.VerbStatus, Prefix: "/own"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	req := <-got
	if final.ID != req.ID {
		t.Fatalf("final: %+v", final)
	}
	if req.V != 99 || req.Prefix != "/own" {
		t.Fatalf("request: %+v", req)
	}
}

func TestErrorReplyIsDaemonError(t *testing.T) {
	ctx := testContext(t)
	c := newClient(t)
	l := listen(t, c.RunDir, false)
	daemon(t, l, func(req *wire.Request, w *fifo.ReplyWriter) error {
		e := wire.Failure("no package named nope in the index (run tpm sync?)")
		e.ID = req.ID
		return send(w, e)
	})
	_, err := c.Info(ctx, "nope")
	var de *DaemonError
	if !errors.As(err, &de) || de.Verb != wire.VerbInfo || err.Error() != "no package named nope in the index (run tpm sync?)" {
		t.Fatalf("got %T %v", err, err)
	}
}

func TestDaemonStopsReading(t *testing.T) {
	ctx := testContext(t)
	c := newClient(t)
	l := listen(t, c.RunDir, false)
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		if _, w, err := accept(l); err != nil {
			t.Errorf("daemon: %v", err)
		} else {
			w.Close()
		}
		// The daemon dies without an answer: its FIFO goes with it.
		l.Close()
	}()
	start := time.Now()
	_, err := c.Verify(ctx, nil)
	<-accepted
	if !errors.Is(err, ErrStopped) || err.Error() != "tpmd stopped while answering; start it again and check with tpm status" {
		t.Fatalf("got %v after %v", err, time.Since(start))
	}
}

func TestBadReplyLines(t *testing.T) {
	for _, tc := range []struct {
		name, line, want string
	}{
		{"not JSON", "garbage\x00\xff", "tpmd sent a line that is not a reply ("},
		{"too long", `{"type":"log","text":"` + strings.Repeat("x", 1000) + `"}`, "tpmd sent a reply line longer than 100 bytes; are tpm and tpmd from the same release?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			c := newClient(t)
			c.MaxReply = 100
			l := listen(t, c.RunDir, false)
			daemon(t, l, func(req *wire.Request, w *fifo.ReplyWriter) error {
				return w.WriteLine([]byte(tc.line))
			})
			_, err := c.Status(ctx)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got %v", err)
			}
		})
	}
}

func TestEndlessLineFailsAtTheLimit(t *testing.T) {
	ctx := testContext(t)
	c := newClient(t)
	c.MaxReply = 100
	l := listen(t, c.RunDir, false)
	written := make(chan error, 1)
	go func() {
		req, w, err := accept(l)
		if err != nil {
			written <- err
			return
		}
		w.Close()
		// Far over the limit, and never ended by a newline (which
		// ReplyWriter would add): the call must fail at the limit rather
		// than wait for the end of the line.
		f, err := os.OpenFile(filepath.Join(l.spool, req.ID, fifo.ReplyFIFO), os.O_WRONLY, 0)
		if err != nil {
			written <- err
			return
		}
		defer f.Close()
		_, err = f.WriteString(`{"type":"log","text":"` + strings.Repeat("x", 5000))
		written <- err
	}()
	_, err := c.Status(ctx)
	if err == nil || err.Error() != "tpmd sent a reply line longer than 100 bytes; are tpm and tpmd from the same release?" || !errors.Is(err, fifo.ErrTooLong) {
		t.Fatalf("got %v", err)
	}
	if err := <-written; err != nil {
		t.Fatal(err)
	}
}

func TestInstallStreamsToAdmin(t *testing.T) {
	ctx := testContext(t)
	c := newClient(t)
	listen(t, c.RunDir, false) // the liveness check looks at query.fifo
	admin := listen(t, c.RunDir, true)
	done := wire.OpResult{Action: "install", Name: "hello", Version: "2.0-1", Warnings: []string{}}
	got := daemon(t, admin, func(req *wire.Request, w *fifo.ReplyWriter) error {
		return send(w,
			&wire.Reply{ID: req.ID, Type: wire.ReplyPlan, Plan: []wire.PlanItem{{Action: "install", Name: "hello", Version: "2.0-1", Requested: true}}},
			&wire.Reply{ID: req.ID, Type: wire.ReplyProgress, Progress: &wire.Progress{Package: "hello", Stage: wire.StageDownload, Total: 10}},
			&wire.Reply{ID: req.ID, Type: wire.ReplyOutput, Output: &wire.Output{Package: "hello", Step: "postinstall", Line: "hi"}},
			&wire.Reply{ID: req.ID, Type: wire.ReplyDone, Done: &done},
			result(t, req.ID, []wire.OpResult{done}))
	})
	var types []string
	results, err := c.Install(ctx, []string{"hello"}, wire.Options{Reinstall: true}, map[string]string{"hello": "2.0-1"}, func(r *wire.Reply) error {
		types = append(types, r.Type)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(types, " ") != "plan progress output done" {
		t.Fatalf("stream: %v", types)
	}
	if len(results) != 1 || results[0].Name != "hello" || results[0].Version != "2.0-1" {
		t.Fatalf("results: %+v", results)
	}
	req := <-got
	if req.Verb != wire.VerbInstall || !req.Options.Reinstall || req.Expect["hello"] != "2.0-1" {
		t.Fatalf("request: %+v", req)
	}
}

func TestEachErrorStopsTheCall(t *testing.T) {
	ctx := testContext(t)
	c := newClient(t)
	listen(t, c.RunDir, false)
	admin := listen(t, c.RunDir, true)
	daemon(t, admin, func(req *wire.Request, w *fifo.ReplyWriter) error {
		return send(w, &wire.Reply{ID: req.ID, Type: wire.ReplyLog, Text: "waiting for another transaction to finish"})
	})
	stop := errors.New("not confirmed")
	_, err := c.Remove(ctx, []string{"x"}, wire.Options{Cascade: true}, nil, func(*wire.Reply) error { return stop })
	if !errors.Is(err, stop) {
		t.Fatalf("got %v", err)
	}
}

func TestResultOfAnotherShape(t *testing.T) {
	ctx := testContext(t)
	c := newClient(t)
	l := listen(t, c.RunDir, false)
	daemon(t, l, func(req *wire.Request, w *fifo.ReplyWriter) error {
		return send(w, result(t, req.ID, "not a list"))
	})
	_, err := c.Search(ctx, "hel")
	if err == nil || !strings.HasPrefix(err.Error(), "tpmd's answer to search is not what this tpm expects") {
		t.Fatalf("got %v", err)
	}
}

func TestCancelWhileWaiting(t *testing.T) {
	c := newClient(t)
	l := listen(t, c.RunDir, false)
	ctx, cancel := context.WithCancel(testContext(t))
	go func() {
		// The request arrived: the user presses Ctrl-C.
		if _, w, err := accept(l); err != nil {
			t.Errorf("daemon: %v", err)
		} else {
			w.Close()
		}
		cancel()
	}()
	_, err := c.Status(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
}

func TestRequestTooLong(t *testing.T) {
	c := newClient(t)
	names := []string{strings.Repeat("n", wire.MaxRequest)}
	_, err := c.Files(testContext(t), names)
	if err == nil || !strings.Contains(err.Error(), "name fewer packages at once") {
		t.Fatalf("got %v", err)
	}
	if _, err := os.Stat(filepath.Join(c.RunDir, fifo.SpoolDir)); !os.IsNotExist(err) {
		t.Fatalf("a request too long reached the spool: %v", err)
	}
}

// TestSilentDaemon: a daemon that takes a request and never answers
// leaves the call after Silence, with one line saying so.
func TestSilentDaemon(t *testing.T) {
	c := newClient(t)
	c.Silence = 300 * time.Millisecond
	l := listen(t, c.RunDir, false)
	daemon(t, l, func(req *wire.Request, w *fifo.ReplyWriter) error { return nil })
	_, err := c.Status(testContext(t))
	if !errors.Is(err, ErrSilent) || err.Error() != "tpmd did not answer within 300ms: is it stuck? see its log" {
		t.Fatalf("got %v", err)
	}
}

// TestAliveKeepsTheCall: a daemon that says it is alive more often than
// Silence keeps the call waiting; "alive" never reaches each.
func TestAliveKeepsTheCall(t *testing.T) {
	c := newClient(t)
	c.Silence = 400 * time.Millisecond
	l := listen(t, c.RunDir, false)
	daemon(t, l, func(req *wire.Request, w *fifo.ReplyWriter) error {
		for range 8 { // 800 ms in all: twice Silence
			time.Sleep(100 * time.Millisecond)
			if err := send(w, &wire.Reply{ID: req.ID, Type: wire.ReplyAlive}); err != nil {
				return err
			}
		}
		return send(w, &wire.Reply{ID: req.ID, Type: wire.ReplyItems, Data: json.RawMessage(`[{"name":"a"},{"name":"b"}]`)},
			&wire.Reply{ID: req.ID, Type: wire.ReplyItems, Data: json.RawMessage(`[{"name":"c"}]`)},
			&wire.Reply{ID: req.ID, Type: wire.ReplyResult})
	})
	list, err := c.List(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 || list[0].Name != "a" || list[2].Name != "c" {
		t.Fatalf("list gathered from parts: %+v", list)
	}
}
