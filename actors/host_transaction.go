package actors

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"tpm/builder"
	"tpm/cache"
	"tpm/engine"
	"tpm/messages"
	"tpm/messages/wire"
	"tpm/query"
	"tpm/store"
	"tpm/transaction"
)

// job is one entry of the installer's queue: a transaction (req, answered
// to its request's actor, its state in txn) or a reconciliation of the
// cache that answers seedsTo (the swarm actor).
type job struct {
	id      uint64
	started time.Time
	req     *wire.Request
	to      *actor.PID
	seedsTo *actor.PID
	txn     *transaction.Transaction
	// history is the history's transaction the job's batches go into:
	// who asked for what, and its id once the first batch has one.
	history store.HistoryTag
}

// What a job's goroutines report, each with the job's id.
type (
	planned struct {
		id   uint64
		plan *transaction.Plan
		err  error
	}
	removePlanned struct {
		id     uint64
		cs     *engine.Changeset
		prefix string
		err    error
	}
	applied struct {
		id  uint64
		out transaction.Outcome
	}
	reseeded struct {
		id         uint64
		keep, drop []*cache.Record
		err        error
	}
	// marked is the reply to a mark, hold or unhold, once the receipts
	// changed (or why not).
	marked struct {
		id    uint64
		reply *wire.Reply
	}
)

func (a *installerActor) enqueue(ctx actor.Context, j *job) {
	a.lastID++
	j.id, j.started = a.lastID, time.Now()
	a.jobs = append(a.jobs, j)
	a.startNext(ctx)
}

// startNext starts the next job when none runs and the engine is open:
// its first step on a goroutine.
func (a *installerActor) startNext(ctx actor.Context) {
	if a.cur != nil || a.eng == nil || len(a.jobs) == 0 {
		return
	}
	j := a.jobs[0]
	a.jobs = a.jobs[1:]
	a.cur = j
	eng, idx, records, self, root, def := a.eng, a.idx, a.records, ctx.Self(), ctx.ActorSystem().Root, a.cfg.Prefix
	if j.seedsTo != nil {
		cacheDir := a.cfg.CacheDir
		a.env.bg.Go(func() {
			keep, drop, err := cache.Reconcile(eng.State(), records, cacheDir)
			root.Send(self, &reseeded{id: j.id, keep: keep, drop: drop, err: err})
		})
		return
	}
	req := j.req
	switch {
	case isMark(req.Verb):
		a.env.bg.Go(func() {
			root.Send(self, &marked{id: j.id, reply: transaction.Mark(eng, req, def)})
		})
		return
	case req.Verb == wire.VerbClean:
		swarmPID := a.swarm
		a.env.bg.Go(func() {
			reply, drop := transaction.Clean(eng, records)
			if len(drop) > 0 {
				root.Send(swarmPID, &messages.SeedFiles{Remove: seedFiles(drop)})
			}
			root.Send(self, &marked{id: j.id, reply: reply})
		})
		return
	}
	j.txn = transaction.New()
	j.history = store.HistoryTag{UID: req.UID, Verb: req.Verb, Args: req.Args}
	a.env.bg.Go(func() {
		switch req.Verb {
		case wire.VerbRemove, wire.VerbAutoremove:
			cs, prefix, err := transaction.PlanRemove(context.Background(), eng, req, def)
			root.Send(self, &removePlanned{id: j.id, cs: cs, prefix: prefix, err: err})
			return
		case wire.VerbUndo, wire.VerbRollback:
			plan, err := transaction.PlanUndo(eng, idx, records, req, def)
			root.Send(self, &planned{id: j.id, plan: plan, err: err})
			return
		}
		plan, err := transaction.PlanInstall(eng, idx, records, req, def)
		root.Send(self, &planned{id: j.id, plan: plan, err: err})
	})
}

