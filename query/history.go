package query

import (
	"fmt"
	"strconv"

	"tpm/engine"
	"tpm/messages/wire"
	"tpm/store"
)

// ListChanges is how many changes each transaction of a history list
// carries: enough for its line, the count says the rest.
const ListChanges = 3

// historyEach passes the history to each, newest first, in parts of at
// most Chunk transactions, each part read in a read transaction of its
// own, so a history of HistoryBound entries streams without holding the
// database. With an id, it passes that transaction whole, its changes in
// parts of Chunk (each part the transaction with the next changes).
func historyEach(e *engine.Engine, args []string, each func([]wire.Transaction) error) error {
	switch len(args) {
	case 0:
		return historyList(e, each)
	case 1:
		id, err := strconv.ParseUint(args[0], 10, 64)
		if err != nil || id == 0 {
			return fmt.Errorf("%q is not a transaction number: tpm history lists them", args[0])
		}
		return historyOne(e, id, each)
	}
	return fmt.Errorf("history takes at most one transaction number: tpm history [ID]")
}

func historyList(e *engine.Engine, each func([]wire.Transaction) error) error {
	var before uint64
	for {
		var part []store.HistoryEntry
		err := e.State().View(func(tx *store.StateTx) error {
			var err error
			part, err = tx.History(before, Chunk, ListChanges)
			return err
		})
		if err != nil {
			return err
		}
		out := make([]wire.Transaction, 0, len(part))
		for _, h := range part {
			out = append(out, Transaction(h))
		}
		if err := each(out); err != nil {
			return err
		}
		if len(part) < Chunk {
			return nil // the last part, maybe empty: a streamed answer has at least one
		}
		before = part[len(part)-1].ID
	}
}

func historyOne(e *engine.Engine, id uint64, each func([]wire.Transaction) error) error {
	var h *store.HistoryEntry
	err := e.State().View(func(tx *store.StateTx) error {
		var err error
		h, err = tx.HistoryEntry(id)
		return err
	})
	if err != nil {
		return err
	}
	if h == nil {
		return fmt.Errorf("no transaction %d in the history (it keeps the last %d): tpm history lists them", id, store.HistoryBound)
	}
	whole := Transaction(*h)
	for start := 0; ; start += Chunk {
		part := whole
		part.Changes = whole.Changes[start:min(start+Chunk, len(whole.Changes))]
		if err := each([]wire.Transaction{part}); err != nil {
			return err
		}
		if start+Chunk >= len(whole.Changes) {
			return nil
		}
	}
}

// Transaction is a history entry as the wire protocol shows it.
func Transaction(h store.HistoryEntry) wire.Transaction {
	t := wire.Transaction{ID: h.ID, Time: h.Time, UID: h.UID, Verb: h.Verb, Args: h.Args, Prefix: h.Prefix,
		Count: h.Count, Changes: make([]wire.Change, 0, len(h.Changes))}
	if t.Args == nil {
		t.Args = []string{}
	}
	for _, c := range h.Changes {
		t.Changes = append(t.Changes, wire.Change{Action: c.Action, Name: c.Name, Version: c.Version, OldVersion: c.OldVersion, Reason: string(c.Reason)})
	}
	return t
}
