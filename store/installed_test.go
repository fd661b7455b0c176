package store

import (
	"errors"
	"path/filepath"
	"reflect"
	"testing"

	"tpm/manifest"
)

func receipt(name string, files ...FileRecord) *Receipt {
	return &Receipt{Manifest: manifest.Manifest{Name: name, Version: "1", Architecture: "any", Type: "Binary"}, Prefix: "/p", Reason: Explicit, Files: files}
}

func TestReceiptsOwnersAndJournal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tpm.db")
	db, err := OpenState(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := OpenState(path); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}

	a := receipt("a", FileRecord{Path: "usr", Type: Dir}, FileRecord{Path: "usr/bin/x", Type: File})
	b := receipt("b", FileRecord{Path: "usr", Type: Dir}, FileRecord{Path: "usr/bin/y", Type: Symlink, Link: "x"})
	err = db.Update(func(tx *StateTx) error {
		if err := tx.PutReceipt(a, map[string][]byte{"postinstall": []byte("#!/bin/sh")}); err != nil {
			return err
		}
		if err := tx.PutReceipt(b, nil); err != nil {
			return err
		}
		return tx.SetJournal([]byte(`{"id":"1"}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	db.View(func(tx *StateTx) error {
		if got := tx.FileOwner("/p", "usr/bin/x"); got != "a" {
			t.Errorf("owner of x = %q", got)
		}
		if got := tx.FileOwner("/other", "usr/bin/x"); got != "" {
			t.Errorf("prefixes leak: %q", got)
		}
		if got := tx.DirOwners("/p", "usr"); !reflect.DeepEqual(got, []string{"a", "b"}) {
			t.Errorf("dir owners = %v", got)
		}
		if got := string(tx.Info("/p", "a")["postinstall"]); got != "#!/bin/sh" {
			t.Errorf("info = %q", got)
		}
		if string(tx.Journal()) != `{"id":"1"}` {
			t.Error("journal lost")
		}
		if n, other := tx.CountReceipts("/p"), tx.CountReceipts("/other"); n != 2 || other != 0 {
			t.Errorf("counts: /p %d, /other %d", n, other)
		}
		heads, err := tx.ReceiptHeads("/p")
		if err != nil || len(heads) != 2 || heads[1].Name != "b" || heads[1].Reason != Explicit || heads[1].Files != nil {
			t.Errorf("heads = %+v %v", heads, err)
		}
		if full, _ := tx.Receipts("/p"); len(full) != 2 || !reflect.DeepEqual(full[0].Manifest, heads[0].Manifest) || len(full[0].Files) != 2 {
			t.Errorf("receipts = %+v", full)
		}
		return nil
	})

	// b takes x over; dropping a must not take b's ownership with it.
	b.Files = append(b.Files, FileRecord{Path: "usr/bin/x", Type: File})
	err = db.Update(func(tx *StateTx) error {
		if err := tx.PutReceipt(b, nil); err != nil {
			return err
		}
		if err := tx.DeleteReceipt("/p", "a"); err != nil {
			return err
		}
		return tx.ClearJournal()
	})
	if err != nil {
		t.Fatal(err)
	}
	db.View(func(tx *StateTx) error {
		if got := tx.FileOwner("/p", "usr/bin/x"); got != "b" {
			t.Errorf("owner of x after move = %q", got)
		}
		if got := tx.DirOwners("/p", "usr"); !reflect.DeepEqual(got, []string{"b"}) {
			t.Errorf("dir owners after delete = %v", got)
		}
		if len(tx.Info("/p", "a")) != 0 || tx.Journal() != nil {
			t.Error("info or journal left")
		}
		rs, _ := tx.Receipts("/p")
		if len(rs) != 1 || rs[0].Name != "b" {
			t.Errorf("receipts = %v", rs)
		}
		return nil
	})
}

func TestOwnsUnder(t *testing.T) {
	db, err := OpenState(filepath.Join(t.TempDir(), "tpm.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *StateTx) error {
		return tx.PutReceipt(receipt("a", FileRecord{Path: "usr", Type: Dir}, FileRecord{Path: "usr/share/a", Type: Dir}, FileRecord{Path: "usr/bin/x", Type: File}), nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	db.View(func(tx *StateTx) error {
		for dir, want := range map[string]bool{".": true, "usr": true, "usr/bin": true, "usr/share": true, "usr/share/a": false, "usr/bi": false, "opt": false, "us": false} {
			if got := tx.OwnsUnder("/p", dir); got != want {
				t.Errorf("OwnsUnder(%q) = %v, want %v", dir, got, want)
			}
		}
		if tx.OwnsUnder("/other", ".") {
			t.Error("another prefix owns something")
		}
		return nil
	})
}
