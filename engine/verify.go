package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"tpm/store"
)

// Problem is one difference between a receipt and the disk.
type Problem struct {
	Package string
	Path    string // absolute
	Kind    string // missing, type, mode, content, target
	Detail  string
}

func (p Problem) String() string {
	return fmt.Sprintf("%s: %s %s (%s)", p.Package, p.Kind, p.Path, p.Detail)
}

// Verify compares the disk with the receipts of names (all packages of the
// prefix when names is empty): every recorded path must exist with its type,
// mode, content hash and link target.
func (e *Engine) Verify(prefix string, names []string) ([]Problem, error) {
	prefix, err := CleanPrefix(prefix)
	if err != nil {
		return nil, err
	}
	var receipts []*store.Receipt
	err = e.db.View(func(tx *store.StateTx) error {
		if len(names) == 0 {
			receipts, err = tx.Receipts(prefix)
			return err
		}
		for _, n := range names {
			r, err := tx.Receipt(prefix, n)
			if err != nil {
				return err
			}
			if r == nil {
				return fmt.Errorf("%s is not installed in %s", n, prefix)
			}
			receipts = append(receipts, r)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(prefix)
	if err != nil {
		if len(receipts) == 0 {
			return nil, nil
		}
		return nil, fmt.Errorf("verify: %w", err)
	}
	defer root.Close()
	var problems []Problem
	buf := make([]byte, 256<<10)
	for _, r := range receipts {
		for _, f := range r.Files {
			if p := checkFile(root, f, buf); p != nil {
				p.Package, p.Path = r.Name, join(prefix, f.Path)
				problems = append(problems, *p)
			}
		}
	}
	return problems, nil
}

func checkFile(root *os.Root, f store.FileRecord, buf []byte) *Problem {
	info, err := root.Lstat(f.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return &Problem{Kind: "missing", Detail: "recorded as " + string(f.Type)}
	}
	if err != nil {
		return &Problem{Kind: "unreadable", Detail: err.Error()}
	}
	var got store.FileType
	switch {
	case info.IsDir():
		got = store.Dir
	case info.Mode()&fs.ModeSymlink != 0:
		got = store.Symlink
	case info.Mode().IsRegular():
		got = store.File
	default:
		got = "special file"
	}
	if got != f.Type {
		return &Problem{Kind: "type", Detail: fmt.Sprintf("recorded as %s, found %s", f.Type, got)}
	}
	switch f.Type {
	case store.Symlink:
		target, err := root.Readlink(f.Path)
		if err != nil || target != f.Link {
			return &Problem{Kind: "target", Detail: fmt.Sprintf("recorded -> %s, found -> %s", f.Link, target)}
		}
	case store.File:
		if info.Mode() != f.Mode {
			return &Problem{Kind: "mode", Detail: fmt.Sprintf("recorded %v, found %v", f.Mode, info.Mode())}
		}
		sum, err := hashFile(root, f.Path, buf)
		if err != nil {
			return &Problem{Kind: "unreadable", Detail: err.Error()}
		}
		if sum != f.SHA256 {
			return &Problem{Kind: "content", Detail: "sha256 differs from the receipt"}
		}
	}
	return nil
}

func hashFile(root *os.Root, rel string, buf []byte) (string, error) {
	f, err := root.Open(rel)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, buf); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Owners returns the receipts of the packages that own the absolute path
// abs in prefix: one for a file, every owner for a shared directory.
func (e *Engine) Owners(prefix, abs string) ([]*store.Receipt, error) {
	prefix, err := CleanPrefix(prefix)
	if err != nil {
		return nil, err
	}
	abs = filepath.Clean(abs)
	rel, err := filepath.Rel(prefix, abs)
	if err != nil || !filepath.IsLocal(rel) {
		return nil, fmt.Errorf("%s is outside the prefix %s", abs, prefix)
	}
	rel = filepath.ToSlash(rel)
	var out []*store.Receipt
	err = e.db.View(func(tx *store.StateTx) error {
		owners := tx.DirOwners(prefix, rel)
		if o := tx.FileOwner(prefix, rel); o != "" {
			owners = []string{o}
		}
		if len(owners) == 0 {
			return fmt.Errorf("%s is not owned by any package", abs)
		}
		for _, o := range owners {
			r, err := tx.Receipt(prefix, o)
			if err != nil || r == nil {
				return fmt.Errorf("%s: owner %s has no receipt (run tpm verify)", abs, o)
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}
