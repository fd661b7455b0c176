package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"
)

// The history of transactions (tpm history): a head per transaction and
// one record per package it changed, each change written in the bbolt
// transaction that commits its receipt, so the history says exactly what
// the receipts went through, crash or not.
var (
	bucketHistory        = []byte("history")         // id (8 bytes, big-endian) → HistoryEntry (JSON)
	bucketHistoryChanges = []byte("history-changes") // id, n (4 bytes) → HistoryChange (JSON)
	// keyJournalHistory is the id of the entry the transaction in flight
	// writes to, for the ops recovery commits after a crash.
	keyJournalHistory = []byte("journal-history")
)

// HistoryBound is how many transactions the history keeps: the oldest
// goes when one more is recorded.
const HistoryBound = 100_000

// Bounds of what a head keeps of the request it records.
const (
	historyMaxArgs     = 32
	historyMaxArgBytes = 4 << 10
)

// HistoryTag is the transaction a change belongs to: who asked for what.
// ID is 0 until its first change is recorded, which makes the entry.
type HistoryTag struct {
	ID     uint64   `json:"id,omitempty"`
	UID    int      `json:"uid"`
	Verb   string   `json:"verb"`
	Args   []string `json:"args,omitempty"`
	Prefix string   `json:"prefix"`
}

// HistoryEntry is the head of one transaction of the history.
type HistoryEntry struct {
	HistoryTag
	Time time.Time `json:"time"`
	// Count is how many changes it has; Changes holds those read with it
	// (the first few for a list, all for one entry).
	Count   int             `json:"count"`
	Changes []HistoryChange `json:"-"`
}

// HistoryChange is one package a transaction changed. Reason is the one
// the package had (for a removal) or was given.
type HistoryChange struct {
	Action     string `json:"action"`
	Name       string `json:"name"`
	Version    string `json:"version"`
	OldVersion string `json:"old_version,omitempty"`
	Reason     Reason `json:"reason,omitempty"`
}

func historyKey(id uint64) []byte { return binary.BigEndian.AppendUint64(nil, id) }

func changeKey(id uint64, n int) []byte {
	return binary.BigEndian.AppendUint32(historyKey(id), uint32(n))
}

// AddHistory records change as part of tag's transaction and returns the
// transaction's id: a new entry when tag has none (or the one the
// transaction in flight started, for a change recovery commits), which
// the oldest entry makes room for past HistoryBound.
func (t *StateTx) AddHistory(tag HistoryTag, change HistoryChange, now time.Time) (uint64, error) {
	meta, heads := t.tx.Bucket(bucketMeta), t.tx.Bucket(bucketHistory)
	id := tag.ID
	if raw := meta.Get(keyJournalHistory); id == 0 && len(raw) == 8 {
		id = binary.BigEndian.Uint64(raw)
	}
	var head HistoryEntry
	if raw := heads.Get(historyKey(id)); id != 0 && raw != nil {
		if err := json.Unmarshal(raw, &head); err != nil {
			return 0, t.recordErr(fmt.Sprintf("history entry %d", id), err)
		}
	} else {
		if id == 0 {
			next, err := heads.NextSequence()
			if err != nil {
				return 0, err
			}
			id = next
		}
		head = HistoryEntry{HistoryTag: boundTag(tag), Time: now.UTC()}
		head.ID = id
		if err := t.pruneHistory(id); err != nil {
			return 0, err
		}
	}
	if err := meta.Put(keyJournalHistory, historyKey(id)); err != nil {
		return 0, err
	}
	rawChange, err := json.Marshal(change)
	if err != nil {
		return 0, err
	}
	if err := t.tx.Bucket(bucketHistoryChanges).Put(changeKey(id, head.Count), rawChange); err != nil {
		return 0, err
	}
	head.Count++
	rawHead, err := json.Marshal(head)
	if err != nil {
		return 0, err
	}
	return id, heads.Put(historyKey(id), rawHead)
}

// boundTag is tag with what it keeps of the request cut to the bounds.
func boundTag(tag HistoryTag) HistoryTag {
	var args []string
	size := 0
	for _, a := range tag.Args {
		if len(args) == historyMaxArgs || size+len(a) > historyMaxArgBytes {
			args = append(args, "…")
			break
		}
		args = append(args, a)
		size += len(a)
	}
	tag.Args = args
	return tag
}

// pruneHistory removes the entries that newest leaves beyond the bound,
// oldest first. Ids only grow, so they are the first keys.
func (t *StateTx) pruneHistory(newest uint64) error {
	heads, changes := t.tx.Bucket(bucketHistory), t.tx.Bucket(bucketHistoryChanges)
	c := heads.Cursor()
	bound := uint64(HistoryBound)
	if t.db.historyBound > 0 {
		bound = uint64(t.db.historyBound)
	}
	for k, _ := c.First(); k != nil && newest-binary.BigEndian.Uint64(k) >= bound; k, _ = c.First() {
		var gone [][]byte
		cc := changes.Cursor()
		for ck, _ := cc.Seek(k); ck != nil && bytes.HasPrefix(ck, k); ck, _ = cc.Next() {
			gone = append(gone, bytes.Clone(ck))
		}
		for _, ck := range gone {
			if err := changes.Delete(ck); err != nil {
				return err
			}
		}
		if err := heads.Delete(bytes.Clone(k)); err != nil {
			return err
		}
	}
	return nil
}

// History returns up to n entries older than before (0: the newest
// first), newest first, each with its first changes (at most
// withChanges of them; negative: all).
func (t *StateTx) History(before uint64, n, withChanges int) ([]HistoryEntry, error) {
	var out []HistoryEntry
	c := t.tx.Bucket(bucketHistory).Cursor()
	k, v := c.Last()
	if before != 0 {
		k, v = c.Seek(historyKey(before))
		if k == nil {
			k, v = c.Last()
		}
		if k != nil && binary.BigEndian.Uint64(k) >= before {
			k, v = c.Prev()
		}
	}
	for ; k != nil && len(out) < n; k, v = c.Prev() {
		e, err := t.historyEntry(k, v, withChanges)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// HistoryEntry returns the entry id with every change, or nil.
func (t *StateTx) HistoryEntry(id uint64) (*HistoryEntry, error) {
	k := historyKey(id)
	v := t.tx.Bucket(bucketHistory).Get(k)
	if v == nil {
		return nil, nil
	}
	e, err := t.historyEntry(k, v, -1)
	return &e, err
}

// LastHistoryID is the id of the newest entry, 0 when there is none.
func (t *StateTx) LastHistoryID() uint64 {
	k, _ := t.tx.Bucket(bucketHistory).Cursor().Last()
	if k == nil {
		return 0
	}
	return binary.BigEndian.Uint64(k)
}

func (t *StateTx) historyEntry(k, v []byte, withChanges int) (HistoryEntry, error) {
	var e HistoryEntry
	if err := json.Unmarshal(v, &e); err != nil {
		return e, t.recordErr(fmt.Sprintf("history entry %d", binary.BigEndian.Uint64(k)), err)
	}
	c := t.tx.Bucket(bucketHistoryChanges).Cursor()
	for ck, cv := c.Seek(k); ck != nil && bytes.HasPrefix(ck, k) && len(e.Changes) != withChanges; ck, cv = c.Next() {
		var ch HistoryChange
		if err := json.Unmarshal(cv, &ch); err != nil {
			return e, t.recordErr(fmt.Sprintf("history entry %d", e.ID), err)
		}
		e.Changes = append(e.Changes, ch)
	}
	return e, nil
}
