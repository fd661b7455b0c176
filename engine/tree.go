package engine

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// tree is the prefix being written, opened once. Everyday file work goes
// through the dirCache's descriptors with raw system calls, one component
// at a time and never following a link; os.Root serves what is rare
// (removing a folder whole, moving a bucket).
type tree struct {
	root  *os.Root
	dirs  *dirCache
	umask fs.FileMode
}

func openTree(prefix string) (*tree, error) {
	root, err := os.OpenRoot(prefix)
	if err != nil {
		return nil, fmt.Errorf("prefix: %w", err)
	}
	dirs, err := openDirCache(prefix)
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("prefix: %w", err)
	}
	return &tree{root: root, dirs: dirs, umask: processUmask()}, nil
}

func (t *tree) close() {
	t.dirs.close()
	t.root.Close()
}

// processUmask reads the umask without changing it (umask(2) only sets it,
// and setting it back would race with the process's other threads). If it
// cannot be read, every mode is set explicitly.
func processUmask() fs.FileMode {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0o777
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Umask:"); ok {
			if m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32); err == nil {
				return fs.FileMode(m) & 0o777
			}
		}
	}
	return 0o777
}

// sync makes everything written to the prefix's filesystem durable with one
// syncfs, instead of one fsync per file.
func (t *tree) sync() error {
	if err := unix.Syncfs(t.dirs.root); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	return nil
}

func (t *tree) exists(rel string) bool {
	d, base, err := t.dirs.at(rel)
	if err == nil {
		var st unix.Stat_t
		err = unix.Fstatat(d, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	}
	return err == nil
}

// remove deletes one file or empty directory.
func (t *tree) remove(rel string) error {
	d, base, err := t.dirs.at(rel)
	if err != nil {
		return err
	}
	err = unix.Unlinkat(d, base, 0)
	if err == unix.EISDIR {
		err = unix.Unlinkat(d, base, unix.AT_REMOVEDIR)
	}
	if err != nil {
		return &fs.PathError{Op: "remove", Path: rel, Err: err}
	}
	t.dirs.forget(rel)
	return nil
}

// mkdir creates the directory rel (or takes the one there) and gives it
// exactly mode, whatever the umask. The mode is set through a descriptor
// opened without following links, so a symlink put there is refused, not
// followed.
func (t *tree) mkdir(rel string, mode fs.FileMode) error {
	d, base, err := t.dirs.at(rel)
	if err != nil {
		return err
	}
	if err := unix.Mkdirat(d, base, 0o700); err != nil && err != unix.EEXIST {
		return &fs.PathError{Op: "mkdir", Path: rel, Err: err}
	}
	return t.chmodDir(rel, mode)
}

func (t *tree) chmodDir(rel string, mode fs.FileMode) error {
	fd, err := t.dirs.dir(rel)
	if err != nil {
		return err
	}
	if err := unix.Fchmod(fd, unixMode(mode)); err != nil {
		return &fs.PathError{Op: "chmod", Path: rel, Err: err}
	}
	return nil
}

func (t *tree) symlink(target, rel string) error {
	d, base, err := t.dirs.at(rel)
	if err != nil {
		return err
	}
	if err := unix.Symlinkat(target, d, base); err != nil {
		return &fs.PathError{Op: "symlink", Path: rel, Err: err}
	}
	return nil
}

// link makes rel a hard link of the staged file from.
func (t *tree) link(from, rel string) error {
	fd, fbase, err := t.dirs.at(from)
	if err != nil {
		return err
	}
	td, tbase, err := t.dirs.at(rel)
	if err != nil {
		return err
	}
	if err := unix.Linkat(fd, fbase, td, tbase, 0); err != nil {
		return &fs.PathError{Op: "link", Path: rel, Err: err}
	}
	return nil
}

// removeAll deletes a folder tpm made for itself, whole.
func (t *tree) removeAll(rel string) error {
	t.dirs.forget(rel)
	return t.root.RemoveAll(rel)
}

// move renames across directories (a bucket into place, or aside). A move
// whose target exists has been done (targets are fresh names or a bucket
// just moved aside), which makes recovery's second pass harmless.
func (t *tree) move(from, to string) error {
	if t.exists(to) {
		return nil
	}
	t.dirs.forget(from)
	t.dirs.forget(to)
	if err := t.root.Rename(from, to); err != nil {
		return fmt.Errorf("move %s to %s: %w", from, to, err)
	}
	return nil
}

// placeTree renames a directory staged whole under a temporary name onto
// its target. The target did not exist when the changeset was checked; if it
// does now (a pre-script made it), the staged tree is merged into it entry
// by entry, files replacing files as they would one by one. Done once
// already (recovery passes here again), it is done.
func (t *tree) placeTree(temp, target string) error {
	fd, fbase, err := t.dirs.at(temp)
	if err != nil {
		return err
	}
	td, tbase, err := t.dirs.at(target)
	if err != nil {
		return err
	}
	err = unix.Renameat2(fd, fbase, td, tbase, unix.RENAME_NOREPLACE)
	if err == unix.EINVAL && !t.exists(target) {
		err = unix.Renameat(fd, fbase, td, tbase) // no RENAME_NOREPLACE here
	}
	switch {
	case err == unix.ENOENT && t.exists(target):
		err = nil // renamed before a crash
	case err == unix.EEXIST || err == unix.ENOTEMPTY || err == unix.EINVAL:
		err = t.mergeTree(temp, target)
	}
	t.dirs.forget(temp)
	if err != nil {
		return fmt.Errorf("move %s into place: %w", target, err)
	}
	return nil
}

// mergeTree moves what the staged directory temp holds into the existing
// directory target, and removes temp once it is empty.
func (t *tree) mergeTree(temp, target string) error {
	into, err := t.dirs.dir(target) // refuses a symlink or a file there
	if err != nil {
		return fmt.Errorf("%w: move it away", err)
	}
	from, err := t.dirs.dir(temp)
	if err != nil {
		return err
	}
	f, err := t.root.Open(temp)
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return err
	}
	for _, name := range names {
		err := unix.Renameat2(from, name, into, name, unix.RENAME_NOREPLACE)
		if err == unix.EEXIST {
			staged, serr := lstatAt(from, name)
			there, terr := lstatAt(into, name)
			if serr == nil && terr == nil && staged.IsDir() && there.IsDir() {
				err = t.mergeTree(temp+"/"+name, target+"/"+name)
			} else {
				err = unix.Renameat(from, name, into, name)
			}
		}
		if err != nil {
			return &fs.PathError{Op: "merge", Path: target + "/" + name, Err: err}
		}
	}
	return t.remove(temp)
}

