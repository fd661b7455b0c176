// Package revert works out what takes a prefix back to where it was
// before transactions of the history: from the changes they recorded and
// what the prefix holds now, the version each package goes back to (none:
// it is removed), or why it cannot be done.
package revert

import (
	"fmt"
	"sort"

	"tpm/store"
)

// Step is one package an undo changes.
type Step struct {
	Name string
	Now  string // the version installed now, "" when none is
	Back string // the version it goes back to, "" to remove it
	// Reason is what the package had before (for one installed again).
	Reason store.Reason
}

// ChangedError refuses an undo of a package that something after the
// transactions undone changed since.
type ChangedError struct {
	What      string // "undo transaction 5", "roll back to transaction 4"
	Name      string
	Left, Now string // "" for not installed
	Hint      string // what to do instead
}

func (e *ChangedError) Error() string {
	return fmt.Sprintf("cannot %s: %s was changed since (it was left %s, it is now %s): %s",
		e.What, e.Name, said(e.Left), said(e.Now), e.Hint)
}

func said(v string) string {
	if v == "" {
		return "not installed"
	}
	return "at " + v
}

// state is a package's version in a prefix ("" when absent) and its
// reason.
type state struct {
	version string
	reason  store.Reason
}

// Steps is what takes installed (the prefix's receipts, by name) back to
// where it was before entries, which are newest first and all of that
// prefix: each package changed goes back to its state before the oldest
// change, provided it is still as the newest change left it (else a
// ChangedError, what and hint filling its words). A package already back
// needs no step. Steps are sorted by name.
func Steps(entries []store.HistoryEntry, installed map[string]*store.Receipt, what, hint string) ([]Step, error) {
	before, after := map[string]state{}, map[string]state{}
	for i := len(entries) - 1; i >= 0; i-- {
		for _, c := range entries[i].Changes {
			if _, seen := before[c.Name]; !seen {
				before[c.Name] = stateBefore(c)
			}
			after[c.Name] = stateAfter(c)
		}
	}
	names := make([]string, 0, len(before))
	for name := range before {
		names = append(names, name)
	}
	sort.Strings(names) // the first changed package refuses, the same every time
	var steps []Step
	for _, name := range names {
		b := before[name]
		var now state
		if r := installed[name]; r != nil {
			now = state{version: r.Version, reason: r.Reason}
		}
		switch {
		case now.version == b.version:
			continue
		case now.version != after[name].version:
			return nil, &ChangedError{What: what, Name: name, Left: after[name].version, Now: now.version, Hint: hint}
		}
		steps = append(steps, Step{Name: name, Now: now.version, Back: b.version, Reason: b.reason})
	}
	return steps, nil
}

// stateBefore is what the package of c was before c: absent before an
// install, the version removed or replaced otherwise.
func stateBefore(c store.HistoryChange) state {
	switch c.Action {
	case "install":
		return state{}
	case "remove":
		return state{version: c.Version, reason: c.Reason}
	}
	return state{version: c.OldVersion, reason: c.Reason}
}

// stateAfter is what c left of its package.
func stateAfter(c store.HistoryChange) state {
	if c.Action == "remove" {
		return state{}
	}
	return state{version: c.Version, reason: c.Reason}
}
