package fifo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func listen(t *testing.T, max int) (*Listener, string, string) {
	t.Helper()
	dir := t.TempDir()
	path, lock := filepath.Join(dir, "query.fifo"), filepath.Join(dir, "query.lock")
	if err := MakeLockFile(lock, 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := Listen(path, 0o622, -1, max)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	info, _ := os.Stat(path)
	if info.Mode().Perm() != 0o622 || info.Mode()&os.ModeNamedPipe == 0 {
		t.Fatalf("FIFO mode %v", info.Mode())
	}
	return l, path, lock
}

func TestConcurrentLongRequestsStayWhole(t *testing.T) {
	l, path, lock := listen(t, 1<<20)
	const senders, each = 4, 5
	var wg sync.WaitGroup
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				// Far over PIPE_BUF: only the lock keeps these whole.
				line := bytes.Repeat([]byte{byte('a' + s)}, 3*PipeBuf+i)
				if err := Send(context.Background(), path, lock, line); err != nil {
					t.Error(err)
				}
			}
		}(s)
	}
	for n := 0; n < senders*each; n++ {
		line, err := l.ReadLine()
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.Trim(line, string(line[:1]))) != 0 {
			t.Fatalf("request %d interleaved with another", n)
		}
	}
	wg.Wait()
}

func TestTooLongAndGarbageLines(t *testing.T) {
	l, path, lock := listen(t, 100)
	ctx := context.Background()
	for _, line := range [][]byte{bytes.Repeat([]byte("x"), 5000), []byte("\x00\xffnot json"), []byte(`{"ok":1}`)} {
		if err := Send(ctx, path, lock, line); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.ReadLine(); !errors.Is(err, ErrTooLong) {
		t.Fatalf("got %v, want ErrTooLong", err)
	}
	if got, _ := l.ReadLine(); string(got) != "\x00\xffnot json" {
		t.Fatalf("garbage line = %q", got)
	}
	if got, _ := l.ReadLine(); string(got) != `{"ok":1}` {
		t.Fatalf("line after = %q", got)
	}
}

func TestSendWithoutDaemon(t *testing.T) {
	_, path, lock := listen(t, 100)
	dir := filepath.Dir(path)
	if err := Send(context.Background(), filepath.Join(dir, "missing.fifo"), lock, []byte("x")); !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("missing FIFO: %v", err)
	}
	l2, err := Listen(filepath.Join(dir, "closed.fifo"), 0o622, -1, 100)
	if err != nil {
		t.Fatal(err)
	}
	l2.f.Close() // a FIFO left behind by a daemon that died
	if err := Send(context.Background(), filepath.Join(dir, "closed.fifo"), lock, []byte("x")); !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("unread FIFO: %v", err)
	}
}

func TestReplies(t *testing.T) {
	r, err := NewReply(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	info, _ := os.Lstat(r.Path())
	dirInfo, _ := os.Stat(filepath.Dir(r.Path()))
	if info.Mode().Perm() != 0o600 || dirInfo.Mode().Perm() != 0o700 {
		t.Fatalf("reply modes %v %v", info.Mode(), dirInfo.Mode())
	}
	w, err := OpenReply(r.Path(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := w.WriteLine([]byte(fmt.Sprintf(`{"n":%d}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		line, err := r.ReadLine(ctx)
		if err != nil || string(line) != fmt.Sprintf(`{"n":%d}`, i) {
			t.Fatalf("line %d = %q, %v", i, line, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := r.ReadLine(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read with nothing sent: %v", err)
	}
	dir := filepath.Dir(r.Path())
	r.Close()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatal("reply directory left behind")
	}
	if err := w.WriteLine([]byte("late")); !errors.Is(err, ErrGone) {
		t.Fatalf("write after the CLI left: %v", err)
	}
	w.Close()
}

func TestOpenReplyRefusesNonFIFOs(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "regular")
	os.WriteFile(regular, []byte("precious"), 0o600)
	link := filepath.Join(dir, "link")
	r, _ := NewReply(dir)
	defer r.Close()
	os.Symlink(r.Path(), link)
	for _, p := range []string{regular, link, "relative.fifo", filepath.Join(dir, "missing")} {
		if w, err := OpenReply(p, time.Second); err == nil {
			w.Close()
			t.Errorf("OpenReply(%s) succeeded", p)
		}
	}
	if b, _ := os.ReadFile(regular); string(b) != "precious" {
		t.Fatal("regular file touched")
	}
	gone := filepath.Join(dir, "gone.fifo")
	l, _ := Listen(gone, 0o600, -1, 10)
	l.f.Close()
	if _, err := OpenReply(gone, time.Second); !errors.Is(err, ErrGone) {
		t.Fatalf("FIFO without reader: %v", err)
	}
}

func TestReplyLineSurvivesShortWaits(t *testing.T) {
	r, err := NewReply(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := OpenReply(r.Path(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.f.Write([]byte(`{"half":`))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := r.ReadLine(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("half a line: %v", err)
	}
	w.WriteLine([]byte(`"rest"}`))
	line, err := r.ReadLine(context.Background())
	if err != nil || string(line) != `{"half":"rest"}` {
		t.Fatalf("line = %q, %v", line, err)
	}
}

func TestAlive(t *testing.T) {
	l, path, _ := listen(t, 10)
	if !Alive(path) {
		t.Fatal("listening daemon reported dead")
	}
	l.Close()
	if Alive(path) {
		t.Fatal("closed daemon reported alive")
	}
}
