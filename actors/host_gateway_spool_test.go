package actors

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"golang.org/x/sys/unix"

	"tpm/fifo"
	"tpm/messages"
	"tpm/messages/wire"
)

// fakeInstaller answers every request at once, except those of holdUID,
// which it only counts.
type fakeInstaller struct {
	holdUID int
	held    *atomic.Int64
}

func (f *fakeInstaller) Receive(ctx actor.Context) {
	if req, ok := ctx.Message().(*wire.Request); ok {
		if req.UID == f.holdUID {
			f.held.Add(1)
			return
		}
		ctx.Respond(&wire.Reply{Type: wire.ReplyResult, Data: json.RawMessage(`{}`)})
	}
}

// gatewayParent spawns a gateway and passes on its Ready.
type gatewayParent struct {
	make  func() actor.Actor
	ready chan error
}

func (p *gatewayParent) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		ctx.Spawn(actor.PropsFromProducer(p.make))
	case *messages.Ready:
		p.ready <- msg.Err
	}
}

// startGateway runs a gateway on run with a fake installer; it stops at
// the test's end, with every goroutine it started.
func startGateway(t *testing.T, run string, holdUID int, held *atomic.Int64, logs io.Writer, hooks gatewayHooks) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.MultiWriter(logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelInfo}))
	e := newEnv(log)
	sys := e.newSystem()
	inst := sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &fakeInstaller{holdUID: holdUID, held: held} }))
	p := &gatewayParent{ready: make(chan error, 1), make: func() actor.Actor {
		return &gatewayActor{env: e, runDir: run, adminGID: -1, installer: inst, syncer: inst, linger: linger, hooks: hooks}
	}}
	pid := sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return p }))
	t.Cleanup(func() {
		sys.Root.StopFuture(pid).Wait()
		sys.Root.StopFuture(inst).Wait()
		done := make(chan struct{})
		go func() { e.bg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("the gateway's goroutines did not stop")
		}
		sys.Shutdown()
	})
	select {
	case err := <-p.ready:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the gateway did not start")
	}
}

// ask sends a request as this process's uid and waits for its final reply.
func ask(t *testing.T, run string) (*fifo.Outgoing, wire.Reply) {
	t.Helper()
	out, err := fifo.NewOutgoing(filepath.Join(run, fifo.SpoolDir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	line, _ := json.Marshal(wire.Request{V: wire.ProtocolVersion, Verb: "info", Args: []string{"x"}})
	if err := out.Send(ctx, fifo.Path(run, false), line, -1); err != nil {
		t.Fatal(err)
	}
	for {
		b, err := out.ReadLine(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var r wire.Reply
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		if r.Final() {
			return out, r
		}
	}
}

// waitFor polls cond until it holds, failing the test after 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("still not so after 30 s: %s", what)
		}
	}
}

