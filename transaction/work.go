package transaction

import (
	"context"

	"tpm/cache"
	"tpm/engine"
	"tpm/index"
	"tpm/messages/wire"
	"tpm/query"
	"tpm/store"
)

// The work of a transaction, each step run on a goroutine of the actor
// that drives the state machine, its result handed back to it.

// Plan is an install's or upgrade's plan with what it was made against.
type Plan struct {
	Install *query.InstallPlan
	Reasons map[string]store.Reason // of the packages installed when planned
	Prefix  string
}

// PlanInstall plans an install or upgrade against idx, checks it against
// the plan the user confirmed, and records every file it will download
// before the download starts: a crash then leaves records that the next
// start reconciles with the receipts.
func PlanInstall(eng *engine.Engine, idx *index.Snapshot, recs cache.Records, req *wire.Request, defPrefix string) (*Plan, error) {
	prefix, err := query.Prefix(req, defPrefix)
	if err != nil {
		return nil, err
	}
	installed, err := query.Receipts(eng, prefix)
	if err != nil {
		return nil, err
	}
	p := &Plan{Prefix: prefix, Reasons: make(map[string]store.Reason, len(installed))}
	for n, r := range installed {
		p.Reasons[n] = r.Reason
	}
	if p.Install, err = query.PlanInstall(idx, installed, req.Args, query.InstallOptions(req)); err != nil {
		return nil, err
	}
	return p, p.check(req, recs)
}

// check compares the plan with the one the user confirmed, and records
// every file it will download.
func (p *Plan) check(req *wire.Request, recs cache.Records) error {
	if err := query.CheckExpect(req.Expect, p.Install.Versions()); err != nil {
		return err
	}
	for _, x := range p.Install.Packages {
		if err := recs.Add(cache.RecordOf(x.Entry)); err != nil {
			return err
		}
	}
	return nil
}

// PlanUndo plans an undo or rollback: the old versions from the index or
// the cache's records, what goes, all in one batch; checked and recorded
// as PlanInstall's.
func PlanUndo(eng *engine.Engine, idx *index.Snapshot, recs cache.Records, req *wire.Request, defPrefix string) (*Plan, error) {
	prefix, err := query.Prefix(req, defPrefix)
	if err != nil {
		return nil, err
	}
	p := &Plan{Prefix: prefix}
	if p.Install, err = query.PlanUndo(eng, req, prefix, query.Sources(idx, eng.StateDir())); err != nil {
		return nil, err
	}
	return p, p.check(req, recs)
}

// PlanRemove prepares a removal (remove, autoremove) and checks it against
// the plan the user confirmed.
func PlanRemove(ctx context.Context, eng *engine.Engine, req *wire.Request, defPrefix string) (*engine.Changeset, string, error) {
	prefix, err := query.Prefix(req, defPrefix)
	if err != nil {
		return nil, "", err
	}
	rr, err := query.RemoveRequest(req, prefix)
	if err != nil {
		return nil, "", err
	}
	cs, err := eng.PrepareRemoval(ctx, rr)
	if err != nil {
		return nil, "", err
	}
	if err := query.CheckExpect(req.Expect, query.PlanVersions(cs)); err != nil {
		return nil, "", err
	}
	return cs, prefix, nil
}

// Outcome is what applying one batch or removal did: the engine's ops and
// the packages it skipped, and the cache files no longer needed (the old
// versions an upgrade replaced, the versions a removal took away).
type Outcome struct {
	Ops      []engine.OpResult
	Skipped  []engine.Skipped
	Released []*cache.Record
	// HistoryID is the history's transaction the ops went into (0: none
	// yet), for the next batch of the same request.
	HistoryID uint64
	Err       error
	// RecoverErr is why recovering after Err failed: the next start
	// recovers again.
	RecoverErr error
}

