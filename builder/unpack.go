package builder

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"

	"tpm/manifest"
	"tpm/tarball"
)

// maxLinkHops is the kernel's limit on symlinks followed in one lookup
// (MAXSYMLINKS); a chain longer than that cannot be followed anyway.
const maxLinkHops = 40

// unpack writes data/ of the archive into dir (which it makes) through an
// os.Root, after tarball.Reader has applied every hostile-input rule to each
// entry. Modes are kept without setuid, setgid and sticky bits, and mtimes
// are kept because make compares them: a configure older than its
// configure.ac would make the build try to run autoconf. Symlinks must stay
// inside the tree when followed, since the build will follow them.
func unpack(ctx context.Context, archive string, limits tarball.Limits, dir string) (*manifest.Manifest, error) {
	f, err := os.Open(archive)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr, err := tarball.NewReader(bufio.NewReaderSize(f, 1<<20), limits)
	if err != nil {
		return nil, err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()

	dirs, links, err := placeAll(ctx, tr, root)
	if err != nil {
		return nil, err
	}
	if err := checkLinks(links); err != nil {
		return nil, err
	}
	if err := setDirModes(root, dirs); err != nil {
		return nil, err
	}
	m, err := manifest.Parse(tr.Info()["package.json"])
	if err != nil {
		return nil, fmt.Errorf("info/package.json: %w", err)
	}
	return m, nil
}

// placeAll writes every entry of tr into root. It returns the directories,
// whose modes and mtimes wait for their contents, and the symlinks, by
// path, for checkLinks.
func placeAll(ctx context.Context, tr *tarball.Reader, root *os.Root) ([]tarball.Entry, map[string]string, error) {
	var dirs []tarball.Entry
	links := make(map[string]string)
	for {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		entry, content, err := tr.Next()
		if err == io.EOF {
			return dirs, links, nil
		}
		if err != nil {
			return nil, nil, err
		}
		if err := place(root, entry, content); err != nil {
			var rule *tarball.RuleError
			if errors.As(err, &rule) {
				return nil, nil, err
			}
			return nil, nil, fmt.Errorf("data/%s: %w", entry.Path, err)
		}
		switch entry.Type {
		case tarball.TypeDir:
			dirs = append(dirs, entry)
		case tarball.TypeSymlink:
			links[entry.Path] = entry.Link
		}
	}
}

// setDirModes gives the directories their modes and mtimes, last and
// deepest first: writing their contents changed their mtimes, and a
// read-only one would have stopped the writing.
func setDirModes(root *os.Root, dirs []tarball.Entry) error {
	for _, d := range slices.Backward(dirs) {
		// Owner rwx stays, so that the tree can always be removed.
		if err := root.Chmod(d.Path, d.Mode.Perm()|0o700); err != nil {
			return fmt.Errorf("data/%s: %w", d.Path, err)
		}
		if err := root.Chtimes(d.Path, d.ModTime, d.ModTime); err != nil {
			return fmt.Errorf("data/%s: %w", d.Path, err)
		}
	}
	return nil
}

// place writes one entry. Parents the archive does not list are made 0755
// (less the umask); listed directories get their own mode at the end.
func place(root *os.Root, e tarball.Entry, content io.Reader) error {
	if parent := path.Dir(e.Path); parent != "." {
		if err := root.MkdirAll(parent, 0o755); err != nil {
			return err
		}
	}
	switch e.Type {
	case tarball.TypeDir:
		err := root.Mkdir(e.Path, 0o700)
		if errors.Is(err, os.ErrExist) {
			// Made as a parent earlier, or listed twice (which the
			// reader allows for directories only).
			if st, serr := root.Lstat(e.Path); serr == nil && st.IsDir() {
				return nil
			}
		}
		return err
	case tarball.TypeFile:
		f, err := root.OpenFile(e.Path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, content)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		if err := root.Chmod(e.Path, e.Mode.Perm()); err != nil {
			return err
		}
		return root.Chtimes(e.Path, e.ModTime, e.ModTime)
	case tarball.TypeSymlink:
		if path.IsAbs(e.Link) {
			return &tarball.RuleError{Entry: "data/" + e.Path, Rule: fmt.Sprintf("symlink target %q is absolute; links in a source tree must stay inside it", e.Link)}
		}
		return root.Symlink(e.Link, e.Path)
	case tarball.TypeHardlink:
		return root.Link(e.Link, e.Path)
	}
	return fmt.Errorf("unexpected entry type %v", e.Type)
}

// checkLinks refuses a tree in which following some symlink leads outside
// the tree. It resolves as the kernel does: a ".." after a symlink goes up
// from where the symlink led, not lexically, so "l -> .." and
// "x -> sub/l/.." are caught although "sub/l/.." looks harmless.
func checkLinks(links map[string]string) error {
	names := make([]string, 0, len(links))
	for name := range links {
		names = append(names, name)
	}
	slices.Sort(names) // the first refusal is the same every time
	for _, name := range names {
		hops := 0
		if _, err := resolve(links, parts(path.Dir(name)), links[name], &hops); err != nil {
			return &tarball.RuleError{Entry: "data/" + name, Rule: fmt.Sprintf("symlink target %q %v", links[name], err)}
		}
	}
	return nil
}

var (
	errAbsolute = errors.New("is absolute; links in a source tree must stay inside it")
	errEscapes  = errors.New("leads outside the source tree")
	errLoop     = fmt.Errorf("goes through more than %d symlinks", maxLinkHops)
)

// resolve follows target from the directory dir (components relative to
// the tree's top) and returns where it leads, or why it may not.
func resolve(links map[string]string, dir []string, target string, hops *int) ([]string, error) {
	if strings.HasPrefix(target, "/") {
		return nil, errAbsolute
	}
	cur := slices.Clone(dir)
	for _, c := range strings.Split(target, "/") {
		switch c {
		case "", ".":
		case "..":
			if len(cur) == 0 {
				return nil, errEscapes
			}
			cur = cur[:len(cur)-1]
		default:
			cur = append(cur, c)
			next, ok := links[strings.Join(cur, "/")]
			if !ok {
				continue
			}
			if *hops++; *hops > maxLinkHops {
				return nil, errLoop
			}
			var err error
			if cur, err = resolve(links, cur[:len(cur)-1], next, hops); err != nil {
				return nil, err
			}
		}
	}
	return cur, nil
}

func parts(dir string) []string {
	if dir == "." || dir == "" {
		return nil
	}
	return strings.Split(dir, "/")
}
