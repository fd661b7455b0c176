package fifo

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLedgerBoundsEachUID: a uid has at most its bound of directories; the
// same token counts once; a removed directory no longer counts.
func TestLedgerBoundsEachUID(t *testing.T) {
	tok := func(c string) string { return "tpm-" + strings.Repeat(c, 32) }
	l := NewLedger(2, 1)
	for _, c := range []string{"a", "b", "a"} {
		if _, ok := l.Admit(tok(c), 1000); !ok {
			t.Fatalf("token %s refused under the bound", c)
		}
	}
	if n, ok := l.Admit(tok("c"), 1000); ok || n != 2 {
		t.Fatalf("a third directory: %d, %v", n, ok)
	}
	if _, ok := l.Admit(tok("d"), 1001); !ok {
		t.Fatal("another uid was refused")
	}
	spool := t.TempDir()
	if err := os.Mkdir(filepath.Join(spool, tok("a")), 0o700); err != nil {
		t.Fatal(err)
	}
	l.Remove(tok("a"))
	l.Remove(tok("e")) // not admitted: queued within its own bound
	l.Remove(tok("f")) // past it: left to the sweep
	if l.uncounted != 1 || len(l.queue) != 2 {
		t.Fatalf("queued %v, %d not admitted; want a and e, one not admitted", l.queue, l.uncounted)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		l.Clean(ctx, spool, CleanConfig{SweepEvery: time.Hour, CheckEvery: time.Hour, Warn: func(string, ...any) {}})
		close(done)
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, ok := l.Admit(tok("0"), 1000); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the removed directory still counts")
		}
	}
	cancel()
	<-done
	if _, err := os.Stat(filepath.Join(spool, tok("a"))); !os.IsNotExist(err) {
		t.Fatalf("the directory was not removed: %v", err)
	}
}
