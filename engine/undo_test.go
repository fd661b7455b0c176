package engine

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestInstallAndRemoveInOneChangeset: what an undo of the MTA swap does,
// exim4 back and postfix away in one changeset: exim4 takes sendmail back
// from postfix, which leaves after it, and mutt's need stays met.
func TestInstallAndRemoveInOneChangeset(t *testing.T) {
	pkgs, postfix, exim := relationPackages(t, t.TempDir())
	dir := t.TempDir()
	state, prefix := filepath.Join(dir, "state"), filepath.Join(dir, "root")
	installAll(t, state, prefix, []string{exim, pkgs["mutt"]})
	installAll(t, state, prefix, []string{postfix})
	e := openTest(t, state)
	cs, _, err := e.PrepareInstall(context.Background(), InstallRequest{Prefix: prefix,
		Archives: []Archive{{Path: exim}}, Remove: []string{"postfix"}})
	if err != nil {
		t.Fatal(err)
	}
	var plan []string
	for _, op := range cs.Ops {
		plan = append(plan, string(op.Action)+" "+op.Name)
	}
	if !slices.Equal(plan, []string{"install exim4", "remove postfix"}) {
		t.Fatalf("changeset %q", plan)
	}
	if _, err := e.Apply(context.Background(), cs, Hooks{}); err != nil {
		t.Fatal(err)
	}
	e.Close()
	versions := checkConsistent(t, state, prefix)
	if len(versions) != 2 || versions["exim4"] != "4.96" || versions["mutt"] != "2.2" {
		t.Errorf("installed %v", versions)
	}
	if b, _ := os.ReadFile(filepath.Join(prefix, "usr/sbin/sendmail")); string(b) != "exim" {
		t.Errorf("sendmail is %q", b)
	}
}

// TestRemoveNamedRefused: a removal beside installs refuses, nothing
// written, what removing alone refuses: a package not installed, one a
// package left needs.
func TestRemoveNamedRefused(t *testing.T) {
	pkgs, postfix, exim := relationPackages(t, t.TempDir())
	dir := t.TempDir()
	state, prefix := filepath.Join(dir, "state"), filepath.Join(dir, "root")
	installAll(t, state, prefix, []string{postfix, pkgs["mutt"]})
	e := openTest(t, state)
	for _, tc := range []struct {
		archives []string
		remove   []string
		want     string
	}{
		{nil, []string{"exim4"}, "exim4 is not installed in " + prefix},
		{nil, []string{"postfix"}, "the change breaks mutt 2.2, which needs mail-transport-agent (not installed)"},
		{[]string{exim}, []string{"exim4"}, "exim4 is not installed in " + prefix},
		{[]string{pkgs["libfoo1"]}, []string{"libfoo1"}, "libfoo1 is not installed in " + prefix},
	} {
		req := InstallRequest{Prefix: prefix, Remove: tc.remove}
		for _, a := range tc.archives {
			req.Archives = append(req.Archives, Archive{Path: a})
		}
		_, _, err := e.PrepareInstall(context.Background(), req)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%v and remove %v: %v, want %q", tc.archives, tc.remove, err, tc.want)
		}
	}
}