// rename moves a staged temporary onto its target in the same directory.
func (t *tree) rename(temp, target string) error {
	d, base, err := t.dirs.at(target)
	if err != nil {
		return err
	}
	tbase, err := component(temp)
	if err != nil {
		return err
	}
	if err := unix.Renameat(d, tbase, d, base); err != nil {
		return &fs.PathError{Op: "rename", Path: target, Err: err}
	}
	return nil
}

// writeFile creates rel (which must not exist) with data, or what src holds
// when it is not nil, mode and mtime, and returns the content's sha256. The calls are tar's: openat,
// write, utimensat, close, and fchmod only where the umask would cut the
// mode given to openat.
func (t *tree) writeFile(rel string, data []byte, src io.Reader, mode fs.FileMode, mtime time.Time, buf []byte) (string, error) {
	d, base, err := t.dirs.at(rel)
	if err != nil {
		return "", err
	}
	perm := unixMode(mode)
	fd, err := openCreate(d, base, perm)
	if err != nil {
		return "", &fs.PathError{Op: "create", Path: rel, Err: err}
	}
	h := sha256.New()
	if src == nil {
		h.Write(data)
		err = writeAll(fd, data)
	} else {
		err = copyTo(fd, h, src, buf)
	}
	if err == nil && (mode&^fs.ModePerm != 0 || mode&t.umask != 0) {
		err = unix.Fchmod(fd, perm)
	}
	if err == nil {
		ts := []unix.Timespec{unix.NsecToTimespec(mtime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
		err = unix.UtimesNanoAt(d, base, ts, unix.AT_SYMLINK_NOFOLLOW)
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err != nil {
		return "", &fs.PathError{Op: "write", Path: rel, Err: err}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func openCreate(dir int, base string, perm uint32) (int, error) {
	for {
		fd, err := unix.Openat(dir, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

func writeAll(fd int, p []byte) error {
	for len(p) > 0 {
		n, err := unix.Write(fd, p)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		p = p[n:]
	}
	return nil
}

func copyTo(fd int, h io.Writer, src io.Reader, buf []byte) error {
	for {
		n, err := src.Read(buf)
		if n > 0 {
			h.Write(buf[:n])
			if werr := writeAll(fd, buf[:n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// unixMode turns a FileMode's permission and special bits into open(2)'s.
func unixMode(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= unix.S_ISUID
	}
	if m&fs.ModeSetgid != 0 {
		u |= unix.S_ISGID
	}
	if m&fs.ModeSticky != 0 {
		u |= unix.S_ISVTX
	}
	return u
}
