package engine

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"tpm/store"
)

// TestBackupAtMostEveryFewSeconds: the first transaction writes the copy
// of the state database, one right after it does not (a whole copy per
// transaction made thousands of installs quadratic), and Close writes the
// copy that was due, so it holds every receipt.
func TestBackupAtMostEveryFewSeconds(t *testing.T) {
	state, prefix, pkgs := t.TempDir(), t.TempDir(), t.TempDir()
	a := writePackage(t, pkgs, pkgSpec{name: "a", version: "1", files: map[string]string{"a": "a"}})
	b := writePackage(t, pkgs, pkgSpec{name: "b", version: "1", files: map[string]string{"b": "b"}})
	e, _, err := Open(context.Background(), Options{StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	install := func(path string) {
		t.Helper()
		cs, _, err := e.PrepareInstall(context.Background(), InstallRequest{Prefix: prefix, Archives: []Archive{{Path: path}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.Apply(context.Background(), cs, Hooks{}); err != nil {
			t.Fatal(err)
		}
	}
	bak := filepath.Join(state, DatabaseFile+store.BackupSuffix)
	install(a)
	first, err := os.ReadFile(bak)
	if err != nil {
		t.Fatalf("no copy after the first transaction: %v", err)
	}
	install(b)
	if second, _ := os.ReadFile(bak); !bytes.Equal(first, second) {
		t.Fatal("the copy was written again by a transaction right after the last one")
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenState(bak)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.View(func(tx *store.StateTx) error {
		if n := tx.CountReceipts(prefix); n != 2 {
			t.Errorf("the copy written at close holds %d receipts, want 2", n)
		}
		return nil
	})
}
