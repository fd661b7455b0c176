// Package query answers the read-only verbs (search, info, list, files,
// owns, verify) and plans installs and upgrades against the repository
// index, in the wire protocol's types (messages). The daemon and tpm
// --offline both answer with it, so a verb says the same in both modes.
//
// Everything here reads: the receipts through an engine (bbolt readers never
// wait for the one writer, so queries are answered while a transaction
// runs) and an immutable index snapshot.
package query

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"tpm/engine"
	"tpm/index"
	"tpm/messages"
	"tpm/store"
)

// Receipts returns the receipts of prefix by package name.
func Receipts(e *engine.Engine, prefix string) (map[string]*store.Receipt, error) {
	out := make(map[string]*store.Receipt)
	err := e.DB().View(func(tx *store.Tx) error {
		rs, err := tx.Receipts(prefix)
		for _, r := range rs {
			out[r.Name] = r
		}
		return err
	})
	return out, err
}

// NoPackage is the error for a name the index does not have.
func NoPackage(name string) error {
	return fmt.Errorf("no package named %s in the index (run tpm sync?)", name)
}

// Search finds the packages whose name or description contains word
// (case-insensitive; "" finds every package), newest version of each, by
// name, marked with the version installed.
func Search(idx *index.Snapshot, installed map[string]*store.Receipt, word string) []messages.SearchResult {
	word = strings.ToLower(word)
	out := []messages.SearchResult{}
	seen := map[string]bool{}
	for _, e := range idx.Entries { // by name, newest first
		if seen[e.Name] {
			continue
		}
		seen[e.Name] = true
		if strings.Contains(e.Name, word) || strings.Contains(strings.ToLower(e.Description), word) {
			it := messages.SearchResult{Name: e.Name, Version: e.Version, Description: e.Description}
			if r := installed[e.Name]; r != nil {
				it.Installed = r.Version
			}
			out = append(out, it)
		}
	}
	return out
}

// Info describes the newest version of name in the index.
func Info(idx *index.Snapshot, installed map[string]*store.Receipt, name string) (*messages.PackageInfo, error) {
	e := idx.Best(name)
	if e == nil {
		return nil, NoPackage(name)
	}
	d := &messages.PackageInfo{Name: e.Name, Version: e.Version, Architecture: e.Architecture, Type: e.Type,
		Maintainer: e.Maintainer, Description: e.Description, Dependencies: []string{},
		File: e.File, Size: e.Size, SHA256: e.SHA256, InfoHash: e.InfoHash}
	for _, dep := range e.Dependencies {
		d.Dependencies = append(d.Dependencies, dep.String())
	}
	if r := installed[e.Name]; r != nil {
		d.Installed = &messages.Installed{Version: r.Version, Reason: string(r.Reason), InstalledAt: r.InstalledAt}
	}
	return d, nil
}

// List is every package installed in prefix, by name.
func List(e *engine.Engine, prefix string) ([]messages.InstalledPackage, error) {
	var receipts []*store.Receipt
	err := e.DB().View(func(tx *store.Tx) error {
		var err error
		receipts, err = tx.Receipts(prefix)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := []messages.InstalledPackage{}
	for _, r := range receipts {
		out = append(out, messages.InstalledPackage{Name: r.Name, Version: r.Version, Architecture: r.Architecture,
			Reason: string(r.Reason), InstalledAt: r.InstalledAt, Prefix: prefix})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Files lists what the named packages own in prefix, in receipt order.
func Files(e *engine.Engine, prefix string, names []string) ([]messages.PackageFile, error) {
	if len(names) == 0 {
		return nil, errors.New("files takes package names (tpm files NAME...)")
	}
	out := []messages.PackageFile{}
	err := e.DB().View(func(tx *store.Tx) error {
		for _, n := range names {
			r, err := tx.Receipt(prefix, n)
			if err != nil {
				return err
			}
			if r == nil {
				return fmt.Errorf("%s is not installed in %s", n, prefix)
			}
			for _, f := range r.Files {
				out = append(out, messages.PackageFile{Package: n, Path: filepath.Join(prefix, filepath.FromSlash(f.Path)),
					Type: string(f.Type), Mode: fmt.Sprintf("%#o", uint32(f.Mode.Perm())), SHA256: f.SHA256, Link: f.Link})
			}
		}
		return nil
	})
	return out, err
}

// Owns says which package owns each absolute path (every owner of a shared
// directory).
func Owns(e *engine.Engine, prefix string, paths []string) ([]messages.Owner, error) {
	if len(paths) == 0 {
		return nil, errors.New("owns takes absolute paths (tpm owns PATH...)")
	}
	out := []messages.Owner{}
	for _, p := range paths {
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("%s is not an absolute path", p)
		}
		receipts, err := e.Owners(prefix, p)
		if err != nil {
			return nil, err
		}
		for _, r := range receipts {
			out = append(out, messages.Owner{Path: filepath.Clean(p), Name: r.Name, Version: r.Version})
		}
	}
	return out, nil
}

// Verify compares the disk with the receipts of names (every package of
// prefix when none is named).
func Verify(e *engine.Engine, prefix string, names []string) ([]messages.Problem, error) {
	problems, err := e.Verify(prefix, names)
	if err != nil {
		return nil, err
	}
	out := []messages.Problem{}
	for _, p := range problems {
		out = append(out, messages.Problem{Package: p.Package, Path: p.Path, Kind: p.Kind, Detail: p.Detail})
	}
	return out, nil
}