func mustT(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Start-up does not depend on what users left in the spool: with a
// symlink loop, a tree 5,000 deep and 5,000 request directories there, the
// gateway makes a fresh spool and answers while the old one is still
// there (its removal is held until the request is answered); the old one
// is removed afterwards without following a link out of it.
func TestGatewayStartSetsOldSpoolAside(t *testing.T) {
	run, out := t.TempDir(), t.TempDir()
	mustT(t, os.WriteFile(filepath.Join(out, "canary"), []byte("alive"), 0o644))
	spool := filepath.Join(run, fifo.SpoolDir)
	mustT(t, os.Mkdir(spool, 0o733))
	loop := filepath.Join(spool, "tpm-loop")
	mustT(t, os.Mkdir(loop, 0o700))
	mustT(t, os.Symlink("a", filepath.Join(loop, "b")))
	mustT(t, os.Symlink("b", filepath.Join(loop, "a")))
	mustT(t, os.Symlink(".", filepath.Join(loop, "self")))
	mustT(t, os.Symlink(out, filepath.Join(loop, "out")))
	mustT(t, os.Symlink(filepath.Join(out, "canary"), filepath.Join(spool, "tpm-canary")))
	mustT(t, os.Mkdir(filepath.Join(spool, "tpm-deep"), 0o700))
	fd, err := unix.Open(filepath.Join(spool, "tpm-deep"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
	mustT(t, err)
	for i := 0; i < 5000; i++ {
		mustT(t, unix.Mkdirat(fd, "d", 0o700))
		next, err := unix.Openat(fd, "d", unix.O_RDONLY|unix.O_DIRECTORY, 0)
		unix.Close(fd)
		mustT(t, err)
		fd = next
	}
	unix.Close(fd)
	for i := 0; i < 5000; i++ {
		d := filepath.Join(spool, fmt.Sprintf("tpm-%032d", i))
		mustT(t, os.Mkdir(d, 0o700))
		mustT(t, unix.Mkfifo(filepath.Join(d, fifo.ReplyFIFO), 0o600))
	}

	release := make(chan struct{})
	hold := func(ctx context.Context) {
		select {
		case <-release:
		case <-ctx.Done():
		}
	}
	logs := &syncBuffer{}
	var held atomic.Int64
	startGateway(t, run, -1, &held, logs, gatewayHooks{oldSpools: hold})

	entries, err := os.ReadDir(spool)
	if err != nil || len(entries) != 0 {
		t.Fatalf("the spool is not fresh: %d entries, %v", len(entries), err)
	}
	if _, r := ask(t, run); r.Type != wire.ReplyResult {
		t.Fatalf("reply %+v", r)
	}
	old, _ := filepath.Glob(filepath.Join(run, ".spool-old-*"))
	if len(old) != 1 {
		t.Fatalf("the old spool was not set aside, or was removed before serving: %v", old)
	}
	close(release)
	waitFor(t, "the old spool is removed or given up on with a log line", func() bool {
		old, _ := filepath.Glob(filepath.Join(run, ".spool-old-*"))
		return len(old) == 0 || strings.Contains(logs.String(), "old spool")
	})
	if old, _ := filepath.Glob(filepath.Join(run, ".spool-old-*")); len(old) != 0 {
		t.Logf("given up on: %v", old)
	}
	if b, err := os.ReadFile(filepath.Join(out, "canary")); err != nil || string(b) != "alive" {
		t.Fatalf("the canary outside the spool was reached: %v", err)
	}
}

// One uid's request directories are bounded: beyond maxDirsUID its tokens
// are refused with a busy reply (and a log line) while another uid's
// request is answered; refused and answered directories are removed.
func TestGatewayBoundsDirectoriesPerUID(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root, to make directories of another uid")
	}
	const uid = 54321
	run := t.TempDir()
	release := make(chan struct{})
	hold := func(ctx context.Context, _ string) {
		select {
		case <-release:
		case <-ctx.Done():
		}
	}
	logs := &syncBuffer{}
	var held atomic.Int64
	startGateway(t, run, uid, &held, logs, gatewayHooks{remove: hold})
	spool := filepath.Join(run, fifo.SpoolDir)

	const n = maxDirsUID + 20
	tokens, readers := make([]string, n), make([]int, n)
	req, _ := json.Marshal(wire.Request{V: wire.ProtocolVersion, Verb: "info", Args: []string{"x"}})
	var line []byte
	for i := range tokens {
		tokens[i] = fmt.Sprintf("tpm-%032x", 0xabc000+i)
		d := filepath.Join(spool, tokens[i])
		mustT(t, os.Mkdir(d, 0o700))
		mustT(t, unix.Mkfifo(filepath.Join(d, fifo.ReplyFIFO), 0o600))
		mustT(t, os.WriteFile(filepath.Join(d, fifo.RequestFile), req, 0o600))
		for _, p := range []string{fifo.ReplyFIFO, fifo.RequestFile, ""} {
			mustT(t, os.Lchown(filepath.Join(d, p), uid, uid))
		}
		fd, err := unix.Open(filepath.Join(d, fifo.ReplyFIFO), unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		mustT(t, err)
		readers[i] = fd
		t.Cleanup(func() { unix.Close(fd) })
		line = append(line, tokens[i]+"\n"...)
	}
	if len(line) >= fifo.PipeBuf {
		t.Fatalf("%d bytes of tokens: more than one write", len(line))
	}
	q, err := os.OpenFile(fifo.Path(run, false), os.O_WRONLY, 0)
	mustT(t, err)
	_, err = q.Write(line)
	q.Close()
	mustT(t, err)

	// Another uid (root) is answered; its token came after the others, on
	// the same FIFO, so they were all taken or refused before it.
	ours, r := ask(t, run)
	if r.Type != wire.ReplyResult {
		t.Fatalf("another uid's request: %+v", r)
	}
	answered, overDirs := 0, 0
	buf := make([]byte, 4096)
	for i, fd := range readers {
		k, err := unix.Read(fd, buf)
		switch {
		case k > 0:
			answered++
			if !strings.Contains(string(buf[:k]), "busy") {
				t.Errorf("request %d: %s", i, buf[:k])
			}
			if strings.Contains(string(buf[:k]), "request directories in the spool") {
				overDirs++
			}
		case errors.Is(err, unix.EAGAIN):
		default:
			t.Fatalf("request %d: %d, %v", i, k, err)
		}
	}
	// 16 in flight, 48 refused as busy with their directories counted, and
	// the 20 past the bound of 64 refused for their directories: each CLI
	// is told.
	if taken := int(held.Load()); taken != maxInFlightUID || taken+answered != n || overDirs != n-maxDirsUID {
		t.Fatalf("uid %d: %d requests taken, %d refused as busy, %d of them for their directories; want %d taken, %d refused, %d for their directories",
			uid, taken, answered, overDirs, maxInFlightUID, n-maxInFlightUID, n-maxDirsUID)
	}
	if !strings.Contains(logs.String(), "request directories in the spool") {
		t.Fatal("no log line says why tokens were refused")
	}

	close(release)
	ourDir := filepath.Join(spool, ours.Token())
	waitFor(t, "the answered and refused requests' directories are removed", func() bool {
		if _, err := os.Lstat(ourDir); !os.IsNotExist(err) {
			return false
		}
		left := 0
		for _, tok := range tokens {
			if _, err := os.Lstat(filepath.Join(spool, tok)); err == nil {
				left++
			}
		}
		return left == maxInFlightUID // those in flight stay
	})
}

// A user who makes thousands of directories in the spool and never sends
// their tokens leaves none of them for long: they are gone within the
// grace and a sweep (2 s and half a second here, a minute and 15 s in a
// daemon), and root's request is answered while they are being made and
// removed.
func TestGatewaySweepsDirectoriesWithoutToken(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root, to make directories as another uid")
	}
	for _, tool := range []string{"seq", "xargs", "mkdir"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	const uid, n = 54321, 10_000
	run := t.TempDir()
	// The flooding user must reach the spool, as it reaches /run/tpm.
	mustT(t, os.Chmod(filepath.Dir(run), 0o711))
	mustT(t, os.Chmod(run, 0o711))
	logs := &syncBuffer{}
	var held atomic.Int64
	startGateway(t, run, -1, &held, logs, gatewayHooks{grace: 2 * time.Second})
	spool := filepath.Join(run, fifo.SpoolDir)

	// A real process of that uid: mkdir, many names at a time.
	flood := exec.Command("sh", "-c", fmt.Sprintf("seq -f 'tpm-flood%%025.0f' 1 %d | xargs mkdir --", n))
	flood.Dir = spool
	flood.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	var floodOut bytes.Buffer
	flood.Stdout, flood.Stderr = &floodOut, &floodOut
	mustT(t, flood.Start())
	floodDone := make(chan error, 1)
	go func() { floodDone <- flood.Wait() }()
	t.Cleanup(func() { flood.Process.Kill(); <-floodDone })

	theirs := func() (int, error) {
		d, err := os.Open(spool)
		if err != nil {
			return 0, err
		}
		defer d.Close()
		entries, err := d.ReadDir(-1)
		k := 0
		for _, e := range entries {
			if info, err := e.Info(); err == nil && info.Sys().(*syscall.Stat_t).Uid == uid {
				k++
			}
		}
		return k, err
	}
	waitFor(t, "the flood has begun", func() bool { k, _ := theirs(); return k > 0 })
	start := time.Now()
	if _, r := ask(t, run); r.Type != wire.ReplyResult {
		t.Fatalf("root's request during the flood: %+v", r)
	}
	t.Logf("root answered in %v during the flood", time.Since(start))
	select {
	case err := <-floodDone:
		floodDone <- err
		if err != nil {
			// Its directories may go under xargs' feet: mkdir fails only
			// for a name it gave twice, never for want of room.
			t.Logf("the flood: %v: %s", err, floodOut.Bytes())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the flood did not end")
	}
	waitFor(t, "no directory of the flooding uid is left", func() bool {
		k, err := theirs()
		return err == nil && k == 0
	})
	if !strings.Contains(logs.String(), "no token named") {
		t.Fatalf("no log line names the flood:\n%s", logs.String())
	}
	if _, r := ask(t, run); r.Type != wire.ReplyResult {
		t.Fatalf("root's request after the flood: %+v", r)
	}
}
