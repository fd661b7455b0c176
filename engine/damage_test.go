package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tpm/store"
)

// wantRestoreLine fails unless err is the one line that names the state
// database's backup and how to put it back.
func wantRestoreLine(t *testing.T, what string, err error, state string) {
	t.Helper()
	db := filepath.Join(state, DatabaseFile)
	restore := fmt.Sprintf("(stop tpmd, then cp %s%s %s)", db, store.BackupSuffix, db)
	if !errors.Is(err, store.ErrDamaged) || !strings.Contains(err.Error(), restore) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("%s: %v, want ErrDamaged with %q on one line", what, err, restore)
	}
}

// TestDamagedStateDatabase: the state database of real installs, with each
// of its pages zeroed in turn (after a clean stop, with the open marker a
// crash leaves, and opened with CheckDatabase: the last two check every
// page at open, and refuse the same pages): Open, then what list, verify
// and remove read, never panic; each either works or gives the one line
// naming tpm.db.bak.
func TestDamagedStateDatabase(t *testing.T) {
	state, prefix, pkgs := t.TempDir(), t.TempDir(), t.TempDir()
	e, _, err := Open(context.Background(), Options{StateDir: state})
	must(t, err)
	for i := range 6 {
		files := map[string]string{}
		for j := range 10 + 5*i {
			files[fmt.Sprintf("usr/share/p%d/f%02d", i, j)] = fmt.Sprintf("file %d of p%d", j, i)
		}
		p := writePackage(t, pkgs, pkgSpec{name: fmt.Sprintf("p%d", i), version: "1", files: files,
			scripts: map[string]string{"postinstall": "#!/bin/sh\ntrue\n"}})
		cs, _, err := e.PrepareInstall(context.Background(), InstallRequest{Prefix: prefix, Archives: []Archive{{Path: p}}})
		must(t, err)
		_, err = e.Apply(context.Background(), cs, Hooks{})
		must(t, err)
	}
	must(t, e.Close())
	good, err := os.ReadFile(filepath.Join(state, DatabaseFile))
	must(t, err)
	bak, err := os.ReadFile(filepath.Join(state, DatabaseFile+store.BackupSuffix))
	must(t, err)
	const pageSize = 4096
	if os.Getpagesize() != pageSize {
		t.Skipf("bbolt's page size here is %d", os.Getpagesize())
	}
	pages := len(good) / pageSize
	if pages > 200 {
		t.Fatalf("%d pages: want a few dozen", pages)
	}
	refused := 0
	for page := range pages {
		openRefused := map[string]bool{}
		for _, mode := range []string{"clean", "unclean", "checked"} {
			unclean := mode == "unclean"
			t.Run(fmt.Sprintf("page%02d-%s", page, mode), func(t *testing.T) {
				dir := t.TempDir()
				data := bytes.Clone(good)
				clear(data[page*pageSize : (page+1)*pageSize])
				db := filepath.Join(dir, DatabaseFile)
				must(t, os.WriteFile(db, data, 0o600))
				must(t, os.WriteFile(db+store.BackupSuffix, bak, 0o600))
				if unclean {
					must(t, os.WriteFile(db+store.OpenMarkerSuffix, nil, 0o600))
				}
				e, _, err := Open(context.Background(), Options{StateDir: dir, CheckDatabase: mode == "checked"})
				if err != nil {
					wantRestoreLine(t, "open", err, dir)
					refused++
					openRefused[mode] = true
					return
				}
				defer e.Close()
				err = e.State().View(func(tx *store.StateTx) error {
					_, err := tx.ReceiptHeads(prefix)
					return err
				})
				if err == nil {
					_, err = e.Verify(prefix, nil)
				}
				if err == nil {
					_, err = e.PrepareRemove(context.Background(), prefix, []string{"p5"}, false)
				}
				if err != nil {
					wantRestoreLine(t, "read", err, dir)
					refused++
				}
			})
		}
		if openRefused["unclean"] != openRefused["checked"] {
			t.Errorf("page %d: refused at open after an unclean stop: %v, when checked: %v", page, openRefused["unclean"], openRefused["checked"])
		}
	}
	t.Logf("%d pages: %d of %d opens or reads refused", pages, refused, 3*pages)
	if refused == 0 {
		t.Fatal("no zeroed page was found")
	}
}

// TestMissingStateDatabase: tpm.db gone while tpm.db.bak is there is
// refused with the way back, not opened as a host with nothing installed.
func TestMissingStateDatabase(t *testing.T) {
	state := t.TempDir()
	e, _, err := Open(context.Background(), Options{StateDir: state})
	must(t, err)
	must(t, e.db.Backup())
	must(t, e.Close())
	must(t, os.Remove(filepath.Join(state, DatabaseFile)))
	_, _, err = Open(context.Background(), Options{StateDir: state})
	wantRestoreLine(t, "open", err, state)
	if _, err := os.Stat(filepath.Join(state, DatabaseFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("the refused open made a new database")
	}
}
