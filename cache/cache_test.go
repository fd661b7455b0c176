package cache

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tpm/manifest"
	"tpm/store"
)

func record(name, version string) *Record {
	return &Record{Name: name, Version: version, File: name + "-" + version + ".tpkg", InfoHash: strings.Repeat("ab", 20)}
}

func state(t *testing.T, installed ...[2]string) *store.State {
	t.Helper()
	st, err := store.OpenState(filepath.Join(t.TempDir(), "tpm.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	err = st.Update(func(tx *store.StateTx) error {
		for _, nv := range installed {
			r := &store.Receipt{Manifest: manifest.Manifest{Name: nv[0], Version: nv[1], Architecture: "any", Type: "Binary"}, Prefix: "/p", Reason: store.Explicit}
			if err := tx.PutReceipt(r, nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestReconcileKeepsWhatReceiptsReference(t *testing.T) {
	recs := Records{Dir: t.TempDir()}
	dir := t.TempDir()
	for _, r := range []*Record{record("a", "1"), record("a", "2"), record("b", "1")} {
		if err := recs.Put(r); err != nil {
			t.Fatal(err)
		}
	}
	bad := record("c", "1")
	bad.InfoHash = "zz"
	recs.Put(bad)
	os.WriteFile(filepath.Join(dir, bad.File), []byte("x"), 0o644)

	keep, drop, err := Reconcile(state(t, [2]string{"a", "2"}), recs, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(keep) != 1 || keep[0].Version != "2" {
		t.Fatalf("kept %v, want a 2", keep)
	}
	if len(drop) != 2 {
		t.Fatalf("dropped %v, want a 1 and b 1", drop)
	}
	left, _ := recs.All()
	if len(left) != 1 {
		t.Fatalf("%d records left, want the one kept", len(left))
	}
	if _, err := os.Stat(filepath.Join(dir, bad.File)); !os.IsNotExist(err) {
		t.Fatal("the file of a record with a bad infohash stayed")
	}
}

func TestReleaseKeepsAVersionStillInstalled(t *testing.T) {
	recs := Records{Dir: t.TempDir()}
	recs.Put(record("a", "1"))
	recs.Put(record("a", "2"))
	st := state(t, [2]string{"a", "1"})
	if got := Release(st, recs, "a", "1"); got != nil {
		t.Fatalf("released %v, still installed", got)
	}
	got := Release(st, recs, "a", "2")
	if len(got) != 1 || got[0].Version != "2" {
		t.Fatalf("released %v, want a 2", got)
	}
	if left, _ := recs.All(); len(left) != 1 {
		t.Fatalf("%d records left, want 1", len(left))
	}
}

func TestRecordsRefuseOtherNames(t *testing.T) {
	recs := Records{Dir: t.TempDir()}
	for _, f := range []string{"", "../x", ".hidden", "a/b"} {
		if err := recs.Put(&Record{File: f}); err == nil {
			t.Errorf("a record named %q was written", f)
		}
	}
}
