package generation

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"
	"time"
)

// A spooled blob is a file nobody can reach by name (it leaves nothing in
// its directory), read by as many readers at once as ask, each from its
// start; a failed write leaves nothing either.
func TestSpoolBlob(t *testing.T) {
	dir := t.TempDir()
	want := bytes.Repeat([]byte("index "), 300000)
	b, err := SpoolBlob(dir, func(w io.Writer) error { _, err := w.Write(want); return err })
	if err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("the spool left %d files in its directory", len(entries))
	}
	r1, r2 := b.Reader(), b.Reader()
	head := make([]byte, 10)
	io.ReadFull(r1, head)
	got2, err := io.ReadAll(r2)
	if err != nil || !bytes.Equal(got2, want) || b.Size() != int64(len(want)) {
		t.Fatalf("second reader: %d bytes (%v), size %d; want %d", len(got2), err, b.Size(), len(want))
	}
	rest, _ := io.ReadAll(r1)
	if !bytes.Equal(append(head, rest...), want) {
		t.Fatal("the first reader's position moved with the second's")
	}
	boom := errors.New("boom")
	if _, err := SpoolBlob(dir, func(w io.Writer) error { w.Write(want); return boom }); !errors.Is(err, boom) {
		t.Fatalf("a failed write: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("a failed spool left %d files", len(entries))
	}
	mem, _ := SpoolBlob("", func(w io.Writer) error { _, err := w.Write(want); return err })
	if got, _ := mem.Bytes(); !bytes.Equal(got, want) {
		t.Fatal("the in-memory blob differs")
	}
}

// Readers that follow a spool read every byte, in order, while it is
// written: a reader that catches up waits for the next write. A failed
// write reaches them as an error, and a reader's error is the spool's.
func TestSpoolBlobFollowed(t *testing.T) {
	want := make([]byte, 3<<20+12345)
	for i := range want {
		want[i] = byte(i * 7)
	}
	// Written in pieces, each let through by the last reader reaching the
	// end of the one before: the readers must follow the writing, as a
	// reader that waited for the end would never let the next piece go.
	for _, dir := range []string{t.TempDir(), ""} {
		caughtUp := make(chan int64, 64)
		write := func(w io.Writer) error {
			for off := 0; off < len(want); off += 1 << 20 {
				end := min(off+1<<20, len(want))
				if _, err := w.Write(want[off:end]); err != nil {
					return err
				}
				if f, ok := w.(interface{ Flush() error }); ok && dir != "" {
					f.Flush()
					select {
					case got := <-caughtUp:
						if got != int64(end) {
							return fmt.Errorf("a reader reached %d, want %d", got, end)
						}
					case <-time.After(10 * time.Second):
						return fmt.Errorf("no reader reached %d within 10 s of its writing", end)
					}
				}
			}
			return nil
		}
		got := make([][]byte, 2)
		readers := []func(io.Reader) error{
			func(r io.Reader) error { var err error; got[0], err = io.ReadAll(r); return err },
			func(r io.Reader) error {
				buf := make([]byte, 4096)
				for {
					n, err := r.Read(buf)
					got[1] = append(got[1], buf[:n]...)
					if len(got[1])%(1<<20) == 0 || len(got[1]) == len(want) {
						select {
						case caughtUp <- int64(len(got[1])):
						default:
						}
					}
					if err == io.EOF {
						return nil
					}
					if err != nil {
						return err
					}
				}
			},
		}
		b, err := SpoolBlobFollowed(dir, write, readers...)
		if err != nil {
			t.Fatalf("dir %q: %v", dir, err)
		}
		for i, g := range got {
			if !bytes.Equal(g, want) {
				t.Fatalf("dir %q: reader %d read %d bytes, not the %d written", dir, i, len(g), len(want))
			}
		}
		if whole, _ := b.Bytes(); !bytes.Equal(whole, want) {
			t.Fatalf("dir %q: the blob differs", dir)
		}
	}

	dir := t.TempDir()
	boom := errors.New("boom")
	var readErr error
	_, err := SpoolBlobFollowed(dir, func(w io.Writer) error { w.Write(want); return boom },
		func(r io.Reader) error { _, readErr = io.ReadAll(r); return nil })
	if !errors.Is(err, boom) || readErr == nil {
		t.Fatalf("a failed write: spool %v, reader %v", err, readErr)
	}
	sad := errors.New("the signer failed")
	if _, err := SpoolBlobFollowed(dir, func(w io.Writer) error { _, err := w.Write(want); return err },
		func(io.Reader) error { return sad }); !errors.Is(err, sad) {
		t.Fatalf("a failed reader: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("failed spools left %d files", len(entries))
	}
}
