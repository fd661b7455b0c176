package engine

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"tpm/tarball"
)

// applySteps installs archives into prefix and returns the steps taken and
// Apply's error (a failing changeset fails the test).
func applySteps(t *testing.T, state, prefix string, archives ...string) ([]string, error) {
	t.Helper()
	var steps []string
	ctx := context.Background()
	e, _, err := Open(ctx, Options{StateDir: state, BuildRoot: buildRootFor(state), Step: func(d string) { steps = append(steps, d) }})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	req := InstallRequest{Prefix: prefix}
	for _, a := range archives {
		req.Archives = append(req.Archives, Archive{Path: a})
	}
	changeset, _, err := e.PrepareInstall(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.Apply(ctx, changeset, Hooks{})
	return steps, err
}

func countSteps(steps []string, prefix string) (n int, which []string) {
	for _, s := range steps {
		if strings.HasPrefix(s, prefix) {
			n++
			which = append(which, s)
		}
	}
	return n, which
}

func TestNewFolderArrivesWhole(t *testing.T) {
	pkgs := t.TempDir()
	files := map[string]string{"opt/p/bin/p": "#!/bin/sh\n", "opt/p/share/a": "a", "opt/p/share/deep/b": "b"}
	a := writePackage(t, pkgs, pkgSpec{name: "p", version: "1", files: files, links: map[string]string{"opt/p/bin/q": "p"}})
	dir := t.TempDir()
	prefix := filepath.Join(dir, "root")
	must(t, os.MkdirAll(prefix, 0o755))
	steps, err := applySteps(t, filepath.Join(dir, "state"), prefix, a)
	if err != nil {
		t.Fatal(err)
	}
	if n, which := countSteps(steps, "move tree "); n != 1 || which[0] != "move tree opt" {
		t.Errorf("tree moves %v, want one of opt", which)
	}
	if n, which := countSteps(steps, "rename "); n != 0 {
		t.Errorf("files renamed one by one: %v", which)
	}
	checkConsistent(t, filepath.Join(dir, "state"), prefix)
	for rel, body := range files {
		if got, err := os.ReadFile(filepath.Join(prefix, rel)); err != nil || string(got) != body {
			t.Errorf("%s: %q, %v", rel, got, err)
		}
	}
}

// Two packages of one transaction that share a new folder: what only one
// has arrives whole, the shared folder file by file.
func TestSharedNewFolderGoesFileByFile(t *testing.T) {
	pkgs := t.TempDir()
	a := writePackage(t, pkgs, pkgSpec{name: "a", version: "1", files: map[string]string{"usr/share/doc/a/README": "a", "usr/share/a/x": "x"}})
	b := writePackage(t, pkgs, pkgSpec{name: "b", version: "1", files: map[string]string{"usr/share/doc/b/README": "b", "usr/share/doc/NEWS": "b"}})
	dir := t.TempDir()
	prefix := filepath.Join(dir, "root")
	steps, err := applySteps(t, filepath.Join(dir, "state"), prefix, a, b)
	if err != nil {
		t.Fatal(err)
	}
	_, trees := countSteps(steps, "move tree ")
	want := []string{"move tree usr/share/a", "move tree usr/share/doc/a", "move tree usr/share/doc/b"}
	if strings.Join(trees, ",") != strings.Join(want, ",") {
		t.Errorf("tree moves %v, want %v", trees, want)
	}
	if _, renames := countSteps(steps, "rename "); strings.Join(renames, ",") != "rename usr/share/doc/NEWS" {
		t.Errorf("renames %v, want only usr/share/doc/NEWS", renames)
	}
	checkConsistent(t, filepath.Join(dir, "state"), prefix)
}

// A pre-script that makes the folder the package brings: the staged tree
// is merged into it, and what the script put there stays.
func TestPreScriptMakesTheNewFolder(t *testing.T) {
	pkgs := t.TempDir()
	a := writePackage(t, pkgs, pkgSpec{name: "a", version: "1",
		files:   map[string]string{"opt/a/lib/x": "x", "opt/a/y": "y"},
		scripts: map[string]string{"preinstall": "#!/bin/sh\nmkdir -p opt/a/lib opt/a/var && echo mine > opt/a/var/state && echo old > opt/a/y\n"}})
	dir := t.TempDir()
	prefix := filepath.Join(dir, "root")
	if _, err := applySteps(t, filepath.Join(dir, "state"), prefix, a); err != nil {
		t.Fatal(err)
	}
	for rel, body := range map[string]string{"opt/a/lib/x": "x", "opt/a/y": "y", "opt/a/var/state": "mine\n"} {
		if got, err := os.ReadFile(filepath.Join(prefix, rel)); err != nil || string(got) != body {
			t.Errorf("%s: %q, %v", rel, got, err)
		}
	}
	leftovers, _ := filepath.Glob(filepath.Join(prefix, "opt", ".tpm-*"))
	if len(leftovers) > 0 {
		t.Errorf("left behind: %v", leftovers)
	}
}

// The attack: between the changeset and the placing, the new folder becomes a
// symlink out of the prefix. Nothing is written through it.
func TestSymlinkInPlaceOfTheNewFolder(t *testing.T) {
	pkgs := t.TempDir()
	outside := t.TempDir()
	a := writePackage(t, pkgs, pkgSpec{name: "a", version: "1",
		files:   map[string]string{"opt/a/x": "x"},
		scripts: map[string]string{"preinstall": "#!/bin/sh\nln -s " + outside + " opt/a 2>/dev/null || { mkdir -p opt && ln -s " + outside + " opt/a; }\n"}})
	dir := t.TempDir()
	prefix := filepath.Join(dir, "root")
	must(t, os.MkdirAll(filepath.Join(prefix, "opt"), 0o755))
	_, err := applySteps(t, filepath.Join(dir, "state"), prefix, a)
	if err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("Apply = %v, want a refusal naming the symlink", err)
	}
	if names, _ := os.ReadDir(outside); len(names) > 0 {
		t.Fatalf("written through the symlink: %v", names)
	}
}