// transaction handles the messages of the running job, ignoring those of
// another (an earlier job's late downloads, a predecessor's results).
func (a *installerActor) transaction(ctx actor.Context, msg any) {
	j := a.cur
	if j == nil {
		return
	}
	if j.txn == nil { // a reconciliation, a mark, or a clean
		switch msg := msg.(type) {
		case *reseeded:
			if msg.id == j.id {
				a.reseeded(ctx, j, msg)
			}
		case *marked:
			if msg.id == j.id {
				ctx.Send(j.to, msg.reply)
				ctx.Unwatch(j.to)
				a.cur = nil
				a.startNext(ctx)
			}
		}
		return
	}
	switch msg := msg.(type) {
	case *planned:
		if msg.id == j.id {
			a.planned(ctx, j, msg)
		}
	case *removePlanned:
		if msg.id == j.id {
			a.removePlanned(ctx, j, msg)
		}
	case *messages.DownloadProgress:
		if msg.Txn == j.id && j.txn.Stopping() == nil {
			a.progress(ctx, j, j.txn.NameOf(msg.File), wire.StageDownload, msg.Bytes, msg.Total, msg.Rate, msg.Peers)
		}
	case *messages.DownloadDone:
		if msg.Txn == j.id && j.txn.Stopping() == nil {
			a.downloaded(ctx, j, msg)
		}
	case *applied:
		if msg.id == j.id {
			a.applied(ctx, j, msg)
		}
	}
}

func (a *installerActor) reseeded(ctx actor.Context, j *job, msg *reseeded) {
	if msg.err != nil {
		a.env.log.Warn("reconciling the cache with the receipts", "err", msg.err)
	}
	ctx.Send(j.seedsTo, &messages.SeedFiles{Add: seedFiles(msg.keep), Remove: seedFiles(msg.drop), Reset: true})
	a.finish(ctx, j, nil)
}

func (a *installerActor) progress(ctx actor.Context, j *job, name, stage string, bytes, total int64, rate float64, peers int) {
	ctx.Send(j.to, &wire.Reply{Type: wire.ReplyProgress, Progress: &wire.Progress{
		Package: name, Stage: stage, Bytes: bytes, Total: total, Rate: rate, Peers: peers}})
}

// planned shows the plan and asks the swarm for every package of it, in
// parallel.
func (a *installerActor) planned(ctx actor.Context, j *job, msg *planned) {
	if msg.err == nil {
		msg.err = j.txn.Stopping()
	}
	if msg.err != nil {
		a.finish(ctx, j, msg.err)
		return
	}
	j.txn.Planned(msg.plan)
	if msg.plan.Install.Empty() {
		nothing := "everything asked for is installed"
		if msg.plan.Install.Undo {
			nothing = "its changes are undone already"
		}
		ctx.Send(j.to, &wire.Reply{Type: wire.ReplyLog, Text: "nothing to do: " + nothing})
		a.finish(ctx, j, nil)
		return
	}
	ctx.Send(j.to, &wire.Reply{Type: wire.ReplyPlan, Plan: msg.plan.Install.Items()})
	for _, x := range msg.plan.Install.Packages {
		ctx.Request(a.swarm, &messages.Download{Txn: j.id, SeedFile: seedFileOfEntry(x.Entry)})
	}
	a.applyNext(ctx, j) // an undo that only removes needs no download
}

func (a *installerActor) downloaded(ctx actor.Context, j *job, msg *messages.DownloadDone) {
	if msg.Err != nil {
		a.stopJob(ctx, j, fmt.Errorf("download of %s failed: %v", j.txn.NameOf(msg.File), msg.Err))
		return
	}
	for _, e := range j.txn.Downloaded(msg.File, msg.Path) {
		a.progress(ctx, j, e.Name, wire.StageVerify, e.Size, e.Size, 0, 0)
	}
	a.applyNext(ctx, j)
}

// applyNext applies the batch the transaction says is ready, if any.
func (a *installerActor) applyNext(ctx actor.Context, j *job) {
	b, ok := j.txn.Next()
	if !ok {
		return
	}
	var names []string
	for _, e := range b.Entries {
		a.progress(ctx, j, e.Name, wire.StageInstall, e.Size, e.Size, 0, 0)
		names = append(names, e.Name)
	}
	a.installing = strings.Join(names, ", ")
	b.History = j.history
	records := a.records
	a.apply(ctx, j, func(eng *engine.Engine, h engine.Hooks) transaction.Outcome {
		return transaction.Install(eng, records, b, h)
	})
}

