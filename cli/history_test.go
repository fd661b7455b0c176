package cli

import (
	"strings"
	"testing"
	"time"

	"tpm/messages/wire"
)

// A transaction's changes come in parts of their own: they are joined,
// and the line of a list says how many it did not carry.
func TestHistoryPartsAndLine(t *testing.T) {
	head := wire.Transaction{ID: 7, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.Local), UID: 1000, Verb: "install", Count: 5}
	a, b := head, head
	a.Changes = []wire.Change{{Action: "install", Name: "x", Version: "1"}, {Action: "upgrade", Name: "y", Version: "2", OldVersion: "1"}}
	b.Changes = []wire.Change{{Action: "remove", Name: "z", Version: "3", OldVersion: "3"}}
	older := wire.Transaction{ID: 6, Count: 1, Changes: []wire.Change{{Action: "install", Name: "w", Version: "1"}}}
	got := mergeParts([]wire.Transaction{a, b, older})
	if len(got) != 2 || len(got[0].Changes) != 3 || got[1].ID != 6 {
		t.Fatalf("merged %+v", got)
	}
	line := historyLine(&got[0])
	want := "7      2026-01-02 03:04:05  uid 1000  install    install x 1, upgrade y 1 -> 2, remove z 3, and 2 more"
	if line != want {
		t.Errorf("line\n%q, want\n%q", line, want)
	}
	if !strings.HasPrefix(historyLine(&got[1]), "6 ") {
		t.Errorf("line of 6: %q", historyLine(&got[1]))
	}
}
