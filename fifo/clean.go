package fifo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// What users leave in the spool is removed by the daemon as root, so the
// removal trusts nothing it finds: it opens each directory from its
// parent's descriptor without following links, holds at most a few
// descriptors at once, and does a bounded amount of work; on anything odd
// it gives up and says why, leaving the rest where it is.

// oldSpoolPrefix names a spool set aside by MakeSpool, in the run
// directory, where only the daemon can make names.
const oldSpoolPrefix = ".spool-old-"

// Bounds of one removal. A request's directory holds two files; an old
// spool holds request directories. Deeper directories of an old spool are
// moved up to its top and removed from there, so depth costs renames, not
// descriptors; a request directory deeper than requestDepth is left alone.
const (
	spoolDepth    = 16
	requestDepth  = 4
	spoolSteps    = 20_000_000
	requestSteps  = 10_000
	ctxCheckEvery = 1024
)

// errStopped is a removal cut short by its context.
var errStopped = errors.New("removal stopped")

// remover removes one tree.
type remover struct {
	ctx      context.Context
	maxDepth int
	steps    int // left
	top      int // where too-deep directories are moved; -1: nowhere
	moved    int
	buf      []byte
}

func newRemover(ctx context.Context, depth, steps, top int) *remover {
	return &remover{ctx: ctx, maxDepth: depth, steps: steps, top: top, buf: make([]byte, 8192)}
}

// step spends one unit of work.
func (r *remover) step() error {
	if r.steps--; r.steps < 0 {
		return errors.New("too many entries: gave up")
	}
	if r.steps%ctxCheckEvery == 0 && r.ctx.Err() != nil {
		return errStopped
	}
	return nil
}

// removeAt removes name in the directory dfd, at depth, and what it holds.
func (r *remover) removeAt(dfd int, name string, depth int) error {
	for try := 0; ; try++ {
		if err := r.step(); err != nil {
			return err
		}
		err := unix.Unlinkat(dfd, name, 0)
		switch {
		case err == nil, errors.Is(err, unix.ENOENT):
			return nil
		case !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM):
			return fmt.Errorf("remove %s: %w", name, err)
		}
		if try >= 3 {
			return fmt.Errorf("remove %s: it keeps changing", name)
		}
		if depth >= r.maxDepth {
			if r.top < 0 {
				return fmt.Errorf("remove %s: more than %d directories deep", name, r.maxDepth)
			}
			r.moved++
			err := unix.Renameat(dfd, name, r.top, fmt.Sprintf(".deep-%d", r.moved))
			if err == nil || errors.Is(err, unix.ENOENT) {
				return nil
			}
			return fmt.Errorf("move %s up: %w", name, err)
		}
		fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		switch {
		case errors.Is(err, unix.ENOENT):
			return nil
		case errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENOTDIR):
			continue // no longer a directory: unlink it again
		case err != nil:
			return fmt.Errorf("open %s: %w", name, err)
		}
		err = r.empty(fd, depth+1)
		unix.Close(fd)
		if err != nil {
			return err
		}
		err = unix.Unlinkat(dfd, name, unix.AT_REMOVEDIR)
		switch {
		case err == nil, errors.Is(err, unix.ENOENT):
			return nil
		case errors.Is(err, unix.ENOTEMPTY), errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.EEXIST):
			continue // changed under us: try again, a few times
		default:
			return fmt.Errorf("remove %s: %w", name, err)
		}
	}
}

// empty removes what the directory fd holds, whose entries are at depth.
func (r *remover) empty(fd, depth int) error {
	for pass := 0; ; pass++ {
		if pass > 0 {
			if _, err := unix.Seek(fd, 0, 0); err != nil {
				return err
			}
		}
		seen, err := r.pass(fd, depth)
		if err != nil {
			return err
		}
		if seen == 0 || pass >= 64 {
			return nil // the caller's rmdir says whether it is empty
		}
	}
}

