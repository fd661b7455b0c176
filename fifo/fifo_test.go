package fifo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// runDir is a daemon's run directory with its spool and query FIFO.
func runDir(t *testing.T) (l *Listener, fifoPath, spool string) {
	t.Helper()
	dir := t.TempDir()
	fifoPath = filepath.Join(dir, QueryFIFO)
	l, err := Listen(fifoPath, 0o622, -1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	info, _ := os.Lstat(fifoPath)
	if info.Mode().Perm() != 0o622 || info.Mode()&os.ModeNamedPipe == 0 {
		t.Fatalf("FIFO mode %v", info.Mode())
	}
	if spool, err = MakeSpool(dir); err != nil {
		t.Fatal(err)
	}
	info, _ = os.Lstat(spool)
	if info.Mode().Perm() != 0o733 || info.Mode()&os.ModeSticky == 0 {
		t.Fatalf("spool mode %v", info.Mode())
	}
	return l, fifoPath, spool
}

func outgoing(t *testing.T, spool string) *Outgoing {
	t.Helper()
	o, err := NewOutgoing(spool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return o
}

func next(t *testing.T, l *Listener) []string {
	t.Helper()
	tokens, _, err := l.Next()
	if err != nil {
		t.Fatal(err)
	}
	return tokens
}

func TestRequestRoundTrip(t *testing.T) {
	l, path, spool := runDir(t)
	o := outgoing(t, spool)
	if err := o.Send(context.Background(), path, []byte(`{"verb":"status"}`), -1); err != nil {
		t.Fatal(err)
	}
	tokens := next(t, l)
	if len(tokens) != 1 || tokens[0] != o.Token() {
		t.Fatalf("tokens %q, want %q", tokens, o.Token())
	}
	in, err := Accept(spool, tokens[0], 100, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Reply.Close()
	if in.UID != os.Getuid() || in.GID != os.Getgid() || string(in.Request) != `{"verb":"status"}` {
		t.Fatalf("accepted %+v", in)
	}
	for i := 0; i < 3; i++ {
		if err := in.Reply.WriteLine([]byte(fmt.Sprintf(`{"n":%d}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		line, err := o.ReadLine(context.Background())
		if err != nil || string(line) != fmt.Sprintf(`{"n":%d}`, i) {
			t.Fatalf("line %d = %q, %v", i, line, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := o.ReadLine(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read with nothing sent: %v", err)
	}
	// A token is good once: the request file is gone.
	if _, err := Accept(spool, tokens[0], 100, time.Second); !errors.Is(err, ErrRefused) {
		t.Fatalf("the same token again: %v", err)
	}
	dir := filepath.Join(spool, o.Token())
	o.Close()
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Fatal("request directory left behind")
	}
	if err := in.Reply.WriteLine([]byte("late")); !errors.Is(err, ErrGone) {
		t.Fatalf("write after the CLI left: %v", err)
	}
}

// TestConcurrentSendersStayWhole: many writers at once, each token arrives
// whole, none lost.
func TestConcurrentSendersStayWhole(t *testing.T) {
	l, path, spool := runDir(t)
	const senders = 64
	want := map[string]bool{}
	var outs []*Outgoing
	for range senders {
		o := outgoing(t, spool)
		outs = append(outs, o)
		want[o.Token()] = true
	}
	var wg sync.WaitGroup
	for _, o := range outs {
		wg.Go(func() {
			if err := o.Send(context.Background(), path, []byte("{}"), -1); err != nil {
				t.Error(err)
			}
		})
	}
	for len(want) > 0 {
		for _, tok := range next(t, l) {
			if !want[tok] {
				t.Fatalf("token %q not sent or seen twice", tok)
			}
			delete(want, tok)
		}
	}
	wg.Wait()
}

// TestJunkCannotSwallowAToken: a partial request without a newline, and
// garbage of every kind, written before a token leave the token whole.
func TestJunkCannotSwallowAToken(t *testing.T) {
	l, path, spool := runDir(t)
	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Write([]byte(`{"v":1,`))
	w.Write([]byte("tpm-00\x00\xff" + strings.Repeat("x", 3*PipeBuf)))
	w.Write([]byte("tpm-0123456789abcdef")) // half a token, never finished
	o := outgoing(t, spool)
	if err := o.Send(context.Background(), path, []byte("{}"), -1); err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) == 0 {
		got = append(got, next(t, l)...)
	}
	if len(got) != 1 || got[0] != o.Token() {
		t.Fatalf("tokens %q, want only %q", got, o.Token())
	}
}

func TestTokenScannerAcrossReads(t *testing.T) {
	tok := "tpm-" + strings.Repeat("ab", 16)
	stream := "junk" + tok + "\n" + "tpm-" + tok + "\n\n" + tok + "x\n" + tok + "\n"
	for size := 1; size <= len(stream); size++ {
		var s TokenScanner
		var got []string
		junk := 0
		for i := 0; i < len(stream); i += size {
			tokens, j := s.Feed([]byte(stream[i:min(i+size, len(stream))]))
			got, junk = append(got, tokens...), junk+j
		}
		if len(got) != 3 {
			t.Fatalf("reads of %d: tokens %q, want 3", size, got)
		}
		if want := len(stream) - 3*(len(tok)+1) - len(s.carry); junk != want {
			t.Fatalf("reads of %d: junk %d, want %d", size, junk, want)
		}
	}
}

// FuzzTokenScanner: however the stream is cut into reads, the scanner finds
// exactly the tokens a reader of the whole stream would, and keeps at most
// a token's length between reads.
func FuzzTokenScanner(f *testing.F) {
	tok := "tpm-" + strings.Repeat("0f", 16) + "\n"
	f.Add([]byte(`{"v":1,`+tok+"garbage\n"+tok), uint8(3))
	f.Add([]byte("tpm-tpm-"+tok), uint8(1))
	f.Add(bytes.Repeat([]byte(tok[:20]), 5), uint8(7))
	f.Fuzz(func(t *testing.T, stream []byte, cut uint8) {
		want := tokenLine.FindAll(stream, -1)
		var s TokenScanner
		var got []string
		size := int(cut)%64 + 1
		for i := 0; i < len(stream); i += size {
			tokens, _ := s.Feed(stream[i:min(i+size, len(stream))])
			got = append(got, tokens...)
			if len(s.carry) > tokenLen {
				t.Fatalf("carries %d bytes", len(s.carry))
			}
		}
		if len(got) != len(want) {
			t.Fatalf("tokens %q, want %q", got, want)
		}
		for i := range got {
			if got[i]+"\n" != string(want[i]) {
				t.Fatalf("token %d = %q, want %q", i, got[i], want[i])
			}
		}
	})
}

// TestAcceptRefuses: what a hostile user can leave in the spool is refused,
// and nothing outside the request's directory is written.
func TestAcceptRefuses(t *testing.T) {
	_, _, spool := runDir(t)
	elsewhere := t.TempDir()
	precious := filepath.Join(elsewhere, "precious")
	os.WriteFile(precious, []byte("precious"), 0o600)
	victim := outgoing(t, spool) // a real request's reply FIFO, somebody else's

	cases := []struct {
		name       string
		setup      func(dir string)
		replyOpens bool // refused with an answer on the reply FIFO
	}{
		{"directory is a symlink", func(dir string) {
			os.RemoveAll(dir)
			os.Symlink(filepath.Join(spool, victim.Token()), dir)
		}, false},
		{"directory open to others", func(dir string) { os.Chmod(dir, 0o755) }, false},
		{"reply is a symlink to another's FIFO", func(dir string) {
			os.Remove(filepath.Join(dir, ReplyFIFO))
			os.Symlink(filepath.Join(spool, victim.Token(), ReplyFIFO), filepath.Join(dir, ReplyFIFO))
		}, false},
		{"reply is a regular file", func(dir string) {
			os.Remove(filepath.Join(dir, ReplyFIFO))
			os.WriteFile(filepath.Join(dir, ReplyFIFO), nil, 0o600)
		}, false},
		{"reply open to others", func(dir string) { os.Chmod(filepath.Join(dir, ReplyFIFO), 0o622) }, false},
		{"request missing", func(dir string) { os.Remove(filepath.Join(dir, RequestFile)) }, true},
		{"request is a symlink", func(dir string) {
			os.Remove(filepath.Join(dir, RequestFile))
			os.Symlink(precious, filepath.Join(dir, RequestFile))
		}, true},
		{"request has another link", func(dir string) {
			os.Link(filepath.Join(dir, RequestFile), filepath.Join(dir, "other"))
		}, true},
		{"request open to others", func(dir string) { os.Chmod(filepath.Join(dir, RequestFile), 0o644) }, true},
		{"request too long", func(dir string) {
			os.WriteFile(filepath.Join(dir, RequestFile), bytes.Repeat([]byte("x"), 101), 0o600)
		}, true},
		{"request is a FIFO", func(dir string) {
			os.Remove(filepath.Join(dir, RequestFile))
			unix.Mkfifo(filepath.Join(dir, RequestFile), 0o600)
		}, true},
	}
	if os.Getuid() == 0 {
		cases = append(cases, struct {
			name       string
			setup      func(dir string)
			replyOpens bool
		}{"reply owned by another uid", func(dir string) { os.Lchown(filepath.Join(dir, ReplyFIFO), 65534, 65534) }, false})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := outgoing(t, spool)
			dir := filepath.Join(spool, o.Token())
			if err := o.writeRequest([]byte("{}"), -1); err != nil {
				t.Fatal(err)
			}
			c.setup(dir)
			in, err := Accept(spool, o.Token(), 100, time.Second)
			if err == nil {
				t.Fatal("accepted")
			}
			if c.replyOpens != (in != nil) {
				t.Fatalf("reply opened: %v, want %v (%v)", in != nil, c.replyOpens, err)
			}
			if in != nil {
				if !errors.Is(err, ErrRefused) {
					t.Fatalf("refusal with an answer is %v, want ErrRefused", err)
				}
				in.Reply.Close()
			}
		})
	}
	if b, _ := os.ReadFile(precious); string(b) != "precious" {
		t.Fatal("a file outside the spool was touched")
	}
	for _, bad := range []string{"../escape", "tpm-XYZ", "tpm-" + strings.Repeat("0", 31) + "/"} {
		if _, err := Accept(spool, bad, 100, time.Second); err == nil {
			t.Errorf("token %q accepted", bad)
		}
	}
}

func TestSendWithoutDaemon(t *testing.T) {
	_, path, spool := runDir(t)
	dir := filepath.Dir(path)
	o := outgoing(t, spool)
	if err := o.Send(context.Background(), filepath.Join(dir, "missing.fifo"), nil, -1); !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("missing FIFO: %v", err)
	}
	l2, err := Listen(filepath.Join(dir, "closed.fifo"), 0o622, -1)
	if err != nil {
		t.Fatal(err)
	}
	l2.f.Close() // a FIFO left behind by a daemon that died
	if err := o.Send(context.Background(), filepath.Join(dir, "closed.fifo"), nil, -1); !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("unread FIFO: %v", err)
	}
}

// TestSendToAFullFIFOEndsWithItsContext: a daemon that reads nothing
// cannot hold a sender past its deadline.
func TestSendToAFullFIFOEndsWithItsContext(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, QueryFIFO)
	l, err := Listen(path, 0o622, -1) // opened, never read
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	spool, _ := MakeSpool(dir)
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := unix.Write(fd, bytes.Repeat([]byte("x"), PipeBuf)); err != nil {
			break
		}
	}
	unix.Close(fd)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := outgoing(t, spool).Send(ctx, path, nil, -1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("send into a full FIFO: %v", err)
	}
}

func TestReplyLineSurvivesShortWaits(t *testing.T) {
	_, _, spool := runDir(t)
	o := outgoing(t, spool)
	o.writeRequest([]byte("{}"), -1)
	in, err := Accept(spool, o.Token(), 100, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	w := in.Reply
	defer w.Close()
	w.f.Write([]byte(`{"half":`))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := o.ReadLine(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("half a line: %v", err)
	}
	w.WriteLine([]byte(`"rest"}`))
	line, err := o.ReadLine(context.Background())
	if err != nil || string(line) != `{"half":"rest"}` {
		t.Fatalf("line = %q, %v", line, err)
	}
}

func TestAlive(t *testing.T) {
	l, path, _ := runDir(t)
	if !Alive(path) {
		t.Fatal("listening daemon reported dead")
	}
	l.Close()
	if Alive(path) {
		t.Fatal("closed daemon reported alive")
	}
}
