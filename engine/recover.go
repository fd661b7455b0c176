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
	e.removeScriptLeftovers()
	j, err := e.readJournal()
	if j == nil || err != nil {
		return nil, err
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
		if err := e.recoverOp(t, j, i, rec); err != nil {
			return nil, err
		}
	}
	e.opts.Step("clear journal")
	if err := e.db.Update(func(tx *store.StateTx) error { return tx.ClearJournal() }); err != nil {
		return nil, fmt.Errorf("recover: %w", err)
	}
	return rec, ctx.Err()
}

// removeScriptLeftovers removes the private copies of scripts that a crash
// left behind while they ran.
func (e *Engine) removeScriptLeftovers() {
	if leftovers, _ := filepath.Glob(filepath.Join(e.opts.StateDir, scriptDirPattern)); len(leftovers) > 0 {
		for _, d := range leftovers {
			os.RemoveAll(d)
		}
	}
}

// readJournal returns the journal of an interrupted transaction, with the
// ops' states, or nil when there is none.
func (e *Engine) readJournal() (*journal, error) {
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
	return &j, nil
}

// recoverOp undoes op i of j if it had not started placing files, and
// finishes it if it had, recording which in rec.
func (e *Engine) recoverOp(t *tree, j *journal, i int, rec *Recovery) error {
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
			return fmt.Errorf("recover: finishing %s %s: %w", jo.Action, jo.Name, err)
		}
		if err := e.commit(t, j, i); err != nil {
			return fmt.Errorf("recover: finishing %s %s: %w", jo.Action, jo.Name, err)
		}
		e.cleanup(t, jo)
		rec.Completed = append(rec.Completed, jo.Name)
		if post := postScript(jo); post != "" {
			rec.ScriptsNotRun = append(rec.ScriptsNotRun, jo.Name+" ("+post+")")
		}
	}
	return nil
}

// postScript names the op's post-script if the package has one.
func postScript(jo *journalOp) string {
	_, post := scriptNames(jo.Action)
	if jo.Info[post] != nil {
		return post
	}
	return ""
}
