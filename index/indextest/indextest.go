// Package indextest makes what a host's index is made from, for tests: a
// folder of packages scanned and signed as a repository server would, and
// the verified snapshot a host loads from it.
package indextest

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"tpm/generation"
	"tpm/index"
	"tpm/repo"
	"tpm/repo/repotest"
	"tpm/signing"
	"tpm/store"
)

// Repo is a package folder, its signed generation and a host's state
// directory that keeps it.
type Repo struct {
	Dir        string
	Generation *generation.Generation
	Public     signing.PublicKey
	StateDir   string          // holds index.db and index.db.sig
	Snapshot   *index.Snapshot // loaded from StateDir
}

// New packs pkgs into a new folder and indexes it.
func New(t testing.TB, pkgs ...repotest.Package) *Repo {
	t.Helper()
	return In(t, t.TempDir(), pkgs...)
}

// In packs pkgs into dir (which may hold packages already) and indexes
// all of it.
func In(t testing.TB, dir string, pkgs ...repotest.Package) *Repo {
	t.Helper()
	for _, p := range pkgs {
		repotest.Make(t, dir, p)
	}
	keyPath, pubPath, err := signing.Keygen(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	key, err := signing.LoadKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := signing.LoadPublicKey(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	cat, err := store.OpenCatalog(filepath.Join(t.TempDir(), "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	g, _, err := repo.NewScanner(cat, repo.Options{Dir: dir, PublicURL: "http://127.0.0.1:1", Signer: key, Trackers: []string{"http://127.0.0.1:1/announce"}}).Scan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r := &Repo{Dir: dir, Generation: g, Public: pub, StateDir: t.TempDir()}
	indexDB, err := g.Index.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{index.IndexFile: indexDB, index.SigFile: g.IndexSig} {
		if err := os.WriteFile(filepath.Join(r.StateDir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if r.Snapshot, err = index.New([]string{"http://127.0.0.1:1"}, pub, r.StateDir).Load(); err != nil {
		t.Fatal(err)
	}
	return r
}
