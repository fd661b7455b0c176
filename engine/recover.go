package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"tpm/store"
)

// Recovery reports what Open did about a transaction a crash interrupted.
type Recovery struct {
	ID         string
	Prefix     string
	Completed  []string // ops that had started placing files, finished
	RolledBack []string // ops that had not, undone
	// Packages that were committed but whose post-script never ran. Recovery
	// does not run it: a script cut off halfway may not be safe to repeat.
	ScriptsNotRun []string
}

// Recover finishes or undoes a transaction that failed halfway (Apply says
// so in its error) without a restart; Open does the same at start. It
// returns nil when there was nothing to do.
func (e *Engine) Recover(ctx context.Context) (*Recovery, error) {
	return e.recover(ctx)
}

func (e *Engine) recover(ctx context.Context) (*Recovery, error) {
	// A crash while a script ran leaves its private copy behind.
	if leftovers, _ := filepath.Glob(filepath.Join(e.opts.StateDir, scriptDirPattern)); len(leftovers) > 0 {
		for _, d := range leftovers {
			os.RemoveAll(d)
		}
	}
	var raw, rawStates []byte
	e.db.View(func(tx *store.StateTx) error {
		raw, rawStates = tx.Journal(), tx.JournalStates()
		return nil
	})
	if raw == nil {
		return nil, nil
	}
	var j journal
	var states []opState
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, fmt.Errorf("recover: the journal in %s is unreadable: %w", e.db.Path(), err)
	}
	if err := json.Unmarshal(rawStates, &states); err != nil || len(states) != len(j.Ops) {
		return nil, fmt.Errorf("recover: the journal in %s is inconsistent: %v", e.db.Path(), err)
	}
	for i := range j.Ops {
		j.Ops[i].State = states[i]
	}
	rec := &Recovery{ID: j.ID, Prefix: j.Prefix}
	if _, err := os.Lstat(j.Prefix); err != nil {
		// Nothing of the transaction can be on a disk that is not there.
		return rec, e.db.Update(func(tx *store.StateTx) error { return tx.ClearJournal() })
	}
	t, err := openTree(j.Prefix)
	if err != nil {
		return nil, fmt.Errorf("recover: %w", err)
	}
	defer t.close()
	for i := range j.Ops {
		jo := &j.Ops[i]
		switch jo.State {
		case statePlanned, stateStaged:
			e.rollback(t, j.Prefix, jo)
			rec.RolledBack = append(rec.RolledBack, jo.Name)
		case stateCommitted:
			e.cleanup(t, jo)
			if post := postScript(jo); post != "" {
				rec.ScriptsNotRun = append(rec.ScriptsNotRun, jo.Name+" ("+post+")")
			}
		case stateDone:
			e.cleanup(t, jo)
		case statePlacing:
			if err := e.place(t, j.Prefix, jo); err != nil {
				return nil, fmt.Errorf("recover: finishing %s %s: %w", jo.Action, jo.Name, err)
			}
			if err := e.commit(t, &j, i); err != nil {
				return nil, fmt.Errorf("recover: finishing %s %s: %w", jo.Action, jo.Name, err)
			}
			e.cleanup(t, jo)
			rec.Completed = append(rec.Completed, jo.Name)
			if post := postScript(jo); post != "" {
				rec.ScriptsNotRun = append(rec.ScriptsNotRun, jo.Name+" ("+post+")")
			}
		}
	}
	e.opts.Step("clear journal")
	if err := e.db.Update(func(tx *store.StateTx) error { return tx.ClearJournal() }); err != nil {
		return nil, fmt.Errorf("recover: %w", err)
	}
	return rec, ctx.Err()
}

// postScript names the op's post-script if the package has one.
func postScript(jo *journalOp) string {
	_, post := scriptNames(jo.Action)
	if jo.Info[post] != nil {
		return post
	}
	return ""
}
