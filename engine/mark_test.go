package engine

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"tpm/store"
)

// apply prepares and applies an install of archives, each with its reason.
func applyInstall(t *testing.T, e *Engine, prefix string, intent Intent, archives map[string]store.Reason) ([]Skipped, error) {
	t.Helper()
	req := InstallRequest{Prefix: prefix, Intent: intent}
	for a, r := range archives {
		req.Archives = append(req.Archives, Archive{Path: a, Reason: r})
	}
	cs, skipped, err := e.PrepareInstall(context.Background(), req)
	if err == nil {
		_, err = e.Apply(context.Background(), cs, Hooks{})
	}
	return skipped, err
}

func receiptOfName(t *testing.T, e *Engine, prefix, name string) *store.Receipt {
	t.Helper()
	var r *store.Receipt
	e.State().View(func(tx *store.StateTx) error {
		var err error
		r, err = tx.Receipt(prefix, name)
		return err
	})
	return r
}

func TestHoldRefusesChangesAndUpgradeSkips(t *testing.T) {
	pkgs, dir := t.TempDir(), t.TempDir()
	prefix := filepath.Join(dir, "root")
	app1 := writePackage(t, pkgs, pkgSpec{name: "app", version: "1.0", files: map[string]string{"usr/bin/app": "1"}})
	app2 := writePackage(t, t.TempDir(), pkgSpec{name: "app", version: "2.0", files: map[string]string{"usr/bin/app": "2"}})
	_, postfix, exim := relationPackages(t, pkgs)
	e := openTest(t, filepath.Join(dir, "state"))
	if _, err := applyInstall(t, e, prefix, Intent{}, map[string]store.Reason{app1: store.Explicit, exim: store.Explicit}); err != nil {
		t.Fatal(err)
	}
	marked, err := e.SetMark(prefix, []string{"app", "exim4"}, MarkHold)
	if err != nil || len(marked) != 2 || !marked[0].Changed || marked[0].Version != "1.0" {
		t.Fatalf("hold: %+v, %v", marked, err)
	}
	if again, _ := e.SetMark(prefix, []string{"app"}, MarkHold); again[0].Changed {
		t.Error("holding a held package again says it changed")
	}

	var held *HeldError
	if _, err := applyInstall(t, e, prefix, Intent{}, map[string]store.Reason{app2: store.Explicit}); !errors.As(err, &held) ||
		err.Error() != "app is held at 1.0: run tpm unhold app first to change it" {
		t.Errorf("install of another version of a held package: %v", err)
	}
	skipped, err := applyInstall(t, e, prefix, Intent{UpgradeOnly: true}, map[string]store.Reason{app2: store.Explicit})
	if err != nil || len(skipped) != 1 || skipped[0].Why != "held" || skipped[0].Version != "1.0" {
		t.Errorf("upgrade of a held package: skipped %+v, %v", skipped, err)
	}
	if _, err := e.PrepareRemove(context.Background(), prefix, []string{"app"}, false); !errors.As(err, &held) {
		t.Errorf("removal of a held package: %v", err)
	}
	if _, err := applyInstall(t, e, prefix, Intent{}, map[string]store.Reason{postfix: store.Explicit}); err == nil ||
		!strings.Contains(err.Error(), "it replaces exim4 4.96, which is held: run tpm unhold exim4 first") {
		t.Errorf("an install that replaces a held package: %v", err)
	}
	// A reinstall of the held version keeps the hold.
	if _, err := applyInstall(t, e, prefix, Intent{Reinstall: true}, map[string]store.Reason{app1: store.Explicit}); err != nil {
		t.Fatal(err)
	}
	if r := receiptOfName(t, e, prefix, "app"); !r.Held || len(r.Files) == 0 {
		t.Errorf("after a reinstall: held %v, %d files", r.Held, len(r.Files))
	}
	if _, err := e.SetMark(prefix, []string{"app"}, MarkUnhold); err != nil {
		t.Fatal(err)
	}
	if _, err := applyInstall(t, e, prefix, Intent{UpgradeOnly: true}, map[string]store.Reason{app2: store.Explicit}); err != nil {
		t.Errorf("upgrade once unheld: %v", err)
	}
	if _, err := e.SetMark(prefix, []string{"app", "nosuch"}, MarkAuto); err == nil || err.Error() != "nosuch is not installed in "+prefix {
		t.Errorf("mark of a package not installed: %v", err)
	}
	if r := receiptOfName(t, e, prefix, "app"); r.Reason != store.Explicit {
		t.Error("a refused mark changed a package")
	}
}

func TestAutoremove(t *testing.T) {
	pkgs, dir := t.TempDir(), t.TempDir()
	prefix := filepath.Join(dir, "root")
	lib := writePackage(t, pkgs, pkgSpec{name: "lib", version: "1", deps: []string{"libc"}, files: map[string]string{"usr/lib/lib": "l"}})
	libc := writePackage(t, pkgs, pkgSpec{name: "libc", version: "1", files: map[string]string{"usr/lib/libc": "c"}})
	app := writePackage(t, pkgs, pkgSpec{name: "app", version: "1", deps: []string{"lib"}, files: map[string]string{"usr/bin/app": "a"}})
	tool := writePackage(t, pkgs, pkgSpec{name: "tool", version: "1", deps: []string{"libc"}, files: map[string]string{"usr/bin/tool": "t"}})
	e := openTest(t, filepath.Join(dir, "state"))
	if _, err := applyInstall(t, e, prefix, Intent{}, map[string]store.Reason{
		lib: store.Dependency, libc: store.Dependency, app: store.Explicit, tool: store.Explicit}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cs, err := e.PrepareRemoval(ctx, RemoveRequest{Prefix: prefix, Autoremove: true})
	if err != nil || len(cs.Ops) != 0 {
		t.Fatalf("autoremove with nothing unneeded: %v", err)
	}
	// Removing app leaves lib unneeded; libc stays for tool.
	cs, err = e.PrepareRemoval(ctx, RemoveRequest{Prefix: prefix, Names: []string{"app"}, Autoremove: true})
	if err != nil {
		t.Fatal(err)
	}
	var plan []string
	for _, op := range cs.Ops {
		plan = append(plan, op.Name+map[bool]string{true: "(unneeded)"}[op.Unneeded])
	}
	if strings.Join(plan, " ") != "app lib(unneeded)" {
		t.Fatalf("remove --autoremove app plans %v", plan)
	}
	cs.History = &store.HistoryTag{UID: 42, Verb: "remove", Args: []string{"app"}}
	if _, err := e.Apply(ctx, cs, Hooks{}); err != nil {
		t.Fatal(err)
	}
	// Marking tool auto leaves it and libc unneeded.
	if _, err := e.SetMark(prefix, []string{"tool"}, MarkAuto); err != nil {
		t.Fatal(err)
	}
	cs, err = e.PrepareRemoval(ctx, RemoveRequest{Prefix: prefix, Autoremove: true})
	if err != nil || len(cs.Ops) != 2 || cs.Ops[0].Name != "tool" || cs.Ops[1].Name != "libc" {
		t.Fatalf("autoremove after mark auto: %v", err)
	}
	e.State().View(func(tx *store.StateTx) error {
		hist, _ := tx.History(0, 10, -1)
		if len(hist) != 2 || hist[0].UID != 42 || hist[0].Verb != "remove" || hist[0].Count != 2 || hist[0].Changes[1].Name != "lib" ||
			hist[0].Changes[1].Reason != store.Dependency {
			t.Errorf("history: %+v", hist)
		}
		return nil
	})
}