// Install applies one batch in one engine transaction. It is never
// cancelled once started (a package is never left half-installed); a
// failed one is recovered at once.
func Install(eng *engine.Engine, recs cache.Records, b Batch, h engine.Hooks) Outcome {
	out := Outcome{HistoryID: b.History.ID}
	cs, skipped, err := eng.PrepareInstall(context.Background(), b.Request)
	out.Skipped = skipped
	if err == nil {
		out.Ops, err = apply(eng, cs, b.History, h, &out)
	}
	if out.Err = err; err != nil {
		out.RecoverErr = recoverAfter(eng)
		return out
	}
	for _, e := range b.Entries {
		if old := b.Old[e.Name]; old != "" && old != e.Version {
			out.Released = append(out.Released, cache.Retire(eng.State(), recs, e.Name, old)...)
		}
	}
	for _, r := range out.Ops {
		if r.Action == engine.Remove { // replaced by a package of the batch, or undone
			out.Released = append(out.Released, cache.Retire(eng.State(), recs, r.Name, r.Version)...)
		}
	}
	return out
}

// apply applies cs as part of the history's transaction tag, and records
// the transaction's id in out.
func apply(eng *engine.Engine, cs *engine.Changeset, tag store.HistoryTag, h engine.Hooks, out *Outcome) ([]engine.OpResult, error) {
	cs.History = &tag
	ops, err := eng.Apply(context.Background(), cs, h)
	out.HistoryID = tag.ID
	return ops, err
}

// Remove applies a removal's changeset, as Install does a batch.
func Remove(eng *engine.Engine, recs cache.Records, cs *engine.Changeset, tag store.HistoryTag, h engine.Hooks) Outcome {
	var out Outcome
	if out.Ops, out.Err = apply(eng, cs, tag, h, &out); out.Err != nil {
		out.RecoverErr = recoverAfter(eng)
		return out
	}
	for _, r := range out.Ops {
		out.Released = append(out.Released, cache.Retire(eng.State(), recs, r.Name, r.Version)...)
	}
	return out
}

// recoverAfter finishes or undoes what a failed engine transaction left, so
// the next one starts clean.
func recoverAfter(eng *engine.Engine) error {
	_, err := eng.Recover(context.Background())
	return err
}

// Abandon forgets what a failed or cancelled transaction recorded and
// downloaded but did not install (a version some prefix has, or one kept
// for an undo, stays), and returns the cache files to stop seeding and
// delete.
func Abandon(eng *engine.Engine, recs cache.Records, plan *query.InstallPlan) []*cache.Record {
	var drop []*cache.Record
	for _, x := range plan.Packages {
		drop = append(drop, cache.Release(eng.State(), recs, x.Entry.Name)...)
	}
	return drop
}

// Clean drops from the cache every version no prefix has installed (tpm
// clean) and answers the request; the files go with the returned records.
func Clean(eng *engine.Engine, recs cache.Records) (*wire.Reply, []*cache.Record) {
	drop, err := cache.Clean(eng.State(), recs)
	if err != nil {
		return wire.Failure(wire.OneLine(err.Error())), drop
	}
	out := make([]wire.Cleaned, 0, len(drop))
	for _, r := range drop {
		out = append(out, wire.Cleaned{Name: r.Name, Version: r.Version, File: r.File, Size: r.Size})
	}
	reply, err := wire.Result(out)
	if err != nil {
		return wire.Failure(err.Error()), drop
	}
	return reply, drop
}

// Mark sets the mark a mark, hold or unhold request asks for (mark takes
// auto or manual first) and answers it: the receipts change, nothing else.
func Mark(eng *engine.Engine, req *wire.Request, defPrefix string) *wire.Reply {
	prefix, err := query.Prefix(req, defPrefix)
	if err != nil {
		return wire.Failure(err.Error())
	}
	m, names, err := query.MarkOf(req)
	if err != nil {
		return wire.Failure(err.Error())
	}
	res, err := eng.SetMark(prefix, names, m)
	if err != nil {
		return wire.Failure(wire.OneLine(err.Error()))
	}
	reply, err := wire.Result(query.Marked(res))
	if err != nil {
		return wire.Failure(err.Error())
	}
	return reply
}
