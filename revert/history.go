package revert

import (
	"fmt"
	"strconv"

	"tpm/store"
)

// Undo is what undoes transaction id, which must be of prefix.
func Undo(tx *store.StateTx, prefix string, id uint64) ([]Step, error) {
	h, err := tx.HistoryEntry(id)
	if err != nil {
		return nil, err
	}
	if h == nil {
		return nil, missing(id)
	}
	if h.Prefix != prefix {
		return nil, fmt.Errorf("transaction %d changed %s, not %s: add --prefix %s", id, h.Prefix, prefix, h.Prefix)
	}
	installed, err := heads(tx, prefix)
	if err != nil {
		return nil, err
	}
	hint := "tpm rollback " + strconv.FormatUint(id-1, 10) + " undoes the later transactions too"
	if id == 1 {
		hint = "undo the later transactions first"
	}
	return Steps([]store.HistoryEntry{*h}, installed, fmt.Sprintf("undo transaction %d", id), hint)
}

// Rollback is what undoes every transaction of prefix after id, which
// must be in the history.
func Rollback(tx *store.StateTx, prefix string, id uint64) ([]Step, error) {
	h, err := tx.HistoryEntry(id)
	if err != nil {
		return nil, err
	}
	if h == nil {
		return nil, missing(id)
	}
	var entries []store.HistoryEntry
	for before := uint64(0); ; {
		part, err := tx.History(before, 256, -1)
		if err != nil {
			return nil, err
		}
		for _, e := range part {
			if e.ID <= id {
				part = nil
				break
			}
			if e.Prefix == prefix {
				entries = append(entries, e)
			}
			before = e.ID
		}
		if len(part) < 256 {
			break
		}
	}
	installed, err := heads(tx, prefix)
	if err != nil {
		return nil, err
	}
	return Steps(entries, installed, fmt.Sprintf("roll back to transaction %d", id),
		"its history does not say how it got there; undo that package by hand (tpm install NAME=VERSION, tpm remove NAME)")
}

func missing(id uint64) error {
	return fmt.Errorf("no transaction %d in the history (it keeps the last %d): tpm history lists them", id, store.HistoryBound)
}

func heads(tx *store.StateTx, prefix string) (map[string]*store.Receipt, error) {
	rs, err := tx.ReceiptHeads(prefix)
	out := make(map[string]*store.Receipt, len(rs))
	for _, r := range rs {
		out[r.Name] = r
	}
	return out, err
}
