package fifo

import (
	"bytes"
	"context"
	"errors"
	"os"
	"syscall"
	"time"
)

// MaxReplyLine is how long a reply line may be unless SetMaxLine says
// otherwise: long lists come in chunks, so this is room to spare, and a
// writer that never ends its line cannot make the CLI hold more than this.
const MaxReplyLine = 16 << 20

// Reply is the CLI's end of a reply FIFO.
type Reply struct {
	f   *os.File
	max int
	// buf holds what was read and not yet returned: a read cut short by
	// its context loses nothing, so the caller may wait in short slices
	// (checking meanwhile that the daemon lives).
	buf      []byte
	skipping bool // the rest of a line longer than max is being dropped
}

// SetMaxLine bounds the lines ReadLine returns to n bytes (newline
// excluded); a longer line gives ErrTooLong.
func (r *Reply) SetMaxLine(n int) { r.max = n }

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

func (r *Reply) close() error { return r.f.Close() }

// ReplyWriter is the daemon's end of one CLI's reply FIFO.
type ReplyWriter struct {
	f       *os.File
	timeout time.Duration
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

// TryLine sends one line if the FIFO has room for it now, and otherwise
// drops it: for a short answer from a writer that must never wait.
func (w *ReplyWriter) TryLine(line []byte) error {
	rc, err := w.f.SyscallConn()
	if err != nil {
		return err
	}
	msg := append(append(make([]byte, 0, len(line)+1), line...), '\n')
	var werr error
	err = rc.Write(func(fd uintptr) bool {
		_, werr = syscall.Write(int(fd), msg)
		return true // one attempt: never wait for room
	})
	if err == nil {
		err = werr
	}
	return err
}

// SetTimeout changes the bound of each later WriteLine.
func (w *ReplyWriter) SetTimeout(d time.Duration) { w.timeout = d }

// Close closes the daemon's end.
func (w *ReplyWriter) Close() error { return w.f.Close() }