// A package whose info/files lies about its data: the changeset believes the
// listing, staging finds the lie, and nothing is left behind. The second
// case repeats a directory (which tar allows) in place of a listed file: as
// many entries as listed, but not the ones listed.
func TestLyingListingLeavesNothing(t *testing.T) {
	type entry struct {
		name string
		typ  byte
		body string
	}
	listing := "tpm-files 1\nd 0755 0 \"opt\"\nf 0644 1 \"opt/a\"\nf 0644 1 \"opt/b\"\n"
	cases := map[string][]entry{
		"bigger file":        {{"data/opt/", tar.TypeDir, ""}, {"data/opt/a", tar.TypeReg, "a"}, {"data/opt/b", tar.TypeReg, "a much bigger file than listed"}},
		"directory repeated": {{"data/opt/", tar.TypeDir, ""}, {"data/opt/a", tar.TypeReg, "a"}, {"data/opt/", tar.TypeDir, ""}},
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			var raw bytes.Buffer
			gz := gzip.NewWriter(&raw)
			tw := tar.NewWriter(gz)
			add := func(e entry) {
				h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body)), ModTime: time.Unix(1e9, 0)}
				if e.typ == tar.TypeDir {
					h.Mode, h.Size = 0o755, 0
				}
				must(t, tw.WriteHeader(h))
				io.WriteString(tw, e.body)
			}
			add(entry{"info/", tar.TypeDir, ""})
			add(entry{"info/package.json", tar.TypeReg, `{"Name":"liar","Version":"1","Architecture":"any","Type":"Binary"}`})
			add(entry{"info/files", tar.TypeReg, listing})
			add(entry{"data/", tar.TypeDir, ""})
			for _, e := range data {
				add(e)
			}
			must(t, tw.Close())
			must(t, gz.Close())
			archive := filepath.Join(t.TempDir(), "liar.tpkg")
			must(t, os.WriteFile(archive, raw.Bytes(), 0o644))

			dir := t.TempDir()
			prefix, state := filepath.Join(dir, "root"), filepath.Join(dir, "state")
			_, err := applySteps(t, state, prefix, archive)
			var rule *tarball.RuleError
			if !errors.As(err, &rule) || !strings.Contains(err.Error(), "info/files") {
				t.Fatalf("Apply = %v, want a refusal naming info/files", err)
			}
			if names, _ := os.ReadDir(prefix); len(names) > 0 {
				t.Errorf("left in the prefix: %v", names)
			}
			if got := checkConsistent(t, state, prefix); len(got) != 0 {
				t.Errorf("installed: %v", got)
			}
		})
	}
}
