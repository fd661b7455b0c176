package store

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

func TestHistoryEntriesChangesAndBound(t *testing.T) {
	db, err := OpenState(filepath.Join(t.TempDir(), "tpm.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.historyBound = 3
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	add := func(tag HistoryTag, names ...string) uint64 {
		t.Helper()
		var id uint64
		for _, n := range names {
			err := db.Update(func(tx *StateTx) error {
				var err error
				tag.ID, err = tx.AddHistory(tag, HistoryChange{Action: "install", Name: n, Version: "1"}, now)
				id = tag.ID
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		return id
	}
	// A transaction's later change without the id (recovery) joins the
	// entry the journal names; once cleared, a new entry starts.
	first := add(HistoryTag{UID: 7, Verb: "install", Args: []string{"a"}, Prefix: "/p"}, "a", "b")
	if err := db.Update(func(tx *StateTx) error {
		if _, err := tx.AddHistory(HistoryTag{Verb: "install"}, HistoryChange{Action: "install", Name: "c"}, now); err != nil {
			return err
		}
		return tx.ClearJournal()
	}); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		add(HistoryTag{Verb: "remove", Prefix: "/p"}, fmt.Sprint("x", i))
		// The end of the engine's transaction.
		if err := db.Update(func(tx *StateTx) error { return tx.ClearJournal() }); err != nil {
			t.Fatal(err)
		}
	}
	db.View(func(tx *StateTx) error {
		if e, _ := tx.HistoryEntry(first); e != nil {
			t.Errorf("entry %d kept past the bound of 3: %+v", first, e)
		}
		got, err := tx.History(0, 10, 1)
		if err != nil {
			t.Fatal(err)
		}
		var ids []uint64
		for _, e := range got {
			ids = append(ids, e.ID)
		}
		if fmt.Sprint(ids) != "[5 4 3]" {
			t.Errorf("history ids = %v, want [5 4 3]", ids)
		}
		older, _ := tx.History(4, 10, 0)
		if len(older) != 1 || older[0].ID != 3 || older[0].Changes != nil {
			t.Errorf("history before 4 = %+v", older)
		}
		if tx.LastHistoryID() != 5 {
			t.Errorf("last id = %d", tx.LastHistoryID())
		}
		return nil
	})
	db.historyBound = 0
	id := add(HistoryTag{UID: 7, Verb: "install", Args: []string{"a"}, Prefix: "/p"}, "a", "b", "c")
	db.View(func(tx *StateTx) error {
		e, err := tx.HistoryEntry(id)
		if err != nil || e == nil {
			t.Fatalf("entry %d: %v %v", id, e, err)
		}
		if e.UID != 7 || e.Count != 3 || len(e.Changes) != 3 || e.Changes[2].Name != "c" || !e.Time.Equal(now) {
			t.Errorf("entry = %+v", e)
		}
		return nil
	})
}