func (a *installerActor) removePlanned(ctx actor.Context, j *job, msg *removePlanned) {
	if msg.err == nil {
		msg.err = j.txn.Stopping()
	}
	if msg.err != nil {
		a.finish(ctx, j, msg.err)
		return
	}
	j.txn.Removing(msg.prefix)
	ctx.Send(j.to, &wire.Reply{Type: wire.ReplyPlan, Plan: query.PlanItems(msg.cs)})
	a.installing = strings.Join(j.req.Args, ", ")
	records, cs, tag := a.records, msg.cs, j.history
	a.apply(ctx, j, func(eng *engine.Engine, h engine.Hooks) transaction.Outcome {
		return transaction.Remove(eng, records, cs, tag, h)
	})
}

// apply runs one engine transaction on a goroutine: never cancelled once
// started (a package is never left half-installed), its output sent to
// the request's actor as it comes.
func (a *installerActor) apply(ctx actor.Context, j *job, run func(*engine.Engine, engine.Hooks) transaction.Outcome) {
	done := make(chan struct{})
	a.applyDone = done
	eng, self, root, id := a.eng, ctx.Self(), ctx.ActorSystem().Root, j.id
	hooks := a.hooks(ctx, j)
	log, m, prefix := a.env.log, a.cfg.Metrics, a.cfg.Prefix
	a.env.bg.Go(func() {
		msg := &applied{id: id}
		func() {
			defer close(done)
			defer func() {
				if p := recover(); p != nil {
					log.Error("transaction failed", "panic", fmt.Sprint(p))
					msg.out.Err = fmt.Errorf("the daemon failed during the transaction (%v); check with tpm verify and run the command again", p)
				}
			}()
			start := time.Now()
			msg.out = run(eng, hooks)
			if msg.out.RecoverErr != nil {
				log.Error("recovering after a failed transaction", "err", msg.out.RecoverErr)
			}
			if msg.out.Err == nil {
				m.Install(time.Since(start))
				m.Installed(query.CountInstalled(eng, prefix))
			}
		}()
		root.Send(self, msg)
	})
}

// hooks send what an engine transaction reports to the request's actor,
// and hand source builds to the builder actor, which kills them when it
// restarts or the daemon stops.
func (a *installerActor) hooks(ctx actor.Context, j *job) engine.Hooks {
	root, to, builderPID := ctx.ActorSystem().Root, j.to, a.builder
	a.lastID++
	buildID := a.lastID // one build at most per apply
	return engine.Hooks{
		Output: outputTo(root, to),
		Applied: func(r engine.OpResult) {
			res := query.OpResult(r)
			root.Send(to, &wire.Reply{Type: wire.ReplyDone, Done: &res})
		},
		Build: func(_ context.Context, spec builder.Spec, _ builder.LogFunc) (*builder.Result, error) {
			timeout := spec.Timeout
			if timeout <= 0 {
				timeout = builder.DefaultTimeout
			}
			res, err := root.RequestFuture(builderPID, &messages.BuildRequest{ID: buildID, Spec: spec, OutputTo: to}, timeout+time.Minute).Result()
			if err != nil {
				return nil, fmt.Errorf("build of %s: %w", spec.Name, err)
			}
			r := res.(*messages.BuildResult)
			return r.Result, r.Err
		},
	}
}

func (a *installerActor) applied(ctx actor.Context, j *job, msg *applied) {
	a.applyDone = nil
	a.installing = ""
	if msg.out.HistoryID != 0 {
		j.history.ID = msg.out.HistoryID
	}
	for _, s := range msg.out.Skipped {
		sk := query.Skipped(s)
		ctx.Send(j.to, &wire.Reply{Type: wire.ReplySkipped, Skipped: &sk})
	}
	in := j.txn.Applied(msg.out.Ops, msg.out.Err)
	if len(msg.out.Released) > 0 {
		ctx.Send(a.swarm, &messages.SeedFiles{Remove: seedFiles(msg.out.Released)})
	}
	if msg.out.Err != nil {
		a.finish(ctx, j, j.txn.Partial(msg.out.Err))
		return
	}
	for _, e := range in {
		a.progress(ctx, j, e.Name, wire.StageDone, e.Size, e.Size, 0, 0)
	}
	switch {
	case j.txn.Stopping() != nil:
		a.finish(ctx, j, j.txn.Partial(j.txn.Stopping()))
	case j.txn.Done():
		a.finish(ctx, j, nil)
	default:
		a.applyNext(ctx, j)
	}
}

