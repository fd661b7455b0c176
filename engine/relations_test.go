package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"tpm/resolve"
	"tpm/store"
)

const mtaRelations = `"Provides":["mail-transport-agent"],"Conflicts":["mail-transport-agent"],"Replaces":["mail-transport-agent"]`

// relationPackages writes the packages of the relation tests: two mail
// transport agents that share /usr/sbin/sendmail, mutt that needs one, and
// a library split (libfoo2 takes a file over from libfoo1). It returns
// them by name, and postfix and exim4 apart.
func relationPackages(t testing.TB, dir string) (pkgs map[string]string, postfix, exim string) {
	pkgs = map[string]string{
		"postfix": writePackage(t, dir, pkgSpec{name: "postfix", version: "3.8", relations: mtaRelations, files: map[string]string{
			"usr/sbin/sendmail": "postfix", "usr/lib/postfix/master": "m"}}),
		"exim4": writePackage(t, dir, pkgSpec{name: "exim4", version: "4.96", relations: mtaRelations, files: map[string]string{
			"usr/sbin/sendmail": "exim", "usr/lib/exim4/exim4": "e"},
			scripts: map[string]string{"postremove": "#!/bin/sh\necho exim4 gone\n"}}),
		"mutt": writePackage(t, dir, pkgSpec{name: "mutt", version: "2.2", deps: []string{"mail-transport-agent"},
			files: map[string]string{"usr/bin/mutt": "mutt"}}),
		"libfoo1": writePackage(t, dir, pkgSpec{name: "libfoo1", version: "1.0", files: map[string]string{
			"usr/lib/libfoo.so.1": "1", "usr/share/foo/data": "data 1"}}),
		"libfoo2": writePackage(t, dir, pkgSpec{name: "libfoo2", version: "2.0", relations: `"Replaces":["libfoo1 < 2"]`,
			files: map[string]string{"usr/lib/libfoo.so.2": "2", "usr/share/foo/data": "data 2"}}),
		"sendmail": writePackage(t, dir, pkgSpec{name: "sendmail", version: "8", relations: `"Conflicts":["mail-transport-agent"]`,
			files: map[string]string{"usr/sbin/sendmail.real": "s"}}),
		"libfoo2-bad": writePackage(t, t.TempDir(), pkgSpec{name: "libfoo2", version: "2.0",
			files: map[string]string{"usr/share/foo/data": "data 2"}}),
	}
	return pkgs, pkgs["postfix"], pkgs["exim4"]
}

