package engine

import (
	"errors"
	"io/fs"
	"os"
	"path"
)

// diskView answers lstat questions about paths under a prefix, caching the
// directories it has seen: a package of thousands of files asks about the
// same few parents over and over.
type diskView struct {
	root  *os.Root // nil when the prefix does not exist yet
	dirs  *dirCache
	cache map[string]fs.FileInfo
	miss  map[string]bool
}

func newDiskView(prefix string) *diskView {
	d := &diskView{cache: make(map[string]fs.FileInfo), miss: make(map[string]bool)}
	if root, err := os.OpenRoot(prefix); err == nil {
		d.root, d.dirs = root, newDirCache(root)
	}
	return d
}

func (d *diskView) close() {
	if d.root != nil {
		d.dirs.close()
		d.root.Close()
	}
}

func (d *diskView) lstat(rel string) (fs.FileInfo, error) {
	if info, ok := d.cache[rel]; ok {
		return info, nil
	}
	if d.miss[rel] || d.root == nil {
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
		info, err = dir.Lstat(base)
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
	var parents []string
	for p := path.Dir(rel); p != "."; p = path.Dir(p) {
		parents = append(parents, p)
	}
	for i := len(parents) - 1; i >= 0; i-- {
		info, err := d.lstat(parents[i])
		if err != nil {
			return "", "" // missing (staging creates it) or unreadable (staging reports it)
		}
		if !info.IsDir() {
			return parents[i], kindOf(info)
		}
	}
	return "", ""
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