// stopJob ends the running job: at once when no goroutine works for it,
// otherwise when that goroutine reports (a package being applied is
// finished first).
func (a *installerActor) stopJob(ctx actor.Context, j *job, why error) {
	now := j.txn.Stop(why)
	ctx.Send(a.swarm, &messages.CancelDownloads{Txn: j.id})
	if now {
		a.finish(ctx, j, j.txn.Partial(j.txn.Stopping()))
	}
}

// requestGone is a request's actor that stopped: its CLI left (or it was
// answered). A transaction that installed nothing yet is cancelled; one
// that did finishes for nobody, since a package is never half-installed.
func (a *installerActor) requestGone(ctx actor.Context, who *actor.PID) {
	for i, j := range a.jobs {
		if j.to != nil && j.to.Equal(who) {
			a.jobs = append(a.jobs[:i], a.jobs[i+1:]...)
			return
		}
	}
	if j := a.cur; j != nil && j.txn != nil && j.to != nil && j.to.Equal(who) && !j.txn.Placed() {
		a.stopJob(ctx, j, transaction.ErrCancelled)
	}
}

// finish answers the job's request and starts the next job. What a failed
// transaction recorded and downloaded but did not install goes (a version
// some prefix has stays).
func (a *installerActor) finish(ctx actor.Context, j *job, err error) {
	if j.req != nil {
		a.cfg.Metrics.Transaction(j.req.Verb, err != nil, time.Since(j.started))
	}
	if j.to != nil {
		a.answer(ctx, j, err)
	}
	if j.txn != nil && err != nil && j.txn.Plan() != nil {
		plan := j.txn.Plan()
		ctx.Send(a.swarm, &messages.CancelDownloads{Txn: j.id})
		eng, records, swarmPID, root := a.eng, a.records, a.swarm, ctx.ActorSystem().Root
		a.env.bg.Go(func() {
			if drop := transaction.Abandon(eng, records, plan); len(drop) > 0 {
				root.Send(swarmPID, &messages.SeedFiles{Remove: seedFiles(drop)})
			}
		})
	}
	a.cur, a.installing = nil, ""
	a.startNext(ctx)
}

// answer sends the job's final reply.
func (a *installerActor) answer(ctx actor.Context, j *job, err error) {
	var reply *wire.Reply
	if err != nil {
		reply = wire.Failure(wire.OneLine(err.Error()))
	} else if reply, err = wire.Result(j.txn.Results()); err != nil {
		reply = wire.Failure(err.Error())
	}
	ctx.Send(j.to, reply)
	ctx.Unwatch(j.to)
}

// isMark says whether verb changes only the receipts' marks: it is a job
// of the queue all the same, so no transaction's receipt overwrites it.
// (A clean is such a job too, so no transaction's download is dropped.)
func isMark(verb string) bool {
	return verb == wire.VerbMark || verb == wire.VerbHold || verb == wire.VerbUnhold
}

// seedFiles are cache records as the swarm's seeding changes.
func seedFiles(recs []*cache.Record) []messages.SeedFile {
	var out []messages.SeedFile
	for _, r := range recs {
		h, _ := r.Hash() // the cache returns only records with a good one
		out = append(out, messages.SeedFile{File: r.File, InfoHash: h, InfoBytes: r.InfoBytes, SHA256: r.SHA256, Size: r.Size})
	}
	return out
}

// seedFileOfEntry is the seeding of a catalog entry's file.
func seedFileOfEntry(e *store.CatalogEntry) messages.SeedFile {
	h, _ := cache.RecordOf(e).Hash() // checked when the index was loaded
	return messages.SeedFile{File: e.File, InfoHash: h, InfoBytes: e.InfoBytes, SHA256: e.SHA256, Size: e.Size}
}

// outputTo sends a script's or a build's output lines to a request's
// actor, each waiting until it is written, so a script that prints fast
// (or a CLI that reads slowly) is held by the pipe it writes to, not
// queued in the daemon's memory; once the CLI is gone, lines are dropped.
func outputTo(root *actor.RootContext, to *actor.PID) func(pkg, step, line string) {
	var gone atomic.Bool // a build's steps may report from more than one goroutine
	return func(pkg, step, line string) {
		if to == nil || gone.Load() {
			return
		}
		if sendPart(root, to, &wire.Reply{Type: wire.ReplyOutput, Output: &wire.Output{Package: pkg, Step: step, Line: line}}) != nil {
			gone.Store(true)
		}
	}
}