func openTest(t *testing.T, state string) *Engine {
	t.Helper()
	e, _, err := Open(context.Background(), Options{StateDir: state, BuildRoot: buildRootFor(state)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func prepare(e *Engine, prefix string, archives ...string) (*Changeset, error) {
	req := InstallRequest{Prefix: prefix}
	for _, a := range archives {
		req.Archives = append(req.Archives, Archive{Path: a})
	}
	cs, _, err := e.PrepareInstall(context.Background(), req)
	return cs, err
}

// TestMTASwap: installing postfix with exim4 installed removes exim4 in
// the same transaction, after postfix; postfix takes /usr/sbin/sendmail
// over, and mutt, which needs a mail transport agent, stays.
func TestMTASwap(t *testing.T) {
	pkgs, postfix, exim := relationPackages(t, t.TempDir())
	dir := t.TempDir()
	state, prefix := filepath.Join(dir, "state"), filepath.Join(dir, "root")
	installAll(t, state, prefix, []string{exim, pkgs["mutt"]})
	e := openTest(t, state)
	cs, err := prepare(e, prefix, postfix)
	if err != nil {
		t.Fatal(err)
	}
	var plan []string
	for _, op := range cs.Ops {
		plan = append(plan, string(op.Action)+" "+op.Name+" "+op.ReplacedBy)
	}
	if !slices.Equal(plan, []string{"install postfix ", "remove exim4 postfix"}) || cs.Ops[1].Requested {
		t.Fatalf("changeset %q", plan)
	}
	var out []string
	if _, err := e.Apply(context.Background(), cs, Hooks{Output: func(pkg, step, line string) { out = append(out, line) }}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out, []string{"exim4 gone"}) {
		t.Errorf("script output %q", out)
	}
	e.Close()
	versions := checkConsistent(t, state, prefix)
	if len(versions) != 2 || versions["postfix"] != "3.8" || versions["mutt"] != "2.2" {
		t.Errorf("installed %v", versions)
	}
	if b, _ := os.ReadFile(filepath.Join(prefix, "usr/sbin/sendmail")); string(b) != "postfix" {
		t.Errorf("sendmail is %q", b)
	}
	if _, err := os.Stat(filepath.Join(prefix, "usr/lib/exim4")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("exim4's files stayed: %v", err)
	}
}

// TestConflictRefused: a conflict with an installed package that the new
// one does not replace refuses the install in one line, nothing written;
// so does an install of two conflicting packages at once.
func TestConflictRefused(t *testing.T) {
	pkgs, postfix, exim := relationPackages(t, t.TempDir())
	dir := t.TempDir()
	state, prefix := filepath.Join(dir, "state"), filepath.Join(dir, "root")
	installAll(t, state, prefix, []string{postfix})
	e := openTest(t, state)
	_, err := prepare(e, prefix, pkgs["sendmail"])
	var ce *resolve.ConflictError
	if !errors.As(err, &ce) || err.Error() != "cannot install sendmail 8: sendmail 8 conflicts with postfix 3.8 (which provides mail-transport-agent), which is installed and which sendmail does not replace; remove postfix first" {
		t.Errorf("sendmail over postfix: %v", err)
	}
	if _, err := prepare(e, prefix, exim, pkgs["sendmail"]); !errors.As(err, &ce) {
		t.Errorf("exim4 and sendmail together: %v", err)
	}
}

// TestLibrarySplit: libfoo2 replaces libfoo1 < 2 without conflicting with
// it: it takes usr/share/foo/data over, libfoo1 stays without it, and
// removing libfoo1 later leaves the file to libfoo2. Without Replaces the
// same file is a conflict.
func TestLibrarySplit(t *testing.T) {
	pkgs, _, _ := relationPackages(t, t.TempDir())
	dir := t.TempDir()
	state, prefix := filepath.Join(dir, "state"), filepath.Join(dir, "root")
	installAll(t, state, prefix, []string{pkgs["libfoo1"]})
	e := openTest(t, state)
	var conflict *ConflictError
	if _, err := prepare(e, prefix, pkgs["libfoo2-bad"]); !errors.As(err, &conflict) {
		t.Fatalf("without Replaces: %v", err)
	}
	e.Close()
	installAll(t, state, prefix, []string{pkgs["libfoo2"]})
	if v := checkConsistent(t, state, prefix); len(v) != 2 {
		t.Fatalf("installed %v", v)
	}
	e = openTest(t, state)
	e.State().View(func(tx *store.StateTx) error {
		if o := tx.FileOwner(prefix, "usr/share/foo/data"); o != "libfoo2" {
			t.Errorf("data owned by %q", o)
		}
		r, _ := tx.Receipt(prefix, "libfoo1")
		for _, f := range r.Files {
			if f.Path == "usr/share/foo/data" {
				t.Error("libfoo1's receipt still lists the file")
			}
		}
		return nil
	})
	cs, err := e.PrepareRemove(context.Background(), prefix, []string{"libfoo1"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Apply(context.Background(), cs, Hooks{}); err != nil {
		t.Fatal(err)
	}
	e.Close()
	checkConsistent(t, state, prefix)
	if b, _ := os.ReadFile(filepath.Join(prefix, "usr/share/foo/data")); string(b) != "data 2" {
		t.Errorf("data is %q", b)
	}
}
