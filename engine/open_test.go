package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"tpm/store"
)

// TestOpenWhenFreeWaitsForTheHolder: a second engine waits while the
// first holds the state database, says so once, and opens once it is let
// go; with its context ended it gives up with ErrLocked.
func TestOpenWhenFreeWaitsForTheHolder(t *testing.T) {
	opts := Options{StateDir: t.TempDir()}
	first, _, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	waiting := make(chan struct{}, 2)
	type opened struct {
		e   *Engine
		err error
	}
	done := make(chan opened, 1)
	go func() {
		e, _, err := OpenWhenFree(context.Background(), opts, 10*time.Millisecond, time.Minute, func(holder string) {
			if !strings.Contains(holder, "this process") {
				t.Errorf("holder %q, want this process", holder)
			}
			waiting <- struct{}{}
		})
		done <- opened{e, err}
	}()
	<-waiting // it found the database held
	first.Close()
	got := <-done
	if got.err != nil {
		t.Fatalf("open once let go: %v", got.err)
	}
	if len(waiting) != 0 {
		t.Fatal("waiting was said more than once")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := OpenWhenFree(ctx, opts, 10*time.Millisecond, time.Minute, nil); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("open with the context ended while held: %v, want ErrLocked", err)
	}
	got.e.Close()
}

// TestOpenWhenFreeIsBounded: a holder that never lets go makes the wait end
// after its limit, with an error that names the holder.
func TestOpenWhenFreeIsBounded(t *testing.T) {
	opts := Options{StateDir: t.TempDir()}
	held, _, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	_, _, err = OpenWhenFree(context.Background(), opts, 10*time.Millisecond, 50*time.Millisecond, nil)
	if !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("a wait past its limit: %v, want ErrLocked naming pid %d", err, os.Getpid())
	}
}
