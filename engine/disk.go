package engine

import (
	"errors"
	"io/fs"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// diskView answers lstat questions about paths under a prefix, caching the
// directories it has seen: a package of thousands of files asks about the
// same few parents over and over.
type diskView struct {
	dirs  *dirCache // nil when the prefix does not exist yet
	cache map[string]fs.FileInfo
	miss  map[string]bool
}

func newDiskView(prefix string) *diskView {
	d := &diskView{cache: make(map[string]fs.FileInfo), miss: make(map[string]bool)}
	if dirs, err := openDirCache(prefix); err == nil {
		d.dirs = dirs
	}
	return d
}

func (d *diskView) close() {
	if d.dirs != nil {
		d.dirs.close()
	}
}

func (d *diskView) lstat(rel string) (fs.FileInfo, error) {
	if info, ok := d.cache[rel]; ok {
		return info, nil
	}
	if d.miss[rel] || d.dirs == nil {
		return nil, fs.ErrNotExist
	}
	parent := path.Dir(rel)
	if d.miss[parent] {
		d.miss[rel] = true
		return nil, fs.ErrNotExist
	}
	var info fs.FileInfo
	dir, base, err := d.dirs.at(rel)
	if err == nil {
		info, err = lstatAt(dir, base)
	} else if errors.Is(err, fs.ErrNotExist) {
		d.miss[parent] = true
	}
	if errors.Is(err, fs.ErrNotExist) {
		d.miss[rel] = true
	} else if err == nil {
		d.cache[rel] = info
	}
	return info, err
}

// blockedAbove returns the nearest parent of rel that exists on disk and is
// not a real directory (a symlink, most dangerously), and what it is. The
// rename into place would otherwise follow it somewhere no receipt expects.
func (d *diskView) blockedAbove(rel string) (string, string) {
	for k := strings.IndexByte(rel, '/'); k >= 0; k = nextSlash(rel, k) {
		parent := rel[:k]
		info, err := d.lstat(parent)
		if err != nil {
			return "", "" // missing (staging creates it) or unreadable (staging reports it)
		}
		if !info.IsDir() {
			return parent, kindOf(info)
		}
	}
	return "", ""
}

// nextSlash is the index of the first '/' in s after k, or -1.
func nextSlash(s string, k int) int {
	if n := strings.IndexByte(s[k+1:], '/'); n >= 0 {
		return k + 1 + n
	}
	return -1
}

// lstatAt is Lstat of one name in a directory, by descriptor.
func lstatAt(dir int, base string) (fs.FileInfo, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(dir, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, &fs.PathError{Op: "lstat", Path: base, Err: err}
	}
	return statInfo{name: base, st: st}, nil
}

// statInfo is the FileInfo of a unix.Stat_t.
type statInfo struct {
	name string
	st   unix.Stat_t
}

func (s statInfo) Name() string       { return s.name }
func (s statInfo) Size() int64        { return s.st.Size }
func (s statInfo) ModTime() time.Time { return time.Unix(s.st.Mtim.Unix()) }
func (s statInfo) IsDir() bool        { return s.Mode().IsDir() }
func (s statInfo) Sys() any           { return &s.st }
func (s statInfo) Mode() fs.FileMode {
	m := fs.FileMode(s.st.Mode & 0o777)
	switch s.st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		m |= fs.ModeDir
	case unix.S_IFLNK:
		m |= fs.ModeSymlink
	case unix.S_IFREG:
	case unix.S_IFIFO:
		m |= fs.ModeNamedPipe
	case unix.S_IFSOCK:
		m |= fs.ModeSocket
	case unix.S_IFCHR:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		m |= fs.ModeDevice
	default:
		m |= fs.ModeIrregular
	}
	return m
}

func kindOf(info fs.FileInfo) string {
	switch m := info.Mode(); {
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m.IsDir():
		return "directory"
	case m.IsRegular():
		return "file"
	default:
		return "special file"
	}
}
