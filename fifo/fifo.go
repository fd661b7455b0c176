// Package fifo is the transport between tpm and tpmd: requests left in a
// spool directory, announced by a short token on a named pipe, and answered
// on a private reply FIFO as a stream of lines. It knows nothing of what the
// requests and lines say.
//
// The kernel vouches for who asks. A CLI makes a directory of its own in the
// daemon's spool (sticky and not listable, like a /tmp that hides its
// names), with its request file and reply FIFO inside, and writes only the
// directory's name to query.fifo or admin.fifo: one write of at most
// PIPE_BUF bytes, which the kernel never interleaves with another. The
// daemon opens what the name leads to without following links, and takes it
// only when the directory, the request and the reply FIFO are private and
// belong to one uid: that uid asked, and the reply goes to a FIFO it owns.
// Nobody takes a lock, so nobody can hold one; a partial or garbage write
// cannot swallow a token written after it; a reply never goes to a FIFO of
// someone else.
package fifo

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"syscall"

	"golang.org/x/sys/unix"
)

// The files of tpmd client's run directory, and of a request's directory in
// its spool. Everything that names them uses these.
const (
	QueryFIFO = "query.fifo" // read-only requests: anyone may write it
	AdminFIFO = "admin.fifo" // requests that change the host: root or the admin group
	SpoolDir  = "spool"      // requests' directories
	PidFile   = "tpmd.pid"

	RequestFile = "request.json" // in a request's directory
	ReplyFIFO   = "reply.fifo"
)

// Path is the request FIFO in runDir that takes admin (or query) requests.
func Path(runDir string, admin bool) string {
	if admin {
		return filepath.Join(runDir, AdminFIFO)
	}
	return filepath.Join(runDir, QueryFIFO)
}

// PipeBuf is how much one write(2) to a pipe delivers without interleaving.
const PipeBuf = 4096

var (
	// ErrNoDaemon means nobody reads the request FIFO: the daemon is down.
	ErrNoDaemon = errors.New("no daemon is reading the request FIFO")
	// ErrTooLong means a reply line was longer than the reader allows.
	ErrTooLong = errors.New("line too long")
	// ErrGone means the reply FIFO has no reader any more: the CLI left.
	ErrGone = errors.New("the reply FIFO has no reader")
)

// A token names a request's directory in the spool: "tpm-" and 128 random
// bits in hex, so nobody guesses another's. On a request FIFO it ends with a
// newline; 't', 'p', 'm' and '-' are not hex digits, so bytes written before
// a token can never be read as part of it.
var tokenLine = regexp.MustCompile(`tpm-[0-9a-f]{32}\n`)

// tokenLen is a token without its newline.
const tokenLen = len("tpm-") + 32

// TokenScanner finds the tokens in what is read from a request FIFO, in
// pieces of any size. Everything else is junk: counted, never kept beyond
// the few bytes that may start a token.
type TokenScanner struct {
	carry []byte
}

// Feed returns the tokens that b completes (without their newline) and how
// many bytes of junk it settled.
func (s *TokenScanner) Feed(b []byte) (tokens []string, junk int) {
	data := append(s.carry, b...)
	end := 0
	for _, m := range tokenLine.FindAllIndex(data, -1) {
		junk += m[0] - end
		tokens = append(tokens, string(data[m[0]:m[1]-1]))
		end = m[1]
	}
	// What could still become a token stays for the next read.
	keep := max(end, len(data)-tokenLen)
	junk += keep - end
	s.carry = append(s.carry[:0:0], data[keep:]...)
	return tokens, junk
}

// Listener reads tokens from a request FIFO the daemon owns.
type Listener struct {
	path string
	f    *os.File
	scan TokenScanner
	buf  []byte
}

// Listen makes the FIFO at path with exactly perm (and group gid, unless
// gid < 0), replacing a stale one, and opens it for reading. It opens it
// read-write so that the last writer closing never reads as end of file.
func Listen(path string, perm fs.FileMode, gid int) (*Listener, error) {
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
	// A read names at most a couple of hundred requests, so what a reader
	// holds open at once for the daemon to take stays small.
	return &Listener{path: path, f: f, buf: make([]byte, 2*PipeBuf)}, nil
}

// Next waits for the next read and returns the tokens it completed and the
// bytes of junk it settled. After Close it returns an error wrapping
// os.ErrClosed.
func (l *Listener) Next() (tokens []string, junk int, err error) {
	for {
		n, err := l.f.Read(l.buf)
		if err != nil {
			return nil, 0, err
		}
		if tokens, junk := l.scan.Feed(l.buf[:n]); len(tokens) > 0 || junk > 0 {
			return tokens, junk, nil
		}
	}
}

// Close stops reading and removes the FIFO, so a CLI sees the daemon as
// gone at once instead of writing into a pipe nobody will read.
func (l *Listener) Close() error {
	os.Remove(l.path)
	return l.f.Close()
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
