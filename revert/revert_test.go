package revert

import (
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"tpm/manifest"
	"tpm/store"
)

func receipt(name, version string, reason store.Reason) *store.Receipt {
	return &store.Receipt{Manifest: manifest.Manifest{Name: name, Version: version, Architecture: "any", Type: manifest.TypeBinary},
		Prefix: "/p", Reason: reason}
}

func entry(id uint64, changes ...store.HistoryChange) store.HistoryEntry {
	return store.HistoryEntry{HistoryTag: store.HistoryTag{ID: id, Prefix: "/p"}, Count: len(changes), Changes: changes}
}

func TestSteps(t *testing.T) {
	// Transaction 1 installed lib and app, 2 upgraded app and removed lib,
	// and put mta in for exim, which it replaced.
	t1 := entry(1, store.HistoryChange{Action: "install", Name: "lib", Version: "1", Reason: store.Dependency},
		store.HistoryChange{Action: "install", Name: "app", Version: "1", Reason: store.Explicit})
	t2 := entry(2, store.HistoryChange{Action: "upgrade", Name: "app", Version: "2", OldVersion: "1", Reason: store.Explicit},
		store.HistoryChange{Action: "remove", Name: "lib", Version: "1", OldVersion: "1", Reason: store.Dependency},
		store.HistoryChange{Action: "install", Name: "postfix", Version: "3.8", Reason: store.Explicit},
		store.HistoryChange{Action: "remove", Name: "exim4", Version: "4.96", OldVersion: "4.96", Reason: store.Explicit})
	now := map[string]*store.Receipt{"app": receipt("app", "2", store.Explicit), "postfix": receipt("postfix", "3.8", store.Explicit)}

	got, err := Steps([]store.HistoryEntry{t2}, now, "undo transaction 2", "hint")
	if err != nil {
		t.Fatal(err)
	}
	want := []Step{{Name: "app", Now: "2", Back: "1", Reason: store.Explicit}, {Name: "exim4", Back: "4.96", Reason: store.Explicit},
		{Name: "lib", Back: "1", Reason: store.Dependency}, {Name: "postfix", Now: "3.8"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("undo 2: %+v\nwant %+v", got, want)
	}

	// Both: back to nothing at all, exim4 included (it was there before 2
	// only because the history does not go further back).
	got, err = Steps([]store.HistoryEntry{t2, t1}, now, "roll back", "hint")
	if err != nil {
		t.Fatal(err)
	}
	want = []Step{{Name: "app", Now: "2", Reason: ""}, {Name: "exim4", Back: "4.96", Reason: store.Explicit}, {Name: "postfix", Now: "3.8"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("undo 2 and 1: %+v\nwant %+v", got, want)
	}

	// Undoing 1 alone after 2: app is not as 1 left it.
	_, err = Steps([]store.HistoryEntry{t1}, now, "undo transaction 1", "undo the later transactions first")
	var changed *ChangedError
	if !errors.As(err, &changed) || err.Error() != "cannot undo transaction 1: app was changed since (it was left at 1, it is now at 2): undo the later transactions first" {
		t.Errorf("undo 1: %v", err)
	}

	// A package already back needs nothing: postfix removed by hand since.
	delete(now, "postfix")
	got, _ = Steps([]store.HistoryEntry{t2}, now, "undo", "hint")
	for _, s := range got {
		if s.Name == "postfix" {
			t.Errorf("postfix, gone already, has a step %+v", s)
		}
	}
}

func TestUndoAndRollbackFromTheStore(t *testing.T) {
	db, err := store.OpenState(filepath.Join(t.TempDir(), "tpm.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	at := time.Unix(1e9, 0)
	err = db.Update(func(tx *store.StateTx) error {
		for _, c := range []struct {
			prefix string
			change store.HistoryChange
		}{
			{"/p", store.HistoryChange{Action: "install", Name: "a", Version: "1", Reason: store.Explicit}},
			{"/other", store.HistoryChange{Action: "install", Name: "b", Version: "1", Reason: store.Explicit}},
			{"/p", store.HistoryChange{Action: "upgrade", Name: "a", Version: "2", OldVersion: "1", Reason: store.Explicit}},
		} {
			if _, err := tx.AddHistory(store.HistoryTag{Verb: c.change.Action, Prefix: c.prefix}, c.change, at); err != nil {
				return err
			}
			if err := tx.ClearJournal(); err != nil { // each its own transaction
				return err
			}
		}
		return tx.PutReceipt(receipt("a", "2", store.Explicit), nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	db.View(func(tx *store.StateTx) error {
		if s, err := Undo(tx, "/p", 3); err != nil || len(s) != 1 || s[0].Back != "1" {
			t.Errorf("undo 3: %+v, %v", s, err)
		}
		if _, err := Undo(tx, "/p", 2); err == nil || err.Error() != "transaction 2 changed /other, not /p: add --prefix /other" {
			t.Errorf("undo 2 of another prefix: %v", err)
		}
		if s, err := Rollback(tx, "/p", 1); err != nil || len(s) != 1 || s[0].Back != "1" {
			t.Errorf("rollback 1: %+v, %v", s, err)
		}
		if _, err := Undo(tx, "/p", 9); err == nil {
			t.Error("undo of a transaction not in the history")
		}
		return nil
	})
}
