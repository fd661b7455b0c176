// Package transaction is the host daemon's install, upgrade or remove
// transaction as a plain state machine, without the actor that drives it:
// the plan (made and recorded in the cache before anything downloads),
// which packages of it are here and applied, which go in next (the
// batching rule), whether it may still be cancelled, and what it reports.
// The work itself (planning, applying) is in functions the actor runs on
// goroutines; their results come back to the state machine.
package transaction

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"tpm/engine"
	"tpm/messages/wire"
	"tpm/query"
	"tpm/store"
)

// Transaction is one install, upgrade or remove between its plan and its
// end. Its methods are called by one goroutine (the installer actor's).
type Transaction struct {
	prefix  string
	plan    *query.InstallPlan      // nil for a removal
	reasons map[string]store.Reason // of the packages installed when planned
	paths   []string                // each package's file, once downloaded
	applied []bool                  // each package's, once applied
	current []int                   // the packages being applied
	busy    bool                    // work runs for it (planning, applying)
	placed  bool                    // a package was applied: the rest finishes whoever listens
	results []wire.OpResult
	names   []string // installed so far, for a partial failure's message
	stop    error    // why it ends as soon as the work that runs reports
	undone  bool     // an undo's one engine transaction went through
}

// New is a transaction whose plan is being made (busy until Planned).
func New() *Transaction { return &Transaction{busy: true} }

// Planned takes an install's or upgrade's plan. Nothing to do is a plan
// without packages.
func (t *Transaction) Planned(p *Plan) {
	t.busy = false
	t.plan, t.reasons, t.prefix = p.Install, p.Reasons, p.Prefix
	t.paths = make([]string, len(p.Install.Packages))
	t.applied = make([]bool, len(p.Install.Packages))
}

// Plan is the install plan, nil for a removal or before it is made.
func (t *Transaction) Plan() *query.InstallPlan { return t.plan }

// Prefix is the prefix the transaction changes.
func (t *Transaction) Prefix() string { return t.prefix }

// NameOf is the name of the package whose file is file (file itself when
// the plan has none).
func (t *Transaction) NameOf(file string) string {
	if t.plan != nil {
		for _, x := range t.plan.Packages {
			if x.Entry.File == file {
				return x.Entry.Name
			}
		}
	}
	return file
}

// Downloaded records where the file of a plan's package is, and returns
// the packages of the plan it is for.
func (t *Transaction) Downloaded(file, path string) []*store.CatalogEntry {
	var out []*store.CatalogEntry
	for i, x := range t.plan.Packages {
		if x.Entry.File == file {
			t.paths[i] = path
			out = append(out, x.Entry)
		}
	}
	return out
}

// Batch is what goes in next, in one engine transaction.
type Batch struct {
	Request engine.InstallRequest
	Entries []*store.CatalogEntry
	// Old are the versions the batch upgrades from, by name (none for a
	// new package or a reinstall).
	Old map[string]string
	// History is the history's transaction the batch is recorded in: the
	// driver sets it, with the id an earlier batch of the request got.
	History store.HistoryTag
}

// Next takes the next batch to apply, if one is ready and no work runs:
// the packages that are here and whose dependencies in the plan are
// applied or go in with them, the first such in the plan's order and
// those after it that want the same intent. Packages that do not depend on
// each other go in as their downloads end, so the last download is
// followed by one install, and downloads that end together share one
// (its sync is most of an install's time).
func (t *Transaction) Next() (Batch, bool) {
	if t.busy || t.stop != nil || t.plan == nil {
		return Batch{}, false
	}
	if t.plan.Undo {
		return t.whole()
	}
	batch := t.ready()
	if len(batch) == 0 {
		return Batch{}, false
	}
	t.current, t.busy, t.placed = batch, true, true
	b := Batch{Request: engine.InstallRequest{Prefix: t.prefix, Intent: t.plan.Packages[batch[0]].Intent()}, Old: map[string]string{}}
	for _, i := range batch {
		x := t.plan.Packages[i]
		b.Request.Archives = append(b.Request.Archives, engine.Archive{Path: t.paths[i], Reason: t.reasonOf(x)})
		b.Entries = append(b.Entries, x.Entry)
		if x.Old != "" && x.Old != x.Entry.Version {
			b.Old[x.Entry.Name] = x.Old
		}
	}
	return b, true
}

