package query

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"tpm/cache"
	"tpm/engine"
	"tpm/index"
	"tpm/manifest"
	"tpm/messages/wire"
	"tpm/resolve"
	"tpm/revert"
	"tpm/store"
)

// Undoing says whether req is an undo or a rollback, or the plan of one.
func Undoing(req *wire.Request) bool {
	return req.Verb == wire.VerbUndo || req.Verb == wire.VerbRollback ||
		(req.Verb == wire.VerbPlan && (req.Options.Undo || req.Options.Rollback))
}

// undoOf is the transaction number an undo or rollback request names,
// and the words for what it does.
func undoOf(req *wire.Request) (id uint64, rollback bool, what string, err error) {
	rollback = req.Verb == wire.VerbRollback || req.Options.Rollback
	verb := wire.VerbUndo
	if rollback {
		verb = wire.VerbRollback
	}
	if len(req.Args) != 1 {
		return 0, rollback, "", fmt.Errorf("%s takes one transaction number: tpm %s ID (tpm history lists them)", verb, verb)
	}
	id, err = strconv.ParseUint(req.Args[0], 10, 64)
	if err != nil || id == 0 {
		return 0, rollback, "", fmt.Errorf("%q is not a transaction number: tpm history lists them", req.Args[0])
	}
	what = fmt.Sprintf("undo transaction %d", id)
	if rollback {
		what = fmt.Sprintf("roll back to transaction %d", id)
	}
	return id, rollback, what, nil
}

// UndoSteps is what the undo or rollback req takes back on prefix, read
// from the history and the receipts in one read transaction.
func UndoSteps(e *engine.Engine, req *wire.Request, prefix string) ([]revert.Step, error) {
	id, rollback, _, err := undoOf(req)
	if err != nil {
		return nil, err
	}
	var steps []revert.Step
	err = e.State().View(func(tx *store.StateTx) error {
		var err error
		if rollback {
			steps, err = revert.Rollback(tx, prefix, id)
		} else {
			steps, err = revert.Undo(tx, prefix, id)
		}
		return err
	})
	return steps, err
}

// Source finds the file of a version an undo installs again: nil when no
// source has it any more.
type Source func(name, version string) *store.CatalogEntry

// Sources looks in the index (its entry has the manifest the plan checks),
// then in the host's cache records in stateDir (a version the index no
// longer lists, which the cache or the swarm may still have).
func Sources(idx *index.Snapshot, stateDir string) Source {
	var records map[string]*cache.Record // by name NUL version, read once
	return func(name, version string) *store.CatalogEntry {
		if idx != nil && !idx.Expired(time.Now()) {
			if e := idx.Entry(name, version); e != nil {
				return e
			}
		}
		if records == nil {
			records = map[string]*cache.Record{}
			all, _ := cache.Records{Dir: cache.RecordsDir(stateDir)}.All()
			for _, r := range all {
				if _, err := r.Hash(); err == nil {
					records[r.Name+"\x00"+r.Version] = r
				}
			}
		}
		if r := records[name+"\x00"+version]; r != nil {
			return cache.EntryOf(r)
		}
		return nil
	}
}

// PlanUndo is the plan of the undo or rollback req on prefix: the
// versions its packages go back to, each from find (one that no source
// has refuses the undo in one line), and the packages it removes, all to
// be applied in one engine transaction. Dependencies and conflicts are
// checked as the engine will (with the manifests the index has).
func PlanUndo(e *engine.Engine, req *wire.Request, prefix string, find Source) (*InstallPlan, error) {
	_, _, what, err := undoOf(req)
	if err != nil {
		return nil, err
	}
	steps, err := UndoSteps(e, req, prefix)
	if err != nil {
		return nil, err
	}
	installed, err := Receipts(e, prefix)
	if err != nil {
		return nil, err
	}
	p := &InstallPlan{Undo: true}
	var missing []string
	for _, s := range steps {
		if s.Back == "" {
			p.Removes = append(p.Removes, installed[s.Name])
			continue
		}
		entry := find(s.Name, s.Back)
		if entry == nil {
			missing = append(missing, s.Name+" "+s.Back)
			continue
		}
		action, _, err := engine.Intent{AllowDowngrade: true}.ActionFor(&entry.Manifest, installed[s.Name])
		if err != nil {
			return nil, fmt.Errorf("cannot %s: %w", what, err)
		}
		p.Packages = append(p.Packages, Planned{Entry: entry, Action: action, Old: s.Now, Requested: true, Reason: s.Reason})
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("cannot %s: %s no longer to be had (neither this host's cache nor the index has it); nothing was changed",
			what, strings.Join(missing, ", "))
	}
	if p.Remove, err = undoDisplaced(installed, p); err != nil {
		return nil, fmt.Errorf("cannot %s: %w", what, err)
	}
	return p, nil
}

// undoDisplaced checks an undo's plan against the prefix as the engine
// will, and returns the installed packages it displaces besides those it
// removes.
func undoDisplaced(installed map[string]*store.Receipt, p *InstallPlan) ([]resolve.Displacement, error) {
	removing := make(map[string]bool, len(p.Removes))
	change := resolve.Change{}
	for _, r := range p.Removes {
		removing[r.Name] = true
		change.Remove = append(change.Remove, r.Name)
	}
	var have []*manifest.Manifest
	for _, r := range installed {
		change.Installed = append(change.Installed, &r.Manifest)
		if !removing[r.Name] {
			have = append(have, &r.Manifest)
		}
	}
	for _, x := range p.Packages {
		change.Add = append(change.Add, &x.Entry.Manifest)
	}
	gone, err := resolve.Displaced(have, change.Add)
	if err != nil {
		return nil, err
	}
	for _, d := range gone {
		if r := installed[d.Package.Name]; r.Held {
			return nil, engine.ReplacesHeld(d.By, r)
		}
		change.Remove = append(change.Remove, d.Package.Name)
	}
	for _, r := range p.Removes {
		if r.Held {
			return nil, fmt.Errorf("cannot remove %s: %w", r.Name, &engine.HeldError{Name: r.Name, Version: r.Version})
		}
	}
	if _, err := resolve.Order(change); err != nil {
		return nil, err
	}
	return gone, nil
}

// UndoRequest is the engine's transaction for steps when the old versions
// are files (tpm --offline undo): have maps name NUL version to a file.
// It returns the versions no file has.
func UndoRequest(prefix string, steps []revert.Step, have map[string]string) (engine.InstallRequest, []string) {
	req := engine.InstallRequest{Prefix: prefix, Intent: engine.Intent{AllowDowngrade: true}}
	var missing []string
	for _, s := range steps {
		switch f := have[s.Name+"\x00"+s.Back]; {
		case s.Back == "":
			req.Remove = append(req.Remove, s.Name)
		case f == "":
			missing = append(missing, s.Name+" "+s.Back)
		default:
			req.Archives = append(req.Archives, engine.Archive{Path: f, Reason: s.Reason})
		}
	}
	return req, missing
}
