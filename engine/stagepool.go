package engine

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"runtime"
	"sync"

	"tpm/store"
	"tpm/tarball"
)

// Creating a file costs tens of microseconds in the kernel, and Go hands
// the thread's processor over during each such call. A few workers writing
// small files side by side keep the cores busy while the archive is read
// (ext4 locks a directory while it adds a name, so files of different
// folders go in side by side): two a core, as a worker may wait on the disk.
const stageInline = 1 << 20 // larger files are streamed by the reader itself

func stageWorkers() int { return min(2*runtime.GOMAXPROCS(0), 8) }

// stageJob writes one staged file or symlink and fills in its record.
type stageJob struct {
	temp  string
	entry tarball.Entry
	mode  fs.FileMode
	data  []byte // content of a small regular file, when run is given no reader
	rec   *store.FileRecord
}

func (j stageJob) run(t *tree, content io.Reader, buf []byte) error {
	switch j.entry.Type {
	case tarball.TypeFile:
		sum, err := t.writeFile(j.temp, j.data, content, j.mode, j.entry.ModTime, buf)
		if err != nil {
			return fmt.Errorf("write %s: %w", j.entry.Path, err)
		}
		j.rec.SHA256, j.rec.Mode = sum, j.mode
	case tarball.TypeSymlink:
		if err := t.symlink(j.entry.Link, j.temp); err != nil {
			return fmt.Errorf("symlink %s: %w", j.entry.Path, err)
		}
	}
	return nil
}

// stagePool runs stageJobs on a few goroutines and keeps the first error.
// Jobs go to the workers in batches, with the contents of their small files
// in one buffer, so that handing a file over costs neither a wake-up nor an
// allocation of its own.
type stagePool struct {
	t      *tree
	jobs   chan []stageJob
	batch  []stageJob
	arena  []byte // the batch's file contents
	wg     sync.WaitGroup
	mu     sync.Mutex
	first  error
	parent context.Context
	ctx    context.Context // ends at the first failure, so the rest is skipped
	cancel context.CancelFunc
	closed bool
}

const (
	batchJobs  = 32
	batchBytes = 256 << 10
)

func newStagePool(ctx context.Context, t *tree, workers int) *stagePool {
	inner, cancel := context.WithCancel(ctx)
	p := &stagePool{t: t, jobs: make(chan []stageJob, 2*workers), parent: ctx, ctx: inner, cancel: cancel}
	for w := 0; w < workers; w++ {
		p.wg.Add(1)
		go p.work()
	}
	return p
}

func (p *stagePool) work() {
	defer p.wg.Done()
	buf := make([]byte, 64<<10)
	for batch := range p.jobs {
		for _, job := range batch {
			if p.ctx.Err() != nil {
				break // drain: an error or a cancel stops the rest
			}
			if err := job.run(p.t, nil, buf); err != nil {
				p.fail(err)
			}
		}
	}
}

func (p *stagePool) fail(err error) {
	p.mu.Lock()
	if p.first == nil {
		p.first = err
	}
	p.mu.Unlock()
	p.cancel()
}

// err returns the first failure so far, or the caller's context's end.
func (p *stagePool) err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.first != nil {
		return p.first
	}
	return p.parent.Err()
}

// alloc returns room for n bytes of a file's content in the batch being
// filled, sending that batch off first when it is full.
func (p *stagePool) alloc(n int64) []byte {
	if n > batchBytes {
		return make([]byte, n)
	}
	if int64(len(p.arena))+n > int64(cap(p.arena)) {
		p.flush()
	}
	if p.arena == nil {
		p.arena = make([]byte, 0, batchBytes)
	}
	start := len(p.arena)
	p.arena = p.arena[:start+int(n)]
	return p.arena[start : start+int(n) : start+int(n)]
}

func (p *stagePool) submit(j stageJob) {
	p.batch = append(p.batch, j)
	if len(p.batch) >= batchJobs {
		p.flush()
	}
}

func (p *stagePool) flush() {
	if len(p.batch) > 0 {
		p.jobs <- p.batch
	}
	p.batch, p.arena = nil, nil
}

// wait lets the queued jobs finish and returns the first failure.
func (p *stagePool) wait() error {
	p.flush()
	p.stop()
	return p.err()
}

func (p *stagePool) stop() {
	if !p.closed {
		p.closed = true
		close(p.jobs)
		p.wg.Wait()
		p.cancel()
	}
}