// whole is an undo's one batch, once every package of it is here: the old
// versions and the removals in one engine transaction.
func (t *Transaction) whole() (Batch, bool) {
	if t.undone || slices.Contains(t.paths, "") {
		return Batch{}, false
	}
	b := Batch{Request: engine.InstallRequest{Prefix: t.prefix, Intent: engine.Intent{AllowDowngrade: true}}, Old: map[string]string{}}
	for i, x := range t.plan.Packages {
		t.current = append(t.current, i)
		b.Request.Archives = append(b.Request.Archives, engine.Archive{Path: t.paths[i], Reason: t.reasonOf(x)})
		b.Entries = append(b.Entries, x.Entry)
		if x.Old != "" {
			b.Old[x.Entry.Name] = x.Old
		}
	}
	for _, r := range t.plan.Removes {
		b.Request.Remove = append(b.Request.Remove, r.Name)
	}
	t.busy, t.placed = true, true
	return b, true
}

// ready lists the packages that may go in together now.
func (t *Transaction) ready() []int {
	var batch []int
	taken := make([]bool, len(t.plan.Packages))
	for i, x := range t.plan.Packages {
		if t.applied[i] || t.paths[i] == "" {
			continue
		}
		if len(batch) > 0 && x.Intent() != t.plan.Packages[batch[0]].Intent() {
			continue
		}
		ready := true
		for _, d := range x.After {
			ready = ready && (t.applied[d] || taken[d])
		}
		if ready {
			batch = append(batch, i)
			taken[i] = true
		}
	}
	return batch
}

// reasonOf is why x is to be installed: an upgrade keeps the reason the
// package is here.
func (t *Transaction) reasonOf(x query.Planned) store.Reason {
	if x.Reason != "" {
		return x.Reason
	}
	if r, ok := t.reasons[x.Entry.Name]; ok {
		return r
	}
	if x.Requested {
		return store.Explicit
	}
	return store.Dependency
}

// Removing takes a removal's changeset: it is applied at once, whole.
func (t *Transaction) Removing(prefix string) {
	t.prefix, t.busy, t.placed = prefix, true, true
}

// Applied records what an engine transaction did and returns the packages
// of the plan it put in (none for a removal). err is the engine's.
func (t *Transaction) Applied(ops []engine.OpResult, err error) []*store.CatalogEntry {
	t.busy = false
	for _, r := range ops {
		t.results = append(t.results, query.OpResult(r))
		t.names = append(t.names, r.Name)
	}
	if err != nil || t.plan == nil {
		return nil
	}
	t.undone = t.plan.Undo
	var in []*store.CatalogEntry
	for _, i := range t.current {
		t.applied[i] = true
		in = append(in, t.plan.Packages[i].Entry)
	}
	t.current = nil
	return in
}

// Done says whether nothing is left to apply.
func (t *Transaction) Done() bool {
	if t.plan != nil && t.plan.Undo {
		return t.undone
	}
	return t.plan == nil || !slices.Contains(t.applied, false)
}

// Stop asks the transaction to end for why (the first reason stays). It
// returns true when it may end now: no work runs for it.
func (t *Transaction) Stop(why error) bool {
	if t.stop == nil {
		t.stop = why
	}
	return !t.busy
}

// Stopping is why the transaction ends, nil while it goes on.
func (t *Transaction) Stopping() error { return t.stop }

// Busy says whether work runs for the transaction.
func (t *Transaction) Busy() bool { return t.busy }

// Placed says whether a package went in: from then on the transaction is
// finished whoever listens, since a package is never half-installed.
func (t *Transaction) Placed() bool { return t.placed }

// Results are what the transaction did, for the final reply.
func (t *Transaction) Results() []wire.OpResult {
	if t.results == nil {
		return []wire.OpResult{}
	}
	return t.results
}

// Partial adds to err what the transaction had installed before it.
func (t *Transaction) Partial(err error) error {
	if len(t.names) == 0 {
		return err
	}
	return fmt.Errorf("%w (already installed: %s)", err, strings.Join(t.names, ", "))
}

// ErrCancelled ends a transaction whose CLI left before anything was
// installed.
var ErrCancelled = errors.New("cancelled: the CLI went away; nothing was installed")
