// Package query answers the read-only verbs (search, info, list, files,
// owns, verify, plan: one dispatch, Answer) and plans installs and upgrades
// against the repository index, in the wire protocol's types
// (messages/wire). The daemon and tpm --offline both answer with it, so a
// verb says the same in both modes.
//
// Everything here reads: the receipts through an engine (bbolt readers never
// wait for the one writer, so queries are answered while a transaction
// runs) and an immutable index snapshot.
package query

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"tpm/engine"
	"tpm/index"
	"tpm/manifest"
	"tpm/messages/wire"
	"tpm/store"
)

// Receipts returns the receipts of prefix by package name, without their
// file lists.
func Receipts(e *engine.Engine, prefix string) (map[string]*store.Receipt, error) {
	heads, err := receiptHeads(e, prefix)
	out := make(map[string]*store.Receipt, len(heads))
	for _, r := range heads {
		out[r.Name] = r
	}
	return out, err
}

// receiptHeads are the receipts of prefix by name, without their file
// lists.
func receiptHeads(e *engine.Engine, prefix string) ([]*store.Receipt, error) {
	var heads []*store.Receipt
	err := e.State().View(func(tx *store.StateTx) error {
		var err error
		heads, err = tx.ReceiptHeads(prefix)
		return err
	})
	return heads, err
}

// CountInstalled is how many packages prefix has, counted by key alone, so
// it costs little after every package applied (0 when the database cannot
// be read: it is a figure, not a decision).
func CountInstalled(e *engine.Engine, prefix string) int {
	n := 0
	e.State().View(func(tx *store.StateTx) error {
		n = tx.CountReceipts(prefix)
		return nil
	})
	return n
}

// NoPackage is the error for a name the index does not have.
func NoPackage(name string) error {
	return fmt.Errorf("no package named %s in the index (run tpm sync?)", name)
}

// Search finds the packages whose name or description contains word
// (case-insensitive; "" finds every package), newest version of each, by
// name, marked with the version installed. It reads the index's table in
// memory, not its file.
func Search(idx *index.Snapshot, installed map[string]*store.Receipt, word string) []wire.SearchResult {
	out := []wire.SearchResult{}
	for p := range idx.Newest() {
		if m := (manifest.Manifest{Name: p.Name, Description: p.Description}); !m.Matches(word) {
			continue
		}
		// Copies: the summary's strings share the index's table, which a
		// reply should not keep alive once the index is replaced.
		it := wire.SearchResult{Name: strings.Clone(p.Name), Version: strings.Clone(p.Version), Description: strings.Clone(p.Description)}
		if r := installed[p.Name]; r != nil {
			it.Installed = r.Version
		}
		out = append(out, it)
	}
	return out
}

// Info describes the newest version of name in the index.
func Info(idx *index.Snapshot, installed map[string]*store.Receipt, name string) (*wire.PackageInfo, error) {
	e := idx.Best(name)
	if e == nil {
		if ps := idx.Providers(name); len(ps) > 0 {
			return nil, fmt.Errorf("%s is a virtual package, provided by %s: ask tpm info about one of those", name, strings.Join(ps, ", "))
		}
		return nil, NoPackage(name)
	}
	d := &wire.PackageInfo{Name: e.Name, Version: e.Version, Architecture: e.Architecture, Type: e.Type,
		Maintainer: e.Maintainer, Description: e.Description, Dependencies: []string{},
		File: e.File, Size: e.Size, SHA256: e.SHA256, InfoHash: e.InfoHash}
	for _, dep := range e.Dependencies {
		d.Dependencies = append(d.Dependencies, dep.String())
	}
	d.Provides, d.Conflicts, d.Replaces = strs(e.Provides), strs(e.Conflicts), strs(e.Replaces)
	if r := installed[e.Name]; r != nil {
		d.Installed = &wire.Installed{Version: r.Version, Reason: string(r.Reason), InstalledAt: r.InstalledAt}
	}
	return d, nil
}

// strs is constraints as the wire carries them: strings, nil for none.
func strs(cs manifest.Constraints) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.String())
	}
	return out
}

