// Package fifo is the transport between tpm and tpmd: named pipes that carry
// one JSON line per request, lockfiles that keep concurrent writers' requests
// whole, and private reply FIFOs that carry a stream of lines back. It knows
// nothing of what the lines say.
//
// The kernel's permission check on opening a FIFO is the access control: a
// user who may not open admin.fifo for writing cannot ask for an install.
package fifo

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The files of tpmd client's run directory: the request FIFOs with their
// lockfiles, and the pid file. Everything that names them uses these.
const (
	QueryFIFO = "query.fifo" // read-only requests: anyone may write it
	AdminFIFO = "admin.fifo" // requests that change the host: root or the admin group
	QueryLock = "query.lock"
	AdminLock = "admin.lock"
	PidFile   = "tpmd.pid"
)

// Paths returns the request FIFO in runDir that takes admin (or query)
// requests, and its lockfile.
func Paths(runDir string, admin bool) (fifo, lock string) {
	if admin {
		return filepath.Join(runDir, AdminFIFO), filepath.Join(runDir, AdminLock)
	}
	return filepath.Join(runDir, QueryFIFO), filepath.Join(runDir, QueryLock)
}

// PipeBuf is how much one write(2) to a pipe delivers without interleaving.
const PipeBuf = 4096

var (
	// ErrNoDaemon means nobody reads the request FIFO: the daemon is down.
	ErrNoDaemon = errors.New("no daemon is reading the request FIFO")
	// ErrTooLong means a line was longer than the reader allows; the line
	// was skipped and reading can go on.
	ErrTooLong = errors.New("line too long")
	// ErrGone means the reply FIFO has no reader any more: the CLI left.
	ErrGone = errors.New("the reply FIFO has no reader")
)

// Listener reads request lines from a FIFO the daemon owns.
type Listener struct {
	path string
	f    *os.File
	r    *bufio.Reader
	max  int
}

// Listen makes the FIFO at path with exactly perm (and group gid, unless
// gid < 0), replacing a stale one, and opens it for reading. It opens it
// read-write so that the last writer closing never reads as end of file.
func Listen(path string, perm fs.FileMode, gid, maxLine int) (*Listener, error) {
	if info, err := os.Lstat(path); err == nil {
		if info.Mode()&fs.ModeNamedPipe == 0 {
			return nil, fmt.Errorf("listen %s: exists and is not a FIFO; remove it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("listen %s: %w", path, err)
		}
	}
	if err := unix.Mkfifo(path, 0o600); err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	if gid >= 0 {
		if err := os.Lchown(path, -1, gid); err != nil {
			return nil, fmt.Errorf("listen %s: %w", path, err)
		}
	}
	// chmod after mkfifo: the umask must not decide who may ask.
	if err := os.Chmod(path, perm); err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	return &Listener{path: path, f: f, r: bufio.NewReaderSize(f, PipeBuf), max: maxLine}, nil
}

// ReadLine returns the next line without its newline. A line longer than
// the limit is skipped and reported as ErrTooLong; garbage is the caller's
// to judge. After Close it returns an error wrapping os.ErrClosed.
func (l *Listener) ReadLine() ([]byte, error) {
	var line []byte
	tooLong := false
	for {
		chunk, err := l.r.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(chunk) > l.max+1 {
				tooLong, line = true, nil
			} else {
				line = append(line, chunk...)
			}
		}
		switch {
		case err == nil && tooLong:
			return nil, ErrTooLong
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return nil, err
		}
	}
}

// Close stops reading and removes the FIFO, so a CLI sees the daemon as
// gone at once instead of writing into a pipe nobody will read.
func (l *Listener) Close() error {
	os.Remove(l.path)
	return l.f.Close()
}

// Send writes one request line to the FIFO at path, holding an exclusive
// flock on lockPath meanwhile so that concurrent requests longer than
// PipeBuf never interleave. It fails with ErrNoDaemon when no daemon reads
// the FIFO, and with a permission error when the user may not write it.
func Send(ctx context.Context, path, lockPath string, line []byte) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, unix.ENXIO), errors.Is(err, unix.ENOENT):
		return fmt.Errorf("%s: %w", path, ErrNoDaemon)
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return fmt.Errorf("%s: %w", path, fs.ErrPermission)
	case err != nil:
		return fmt.Errorf("%s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path) // non-blocking: the poller waits for room
	defer f.Close()
	if info, err := f.Stat(); err != nil || info.Mode()&fs.ModeNamedPipe == 0 {
		return fmt.Errorf("%s is not a FIFO", path)
	}
	unlock, err := lockFile(ctx, lockPath)
	if err != nil {
		return err
	}
	defer unlock()
	if deadline, ok := ctx.Deadline(); ok {
		f.SetWriteDeadline(deadline)
	} else {
		f.SetWriteDeadline(time.Now().Add(10 * time.Second))
	}
	msg := append(append(make([]byte, 0, len(line)+1), line...), '\n')
	if _, err := f.Write(msg); err != nil {
		return fmt.Errorf("send to %s: %w", path, err)
	}
	return nil
}

// lockFile takes an exclusive flock on path, waiting until ctx ends.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Alive says whether a daemon reads the request FIFO at path.
func Alive(path string) bool {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

// MakeLockFile creates the lockfile beside a request FIFO, readable by
// everyone who may write the FIFO (flock needs only an open descriptor).
func MakeLockFile(path string, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDONLY|syscall.O_NOFOLLOW, perm)
	if err != nil {
		return fmt.Errorf("lockfile %s: %w", path, err)
	}
	f.Close()
	return os.Chmod(path, perm)
}

