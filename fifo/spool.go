package fifo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// MakeSpool makes runDir's spool afresh: owned by the daemon, writable and
// searchable by everyone but not listable, and sticky, so a user can make
// and remove only directories of their own, and finds another's only by
// its name. What a predecessor left there is set aside, under a name in
// runDir that only the daemon can make, closed to everyone else, for
// RemoveOldSpools to remove later: making the spool never depends on what
// users left in it.
func MakeSpool(runDir string) (string, error) {
	dir := filepath.Join(runDir, SpoolDir)
	if err := setAside(runDir); err != nil {
		return "", fmt.Errorf("spool %s: %w", dir, err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("spool %s: %w", dir, err)
	}
	// chmod after mkdir: the umask must not decide who may ask.
	if err := os.Chmod(dir, 0o733|fs.ModeSticky); err != nil {
		return "", fmt.Errorf("spool %s: %w", dir, err)
	}
	return dir, nil
}

// ErrRefused is a request whose directory and reply FIFO are in order but
// whose request file is not: the daemon answers it on the reply FIFO.
var ErrRefused = errors.New("request refused")

// Incoming is a request the daemon accepted from the spool.
type Incoming struct {
	Token string
	// UID owns the request's directory, request file and reply FIFO: the
	// kernel recorded who made them. GID is the request file's group,
	// which its owner may set only to a group it belongs to.
	UID, GID int
	Request  []byte
	Reply    *ReplyWriter
}

// Accept takes the request that token names in spool. It follows no link,
// and takes the request only when its directory (mode 0700 or less), its
// request file (regular, one link, private, at most max bytes) and its
// reply FIFO (private) all belong to the uid that owns the directory. The
// request file is removed once read, so a token is good for one request.
//
// Nothing is returned when even the reply FIFO is not in order (nobody can
// be answered). When only the request file is not, Accept returns both the
// Incoming, with its reply FIFO open, and an error wrapping ErrRefused.
func Accept(spool, token string, max int, replyTimeout time.Duration) (*Incoming, error) {
	if !tokenLine.MatchString(token + "\n") {
		return nil, fmt.Errorf("%q is not a request token", token)
	}
	dfd, err := unix.Open(filepath.Join(spool, token), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("request %s: %w", token, err)
	}
	defer unix.Close(dfd)
	var dir unix.Stat_t
	if err := unix.Fstat(dfd, &dir); err != nil {
		return nil, fmt.Errorf("request %s: %w", token, err)
	}
	if dir.Mode&0o077 != 0 {
		return nil, fmt.Errorf("request %s: its directory is open to others (mode %#o)", token, dir.Mode&0o7777)
	}
	uid := int(dir.Uid)
	reply, err := openReply(dfd, uid, replyTimeout)
	if err != nil {
		return nil, fmt.Errorf("request %s: %w", token, err)
	}
	in := &Incoming{Token: token, UID: uid, GID: -1, Reply: reply}
	in.Request, in.GID, err = readRequest(dfd, uid, max)
	if err != nil {
		return in, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	return in, nil
}

// openReply opens the directory's reply FIFO for writing without waiting:
// only a FIFO the uid owns, that nobody else may open, and that a reader
// holds open.
func openReply(dfd, uid int, timeout time.Duration) (*ReplyWriter, error) {
	var before unix.Stat_t
	if err := unix.Fstatat(dfd, ReplyFIFO, &before, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, fmt.Errorf("reply FIFO: %w", err)
	}
	// Checked before opening too: opening is the one step with effects.
	if err := private(&before, unix.S_IFIFO, uid); err != nil {
		return nil, fmt.Errorf("reply FIFO: %w", err)
	}
	fd, err := unix.Openat(dfd, ReplyFIFO, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENXIO) {
		return nil, ErrGone
	}
	if err != nil {
		return nil, fmt.Errorf("reply FIFO: %w", err)
	}
	var after unix.Stat_t
	if err := unix.Fstat(fd, &after); err != nil || after.Ino != before.Ino || after.Dev != before.Dev {
		unix.Close(fd)
		return nil, errors.New("reply FIFO: replaced while opening")
	}
	return &ReplyWriter{f: os.NewFile(uintptr(fd), ReplyFIFO), timeout: timeout}, nil
}

// readRequest reads and removes the directory's request file.
func readRequest(dfd, uid, max int) ([]byte, int, error) {
	fd, err := unix.Openat(dfd, RequestFile, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, -1, fmt.Errorf("request file: %w", err)
	}
	f := os.NewFile(uintptr(fd), RequestFile)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, -1, fmt.Errorf("request file: %w", err)
	}
	if err := private(&st, unix.S_IFREG, uid); err != nil {
		return nil, -1, fmt.Errorf("request file: %w", err)
	}
	if st.Nlink != 1 {
		return nil, -1, fmt.Errorf("request file: has %d links", st.Nlink)
	}
	if st.Size > int64(max) {
		return nil, -1, fmt.Errorf("the request is longer than %d bytes", max)
	}
	b, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	if err != nil {
		return nil, -1, fmt.Errorf("request file: %w", err)
	}
	if len(b) > max {
		return nil, -1, fmt.Errorf("the request is longer than %d bytes", max)
	}
	unix.Unlinkat(dfd, RequestFile, 0)
	return b, int(st.Gid), nil
}

// private checks that st is of type kind, owned by uid, and that neither
// its group nor others may use it.
func private(st *unix.Stat_t, kind uint32, uid int) error {
	switch {
	case st.Mode&unix.S_IFMT != kind:
		return fmt.Errorf("not a %s", kindName(kind))
	case int(st.Uid) != uid:
		return fmt.Errorf("owned by uid %d, not by uid %d who made the request's directory", st.Uid, uid)
	case st.Mode&0o077 != 0:
		return fmt.Errorf("open to others (mode %#o)", st.Mode&0o7777)
	}
	return nil
}

func kindName(kind uint32) string {
	if kind == unix.S_IFIFO {
		return "FIFO"
	}
	return "regular file"
}

// Outgoing is the CLI's end of one request: its directory in the spool,
// with the reply FIFO open for reading.
type Outgoing struct {
	token, dir string
	*Reply
}

// NewOutgoing makes a request's directory (0700) in spool with its reply
// FIFO (0600), open for reading. It is opened read-write so that reading
// waits for the daemon instead of seeing end of file before the daemon has
// opened it, and so that the daemon finds a reader at once.
func NewOutgoing(spool string) (*Outgoing, error) {
	b := make([]byte, 16)
	rand.Read(b) // never fails (crypto/rand panics rather)
	token := "tpm-" + hex.EncodeToString(b)
	dir := filepath.Join(spool, token)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("request directory: %w", err)
	}
	path := filepath.Join(dir, ReplyFIFO)
	if err := unix.Mkfifo(path, 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("reply FIFO: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOFOLLOW, 0)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("reply FIFO: %w", err)
	}
	return &Outgoing{token: token, dir: dir, Reply: &Reply{f: f, max: MaxReplyLine}}, nil
}

// Token names the request.
func (o *Outgoing) Token() string { return o.token }

// Send leaves request in the request's directory, with group gid unless
// gid < 0 (the daemon takes the group as the requester's), and announces
// it on the request FIFO at path. It fails with ErrNoDaemon when no daemon
// reads the FIFO, with a permission error when the user may not write it
// or may not give the request that group, and when ctx ends before the
// FIFO has room for the token.
func (o *Outgoing) Send(ctx context.Context, path string, request []byte, gid int) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, unix.ENXIO), errors.Is(err, unix.ENOENT):
		return fmt.Errorf("%s: %w", path, ErrNoDaemon)
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return fmt.Errorf("%s: %w", path, fs.ErrPermission)
	case err != nil:
		return fmt.Errorf("%s: %w", path, err)
	}
	pipe := os.NewFile(uintptr(fd), path) // non-blocking: the poller waits for room
	defer pipe.Close()
	if info, err := pipe.Stat(); err != nil || info.Mode()&fs.ModeNamedPipe == 0 {
		return fmt.Errorf("%s is not a FIFO", path)
	}
	if err := o.writeRequest(request, gid); err != nil {
		return err
	}
	if deadline, ok := ctx.Deadline(); ok {
		pipe.SetWriteDeadline(deadline)
	}
	stop := context.AfterFunc(ctx, func() { pipe.SetWriteDeadline(time.Now()) })
	defer stop()
	// One write of less than PIPE_BUF: the kernel delivers it whole or not
	// at all, never mixed with another writer's bytes.
	if _, err := pipe.Write([]byte(o.token + "\n")); err != nil {
		switch {
		case ctx.Err() != nil:
			err = ctx.Err()
		case errors.Is(err, os.ErrDeadlineExceeded): // the context's deadline, just before its timer
			err = context.DeadlineExceeded
		}
		return fmt.Errorf("send to %s: %w", path, err)
	}
	return nil
}

func (o *Outgoing) writeRequest(request []byte, gid int) error {
	f, err := os.OpenFile(filepath.Join(o.dir, RequestFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("request file: %w", err)
	}
	if gid >= 0 {
		if err := f.Chown(-1, gid); err != nil {
			f.Close()
			return fmt.Errorf("request file: %w", err)
		}
	}
	if _, err := f.Write(request); err != nil {
		f.Close()
		return fmt.Errorf("request file: %w", err)
	}
	return f.Close()
}

// Close removes the request's directory.
func (o *Outgoing) Close() error {
	err := o.Reply.close()
	os.RemoveAll(o.dir)
	return err
}