// pass reads the directory fd once, in chunks, removing its entries (at
// depth) as they come, and says how many it found.
func (r *remover) pass(fd, depth int) (int, error) {
	seen := 0
	for {
		if err := r.step(); err != nil {
			return seen, err
		}
		n, err := unix.Getdents(fd, r.buf)
		if err != nil {
			return seen, fmt.Errorf("read directory: %w", err)
		}
		if n <= 0 {
			return seen, nil
		}
		_, _, names := unix.ParseDirent(r.buf[:n], -1, nil)
		for _, name := range names {
			if name == "." || name == ".." {
				continue
			}
			seen++
			if err := r.removeAt(fd, name, depth); err != nil {
				return seen, err
			}
		}
	}
}

// removeTop removes the directory dfd names as name: its entries, and
// those moved up to it, until it is empty.
func (r *remover) removeTop(dfd int, name string) error {
	fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer unix.Close(fd)
	r.top = fd
	for {
		// Entries are read in chunks and removed as they come; what a
		// chunk moved up is found by the next pass.
		if _, err := unix.Seek(fd, 0, 0); err != nil {
			return err
		}
		seen, err := r.pass(fd, 1)
		if err != nil {
			return err
		}
		if seen == 0 {
			break
		}
	}
	if err := unix.Unlinkat(dfd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove: %w", err)
	}
	return nil
}

// setAside renames runDir's spool, if there is one, to a name in runDir
// (where only the daemon makes names) and closes it to everyone else.
func setAside(runDir string) error {
	dir := filepath.Join(runDir, SpoolDir)
	b := make([]byte, 8)
	rand.Read(b)
	aside := filepath.Join(runDir, oldSpoolPrefix+hex.EncodeToString(b))
	if err := os.Rename(dir, aside); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	// Whoever walks in by its new name finds the door shut. Not following
	// a link: the aside is the daemon's, but be strict anyway.
	fd, err := unix.Open(aside, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == nil {
		unix.Fchmod(fd, 0o700)
		unix.Close(fd)
	}
	return nil
}

// RemoveOldSpools removes the spools MakeSpool set aside in runDir, as the
// daemon, following no link, and gives up on one after a bounded amount of
// work or on anything odd, leaving it for the next start. It returns what
// it gave up on, one error per spool; ctx stops it.
func RemoveOldSpools(ctx context.Context, runDir string) error {
	entries, err := os.ReadDir(runDir)
	if err != nil {
		return err
	}
	dfd, err := unix.Open(runDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	var errs []error
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), oldSpoolPrefix) {
			continue
		}
		if err := newRemover(ctx, spoolDepth, spoolSteps, -1).removeTop(dfd, e.Name()); err != nil {
			errs = append(errs, fmt.Errorf("old spool %s: %w", filepath.Join(runDir, e.Name()), err))
			if errors.Is(err, errStopped) {
				break
			}
		}
	}
	return errors.Join(errs...)
}

// Owner is the uid that owns the request directory token names in spool.
func Owner(spool, token string) (int, error) {
	if !tokenLine.MatchString(token + "\n") {
		return -1, fmt.Errorf("%q is not a request token", token)
	}
	var st unix.Stat_t
	if err := unix.Fstatat(unix.AT_FDCWD, filepath.Join(spool, token), &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return -1, fmt.Errorf("request %s: %w", token, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return -1, fmt.Errorf("request %s: not a directory", token)
	}
	return int(st.Uid), nil
}

// RemoveRequest removes the request directory token names in spool and
// what it holds, following no link; a directory with more in it than a
// request leaves (deeper than a few levels, or thousands of entries) is
// left as it is and named in the error.
func RemoveRequest(ctx context.Context, spool, token string) error {
	if !tokenLine.MatchString(token + "\n") {
		return fmt.Errorf("%q is not a request token", token)
	}
	dfd, err := unix.Open(spool, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	if err := newRemover(ctx, requestDepth, requestSteps, -1).removeAt(dfd, token, 1); err != nil {
		return fmt.Errorf("request %s: %w", token, err)
	}
	return nil
}
