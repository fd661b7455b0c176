package engine

import (
	"fmt"
	"io/fs"
	"path"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// dirCache keeps a descriptor of each directory under a prefix, so that
// working on a file is one system call on its base name instead of a walk
// through every component of its path (a 5,000-file package otherwise pays
// about 120,000 extra openat calls). Each directory is opened from its
// parent's descriptor with O_NOFOLLOW|O_DIRECTORY, one component at a time,
// and names are single components, so nothing resolves outside the prefix,
// as with os.Root; unlike os.Root, the calls on a file are the kernel's
// alone (os.Root adds a readlinkat to every utimensat and an lstat to every
// rename, and os.File a poller registration to every open).
type dirCache struct {
	root int
	mu   sync.Mutex // staging workers share the cache
	dirs map[string]int
}

// openDirCache opens prefix, which must be a directory (a symlink to one is
// followed: the prefix is the user's to choose).
func openDirCache(prefix string) (*dirCache, error) {
	fd, err := unix.Open(prefix, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: prefix, Err: err}
	}
	return &dirCache{root: fd, dirs: make(map[string]int)}, nil
}

// dir returns the descriptor of the directory rel ("." for the prefix).
func (c *dirCache) dir(rel string) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dirLocked(rel)
}

func (c *dirCache) dirLocked(rel string) (int, error) {
	if rel == "." || rel == "" {
		return c.root, nil
	}
	if fd, ok := c.dirs[rel]; ok {
		return fd, nil
	}
	parent, err := c.dirLocked(path.Dir(rel))
	if err != nil {
		return -1, err
	}
	base, err := component(rel)
	if err != nil {
		return -1, err
	}
	fd, err := unix.Openat(parent, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if err == unix.ELOOP || err == unix.ENOTDIR {
			if info, serr := lstatAt(parent, base); serr == nil {
				return -1, fmt.Errorf("%s is a %s, not a directory: %w", rel, kindOf(info), unix.ENOTDIR)
			}
		}
		return -1, &fs.PathError{Op: "openat", Path: rel, Err: err}
	}
	c.dirs[rel] = fd
	return fd, nil
}

// at returns the descriptor of rel's directory and rel's base name.
func (c *dirCache) at(rel string) (int, string, error) {
	base, err := component(rel)
	if err != nil {
		return -1, "", err
	}
	fd, err := c.dir(path.Dir(rel))
	return fd, base, err
}

// component is rel's base name, refused when it could step anywhere but
// into one entry of its directory.
func component(rel string) (string, error) {
	base := path.Base(rel)
	if base == "." || base == ".." || base == "/" || strings.ContainsRune(base, '/') || rel == "" {
		return "", &fs.PathError{Op: "resolve", Path: rel, Err: fs.ErrInvalid}
	}
	return base, nil
}

// forget drops rel and everything cached below it, after rel was removed
// or moved: a descriptor of a directory gone elsewhere would write there.
func (c *dirCache) forget(rel string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for d, fd := range c.dirs {
		if d == rel || strings.HasPrefix(d, rel+"/") {
			unix.Close(fd)
			delete(c.dirs, d)
		}
	}
}

func (c *dirCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, fd := range c.dirs {
		unix.Close(fd)
	}
	c.dirs = nil
	unix.Close(c.root)
}
