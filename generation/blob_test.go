package generation

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
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
