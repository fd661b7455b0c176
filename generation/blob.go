package generation

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
)

// Blob is a document a generation publishes (index.db, index.json): at
// 100,000 packages they are 200 MB, which a server held in memory for as
// long as it published them. A Blob spooled to a directory is an unlinked
// file read through its open descriptor: it takes no memory, needs no
// cleaning up (the descriptor closes when the last generation holding it
// is collected, and the disk space goes with it), and nobody can change it
// on disk. Small ones (tests, the mirror's copy of an index it fetched)
// may stay in memory.
type Blob struct {
	r    io.ReaderAt
	size int64
}

// BytesBlob is a Blob of b, in memory; b must not change afterwards.
func BytesBlob(b []byte) Blob { return Blob{bytes.NewReader(b), int64(len(b))} }

// Size is the blob's length in bytes.
func (b Blob) Size() int64 { return b.size }

// Reader reads the blob from its start; each call has its own position.
func (b Blob) Reader() *io.SectionReader {
	if b.r == nil {
		return io.NewSectionReader(bytes.NewReader(nil), 0, 0)
	}
	return io.NewSectionReader(b.r, 0, b.size)
}

// Bytes reads the whole blob into memory.
func (b Blob) Bytes() ([]byte, error) { return io.ReadAll(b.Reader()) }

// SpoolBlob makes a Blob of what write writes: in an unlinked file in dir,
// or in memory when dir is "".
func SpoolBlob(dir string, write func(io.Writer) error) (Blob, error) {
	if dir == "" {
		var buf bytes.Buffer
		if err := write(&buf); err != nil {
			return Blob{}, err
		}
		return BytesBlob(buf.Bytes()), nil
	}
	f, err := os.CreateTemp(dir, ".spool-*")
	if err != nil {
		return Blob{}, fmt.Errorf("spool: %w", err)
	}
	// Unlinked at once: a crash leaves nothing behind.
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return Blob{}, fmt.Errorf("spool: %w", err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	err = write(w)
	if err == nil {
		err = w.Flush()
	}
	var size int64
	if err == nil {
		size, err = f.Seek(0, io.SeekCurrent)
	}
	if err != nil {
		f.Close()
		return Blob{}, fmt.Errorf("spool: %w", err)
	}
	return Blob{f, size}, nil
}
