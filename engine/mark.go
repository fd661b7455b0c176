package engine

import (
	"fmt"

	"tpm/store"
)

// Mark is what tpm mark, hold and unhold set on installed packages.
type Mark string

const (
	MarkAuto   Mark = "auto"   // installed as a dependency: autoremove takes it once unneeded
	MarkManual Mark = "manual" // installed explicitly: autoremove keeps it
	MarkHold   Mark = "hold"   // kept at its version (HeldError)
	MarkUnhold Mark = "unhold"
)

// Marked is one package a Mark was asked for; Changed is false when it was
// so already.
type Marked struct {
	Name, Version string
	Mark          Mark
	Changed       bool
}

// SetMark sets m on the named packages of prefix, all or none: a name that
// is not installed refuses them all. Only the receipts change: nothing on
// disk, no script, no history entry.
func (e *Engine) SetMark(prefix string, names []string, m Mark) ([]Marked, error) {
	prefix, err := CleanPrefix(prefix)
	if err != nil {
		return nil, err
	}
	change, err := markChange(m)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("name at least one installed package to %s", m)
	}
	var out []Marked
	err = e.db.Update(func(tx *store.StateTx) error {
		out = out[:0]
		for _, n := range names {
			changed := false
			r, err := tx.UpdateReceipt(prefix, n, func(r *store.Receipt) bool {
				changed = change(r)
				return changed
			})
			if err != nil {
				return err
			}
			if r == nil {
				return fmt.Errorf("%s is not installed in %s", n, prefix)
			}
			out = append(out, Marked{Name: r.Name, Version: r.Version, Mark: m, Changed: changed})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// markChange is how m changes a receipt, saying whether it did.
func markChange(m Mark) (func(*store.Receipt) bool, error) {
	switch m {
	case MarkAuto, MarkManual:
		to := store.Dependency
		if m == MarkManual {
			to = store.Explicit
		}
		return func(r *store.Receipt) bool {
			changed := r.Reason != to
			r.Reason = to
			return changed
		}, nil
	case MarkHold, MarkUnhold:
		to := m == MarkHold
		return func(r *store.Receipt) bool {
			changed := r.Held != to
			r.Held = to
			return changed
		}, nil
	}
	return nil, fmt.Errorf("%q is not a mark: use auto or manual", m)
}