// Chunk is how many items a part of a long result carries: the daemon
// sends list, files and verify in parts, each as it is read, so no
// request holds a whole answer or a read transaction while a CLI reads.
// The last part may be short or empty.
const Chunk = 256

// listEach passes every package installed in prefix, by name, to each,
// in parts of at most Chunk. Only the receipts' heads are read.
func listEach(e *engine.Engine, prefix string, each func([]wire.InstalledPackage) error) error {
	heads, err := receiptHeads(e, prefix)
	if err != nil {
		return err
	}
	part := make([]wire.InstalledPackage, 0, min(len(heads), Chunk))
	for _, r := range heads { // by name: the database's key order
		part = append(part, wire.InstalledPackage{Name: r.Name, Version: r.Version, Architecture: r.Architecture,
			Reason: string(r.Reason), InstalledAt: r.InstalledAt, Prefix: prefix, Held: r.Held})
		if len(part) == Chunk {
			if err := each(part); err != nil {
				return err
			}
			part = part[:0]
		}
	}
	return each(part) // the last part, maybe empty: a streamed answer has at least one
}

// filesEach passes what the named packages own in prefix, in receipt
// order, to each, in parts of at most Chunk, reading one package's receipt
// at a time.
func filesEach(e *engine.Engine, prefix string, names []string, each func([]wire.PackageFile) error) error {
	if len(names) == 0 {
		return errors.New("files takes package names (tpm files NAME...)")
	}
	part := make([]wire.PackageFile, 0, Chunk)
	for _, n := range names {
		var r *store.Receipt
		err := e.State().View(func(tx *store.StateTx) error {
			var err error
			r, err = tx.Receipt(prefix, n)
			return err
		})
		if err != nil {
			return err
		}
		if r == nil {
			return fmt.Errorf("%s is not installed in %s", n, prefix)
		}
		for _, f := range r.Files {
			part = append(part, wire.PackageFile{Package: n, Path: filepath.Join(prefix, filepath.FromSlash(f.Path)),
				Type: string(f.Type), Mode: fmt.Sprintf("%#o", uint32(f.Mode.Perm())), SHA256: f.SHA256, Link: f.Link})
			if len(part) == Chunk {
				if err := each(part); err != nil {
					return err
				}
				part = part[:0]
			}
		}
	}
	return each(part) // the last part, maybe empty: a streamed answer has at least one
}

// Owns says which package owns each absolute path (every owner of a shared
// directory).
func Owns(e *engine.Engine, prefix string, paths []string) ([]wire.Owner, error) {
	if len(paths) == 0 {
		return nil, errors.New("owns takes absolute paths (tpm owns PATH...)")
	}
	out := []wire.Owner{}
	for _, p := range paths {
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("%s is not an absolute path", p)
		}
		receipts, err := e.Owners(prefix, p)
		if err != nil {
			return nil, err
		}
		for _, r := range receipts {
			out = append(out, wire.Owner{Path: filepath.Clean(p), Name: r.Name, Version: r.Version})
		}
	}
	return out, nil
}

// verifyEach compares the disk with the receipts of names (every package
// of prefix when none is named) and passes what it finds to each, one
// package at a time.
func verifyEach(e *engine.Engine, prefix string, names []string, each func([]wire.Problem) error) error {
	if len(names) == 0 {
		heads, err := receiptHeads(e, prefix)
		if err != nil {
			return err
		}
		for _, h := range heads {
			names = append(names, h.Name)
		}
	}
	var part []wire.Problem
	for _, n := range names {
		problems, err := e.Verify(prefix, []string{n})
		if err != nil {
			return err
		}
		for _, p := range problems {
			part = append(part, wire.Problem{Package: p.Package, Path: p.Path, Kind: p.Kind, Detail: p.Detail})
		}
		if len(part) >= Chunk {
			if err := each(part); err != nil {
				return err
			}
			part = nil
		}
	}
	return each(part) // the last part, maybe empty: a streamed answer has at least one
}