// MaxReplyLine is how long a reply line may be unless SetMaxLine says
// otherwise: the file list of the largest package the engine accepts
// (500,000 entries) fits, and a writer that never ends its line cannot make
// the CLI hold more than this.
const MaxReplyLine = 256 << 20

// Reply is the CLI's end of a reply FIFO, in a private directory.
type Reply struct {
	dir, path string
	f         *os.File
	max       int
	// buf holds what was read and not yet returned: a read cut short by
	// its context loses nothing, so the caller may wait in short slices
	// (checking meanwhile that the daemon lives).
	buf      []byte
	skipping bool // the rest of a line longer than max is being dropped
}

// NewReply makes a FIFO only its user can open (0600 in a fresh 0700
// directory under parent) and opens it for reading. It is opened read-write
// so that reading waits for the daemon instead of seeing end of file before
// the daemon has opened it.
func NewReply(parent string) (*Reply, error) {
	dir, err := os.MkdirTemp(parent, "tpm-reply-")
	if err != nil {
		return nil, fmt.Errorf("reply FIFO: %w", err)
	}
	path := filepath.Join(dir, "reply.fifo")
	if err := unix.Mkfifo(path, 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("reply FIFO: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("reply FIFO: %w", err)
	}
	return &Reply{dir: dir, path: path, f: f, max: MaxReplyLine}, nil
}

// SetMaxLine bounds the lines ReadLine returns to n bytes (newline
// excluded); a longer line gives ErrTooLong.
func (r *Reply) SetMaxLine(n int) { r.max = n }

// Path is what a request names as its reply FIFO.
func (r *Reply) Path() string { return r.path }

// ReadLine waits for the next reply line until ctx ends. The daemon never
// closes the stream: its final line says it is done.
// A line longer than the limit gives ErrTooLong as soon as more than the
// limit has arrived, not when (or if) the line ends; the next call drops
// the rest of it and returns the line after.
func (r *Reply) ReadLine(ctx context.Context) ([]byte, error) {
	stop := context.AfterFunc(ctx, func() { r.f.SetReadDeadline(time.Now()) })
	defer stop()
	for {
		if i := bytes.IndexByte(r.buf, '\n'); i >= 0 {
			line := r.buf[:i]
			r.buf = r.buf[i+1:]
			switch {
			case r.skipping:
				r.skipping = false
				continue
			case len(line) > r.max:
				return nil, ErrTooLong
			}
			return bytes.Clone(line), nil
		}
		switch {
		case r.skipping:
			r.buf = r.buf[:0]
		case len(r.buf) > r.max:
			r.buf, r.skipping = r.buf[:0], true
			return nil, ErrTooLong
		}
		// A deadline left by an earlier call's context (its AfterFunc may
		// run after that call returned) is cleared and the read retried.
		r.f.SetReadDeadline(time.Time{})
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if cap(r.buf)-len(r.buf) < 1<<10 {
			// Most replies are a few hundred bytes: start small (a large
			// allocation per request cost more than the whole query) and
			// double for long lines.
			buf := make([]byte, len(r.buf), max(4<<10, 2*len(r.buf)))
			copy(buf, r.buf)
			r.buf = buf
		}
		n, err := r.f.Read(r.buf[len(r.buf):cap(r.buf)])
		r.buf = r.buf[:len(r.buf)+n]
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil:
		case ctx.Err() != nil:
			return nil, ctx.Err()
		default:
			return nil, err
		}
	}
}

// Close removes the FIFO and its directory.
func (r *Reply) Close() error {
	err := r.f.Close()
	os.RemoveAll(r.dir)
	return err
}

// ReplyWriter is the daemon's end of one CLI's reply FIFO.
type ReplyWriter struct {
	f       *os.File
	timeout time.Duration
}

// OpenReply opens the reply FIFO a request named, refusing anything that
// is not a FIFO (a regular file or a symlink could make a root daemon write
// over any file) and never blocking: a CLI that is gone gives ErrGone.
// Each write must finish within timeout, so a CLI that stops reading cannot
// stall the daemon.
func OpenReply(path string, timeout time.Duration) (*ReplyWriter, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("reply FIFO %q: not an absolute path", path)
	}
	before, err := os.Lstat(path)
	if err != nil {
		return nil, fmt.Errorf("reply FIFO: %w", err)
	}
	if before.Mode()&fs.ModeNamedPipe == 0 {
		return nil, fmt.Errorf("reply FIFO %s: not a FIFO (%v)", path, before.Mode().Type())
	}
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENXIO) {
		return nil, fmt.Errorf("reply FIFO %s: %w", path, ErrGone)
	}
	if err != nil {
		return nil, fmt.Errorf("reply FIFO %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	after, err := f.Stat()
	if err != nil || !os.SameFile(before, after) {
		f.Close()
		return nil, fmt.Errorf("reply FIFO %s: replaced while opening", path)
	}
	return &ReplyWriter{f: f, timeout: timeout}, nil
}

// WriteLine sends one line. A reader that left gives ErrGone.
func (w *ReplyWriter) WriteLine(line []byte) error {
	w.f.SetWriteDeadline(time.Now().Add(w.timeout))
	msg := append(append(make([]byte, 0, len(line)+1), line...), '\n')
	_, err := w.f.Write(msg)
	if errors.Is(err, syscall.EPIPE) {
		return ErrGone
	}
	return err
}

// SetTimeout changes the bound of each later WriteLine.
func (w *ReplyWriter) SetTimeout(d time.Duration) { w.timeout = d }

// Close closes the daemon's end.
func (w *ReplyWriter) Close() error { return w.f.Close() }
