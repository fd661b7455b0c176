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
	got := Release(st, recs, "a")
	if len(got) != 1 || got[0].Version != "2" {
		t.Fatalf("released %v, want a 2", got)
	}
	if left, _ := recs.All(); len(left) != 1 {
		t.Fatalf("%d records left, want 1", len(left))
	}
}

// TestKeptVersions: a version that left is kept for an undo, within the
// bound (the installed one and one more with Keep 2), newest first; a
// version never installed is not; Clean drops all but the installed.
func TestKeptVersions(t *testing.T) {
	recs := Records{Dir: t.TempDir(), Keep: 2}
	for _, v := range []string{"1", "2", "3", "4"} {
		recs.Put(record("a", v))
	}
	st := state(t, [2]string{"a", "4"})
	if got := Retire(st, recs, "a", "2"); len(got) != 2 || got[0].Version != "1" || got[1].Version != "3" {
		t.Fatalf("retiring a 2 dropped %v, want a 1 and a 3 (never installed)", got)
	}
	recs.Put(record("a", "3"))
	if got := Retire(st, recs, "a", "3"); len(got) != 1 || got[0].Version != "2" {
		t.Fatalf("retiring a 3 dropped %v, want a 2 (beyond the bound)", got)
	}
	if r := recs.Find("a", "3"); r == nil || !r.Kept {
		t.Fatalf("a 3 is %+v, want kept", r)
	}
	again := record("a", "3")
	if recs.Add(again); !again.Kept || !recs.Find("a", "3").Kept {
		t.Error("recording a kept version for a download forgot that it is kept")
	}
	keep, drop, err := Reconcile(st, recs, t.TempDir())
	if err != nil || len(keep) != 2 || len(drop) != 0 {
		t.Errorf("reconcile kept %v, dropped %v (%v); want a 3 and a 4 kept", keep, drop, err)
	}
	drop, err = Clean(st, recs)
	if err != nil || len(drop) != 1 || drop[0].Version != "3" {
		t.Errorf("clean dropped %v (%v), want a 3", drop, err)
	}
	if left, _ := recs.All(); len(left) != 1 || left[0].Version != "4" {
		t.Errorf("left %v, want a 4", left)
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
