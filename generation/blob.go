package generation

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
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
	return SpoolBlobFollowed(dir, write)
}

// SpoolBlobFollowed is SpoolBlob with readers: each runs on a goroutine of
// its own over the blob's bytes, reading what is spooled while the rest is
// still being written (in memory, once it all is). It returns when write
// and every reader have, with the first error of each. A reader that
// returns early stops nothing; one that reads to the end sees every byte.
func SpoolBlobFollowed(dir string, write func(io.Writer) error, readers ...func(io.Reader) error) (Blob, error) {
	if dir == "" {
		var buf bytes.Buffer
		if err := write(&buf); err != nil {
			return Blob{}, err
		}
		b := BytesBlob(buf.Bytes())
		return b, follow(readers, func() io.Reader { return b.Reader() })
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
	sp := &spooled{f: f}
	sp.grew = sync.NewCond(&sp.mu)
	followed := make(chan error, 1)
	go func() { followed <- follow(readers, sp.reader) }()
	w := bufio.NewWriterSize(sp, 1<<20)
	err = write(w)
	if err == nil {
		err = w.Flush()
	}
	size := sp.end(err)
	if ferr := <-followed; err == nil && ferr != nil {
		err = ferr
	}
	if err != nil {
		f.Close()
		return Blob{}, fmt.Errorf("spool: %w", err)
	}
	return Blob{f, size}, nil
}

// follow runs each reader over its own reader of the blob, side by side,
// and returns their errors.
func follow(readers []func(io.Reader) error, open func() io.Reader) error {
	errs := make([]error, len(readers))
	var wg sync.WaitGroup
	for i, read := range readers {
		wg.Go(func() { errs[i] = read(open()) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// spooled is a spool file being written, which readers follow: they read
// back (from the page cache) what is written, and wait for more.
type spooled struct {
	f *os.File

	mu      sync.Mutex
	grew    *sync.Cond // broadcast when written grows or the writing ends
	written int64
	ended   bool
	err     error // why the writing ended early
}

func (sp *spooled) Write(p []byte) (int, error) {
	n, err := sp.f.Write(p)
	sp.mu.Lock()
	sp.written += int64(n)
	sp.mu.Unlock()
	sp.grew.Broadcast()
	return n, err
}

// end ends the writing (with err when it failed) and returns the size.
func (sp *spooled) end(err error) int64 {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.ended, sp.err = true, err
	if err == nil {
		sp.err = io.EOF
	}
	sp.grew.Broadcast()
	return sp.written
}

func (sp *spooled) reader() io.Reader { return &follower{sp: sp} }

// follower reads a spooled file from its start, as it is written.
type follower struct {
	sp  *spooled
	off int64
}

func (r *follower) Read(p []byte) (int, error) {
	sp := r.sp
	sp.mu.Lock()
	for r.off >= sp.written && !sp.ended {
		sp.grew.Wait()
	}
	avail, err := sp.written-r.off, sp.err
	sp.mu.Unlock()
	if avail <= 0 {
		if err == io.EOF {
			return 0, io.EOF
		}
		return 0, fmt.Errorf("spool ended early: %w", err)
	}
	n, rerr := sp.f.ReadAt(p[:min(int64(len(p)), avail)], r.off)
	r.off += int64(n)
	if rerr == io.EOF && n > 0 {
		rerr = nil
	}
	return n, rerr
}
