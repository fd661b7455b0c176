package actors

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"tpm/builder"
	"tpm/engine"
	"tpm/index"
	"tpm/messages"
	"tpm/messages/wire"
	"tpm/metrics"
	"tpm/query"
	"tpm/store"
)

// job is one entry of the installer's queue: a transaction (req, answered
// to its request's actor) or a reconciliation of the cache that answers
// seedsTo (the swarm actor).
type job struct {
	id      uint64
	started time.Time
	req     *wire.Request
	to      *actor.PID
	seedsTo *actor.PID

	prefix  string
	plan    *query.InstallPlan
	reasons map[string]store.Reason // of the packages installed when planned
	paths   []string                // each package's file, once downloaded
	applied []bool                  // each package's, once applied
	current []int                   // the packages being applied
	busy    bool                    // a goroutine works for the job (planning, applying)
	placed  bool                    // a package was applied: the rest finishes whoever listens
	results []wire.OpResult
	names   []string // installed so far, for a partial failure's message
	stop    error    // why the job ends as soon as its goroutine reports
}

// partial adds to err what the transaction had installed before it.
func (j *job) partial(err error) error {
	if len(j.names) == 0 {
		return err
	}
	return fmt.Errorf("%w (already installed: %s)", err, strings.Join(j.names, ", "))
}

// What a transaction's goroutines report.
type (
	planned struct {
		id      uint64
		plan    *query.InstallPlan
		reasons map[string]store.Reason
		prefix  string
		err     error
	}
	removePlanned struct {
		id     uint64
		plan   *engine.Changeset
		prefix string
		err    error
	}
	applied struct {
		id      uint64
		ops     []engine.OpResult
		skipped []engine.Skipped
		dropped []messages.SeedFile // cache files no longer needed
		err     error
	}
	reseeded struct {
		id          uint64
		add, remove []messages.SeedFile
		err         error
	}
)

func (a *installerActor) enqueue(ctx actor.Context, j *job) {
	a.lastID++
	j.id, j.started = a.lastID, time.Now()
	a.jobs = append(a.jobs, j)
	a.startNext(ctx)
}

// startNext starts the next job when none runs and the engine is open.
func (a *installerActor) startNext(ctx actor.Context) {
	if a.cur != nil || a.eng == nil || len(a.jobs) == 0 {
		return
	}
	j := a.jobs[0]
	a.jobs = a.jobs[1:]
	a.cur, j.busy = j, true
	eng, idx, records, self, root := a.eng, a.idx, a.records, ctx.Self(), ctx.ActorSystem().Root
	switch {
	case j.seedsTo != nil:
		cacheDir := a.cfg.CacheDir
		a.env.bg.Go(func() {
			add, remove, err := reseed(eng, records, cacheDir)
			root.Send(self, &reseeded{id: j.id, add: add, remove: remove, err: err})
		})
	case j.req.Verb == wire.VerbRemove:
		req, def := j.req, a.cfg.Prefix
		a.env.bg.Go(func() {
			res := &removePlanned{id: j.id}
			res.prefix, res.err = query.Prefix(req, def)
			if res.err == nil && len(req.Args) == 0 {
				res.err = errors.New("remove takes package names (tpm remove NAME...)")
			}
			if res.err == nil {
				res.plan, res.err = eng.PrepareRemove(context.Background(), res.prefix, req.Args, req.Options.Cascade)
			}
			if res.err == nil {
				res.err = query.CheckExpect(req.Expect, query.PlanVersions(res.plan))
			}
			root.Send(self, res)
		})
	default:
		req, def := j.req, a.cfg.Prefix
		a.env.bg.Go(func() {
			root.Send(self, planInstall(eng, idx, records, req, def, j.id))
		})
	}
}

// planInstall plans an install or upgrade against idx and records every
// file it will download before the download starts: a crash then leaves
// records that the next start reconciles with the receipts.
func planInstall(eng *engine.Engine, idx *index.Snapshot, records store.CacheRecords, req *wire.Request, def string, id uint64) *planned {
	res := &planned{id: id}
	res.prefix, res.err = query.Prefix(req, def)
	if res.err != nil {
		return res
	}
	installed, err := query.Receipts(eng, res.prefix)
	if err != nil {
		res.err = err
		return res
	}
	res.reasons = make(map[string]store.Reason, len(installed))
	for n, r := range installed {
		res.reasons[n] = r.Reason
	}
	res.plan, res.err = query.PlanInstall(idx, installed, req.Args, req.Verb == wire.VerbUpgrade, req.Options)
	if res.err == nil {
		res.err = query.CheckExpect(req.Expect, res.plan.Versions())
	}
	if res.err != nil {
		return res
	}
	for _, x := range res.plan.Packages {
		e := x.Entry
		if err := records.Put(&store.CacheRecord{Name: e.Name, Version: e.Version, File: e.File, SHA256: e.SHA256,
			Size: e.Size, InfoHash: e.InfoHash, InfoBytes: e.InfoBytes}); err != nil {
			res.err = err
			return res
		}
	}
	return res
}

// transaction handles the messages of the running job.
func (a *installerActor) transaction(ctx actor.Context, msg any) {
	j := a.cur
	switch msg := msg.(type) {
	case *reseeded:
		if j == nil || msg.id != j.id {
			return
		}
		if msg.err != nil {
			a.env.log.Warn("reconciling the cache with the receipts", "err", msg.err)
		}
		ctx.Send(j.seedsTo, &messages.SeedFiles{Add: msg.add, Remove: msg.remove, Reset: true})
		a.finish(ctx, j, nil)
	case *planned:
		if j == nil || msg.id != j.id {
			return
		}
		j.busy = false
		a.planned(ctx, j, msg)
	case *removePlanned:
		if j == nil || msg.id != j.id {
			return
		}
		j.busy = false
		a.removePlanned(ctx, j, msg)
	case *messages.DownloadProgress:
		if j == nil || msg.Txn != j.id || j.stop != nil {
			return
		}
		ctx.Send(j.to, &wire.Reply{Type: wire.ReplyProgress, Progress: &wire.Progress{
			Package: j.nameOf(msg.File), Stage: wire.StageDownload, Bytes: msg.Bytes, Total: msg.Total, Rate: msg.Rate, Peers: msg.Peers}})
	case *messages.DownloadDone:
		if j == nil || msg.Txn != j.id || j.stop != nil {
			return
		}
		a.downloaded(ctx, j, msg)
	case *applied:
		if j == nil || msg.id != j.id {
			return
		}
		a.applied(ctx, j, msg)
	}
}

func (j *job) nameOf(file string) string {
	for _, x := range j.plan.Packages {
		if x.Entry.File == file {
			return x.Entry.Name
		}
	}
	return file
}

func (a *installerActor) planned(ctx actor.Context, j *job, msg *planned) {
	if msg.err == nil && j.stop != nil {
		msg.err = j.stop
	}
	j.plan, j.reasons, j.prefix = msg.plan, msg.reasons, msg.prefix
	if msg.err != nil {
		a.finish(ctx, j, msg.err)
		return
	}
	if len(j.plan.Packages) == 0 {
		ctx.Send(j.to, &wire.Reply{Type: wire.ReplyLog, Text: "nothing to do: everything asked for is installed"})
		a.finish(ctx, j, nil)
		return
	}
	ctx.Send(j.to, &wire.Reply{Type: wire.ReplyPlan, Plan: j.plan.Items()})
	j.paths = make([]string, len(j.plan.Packages))
	j.applied = make([]bool, len(j.plan.Packages))
	for _, x := range j.plan.Packages {
		ctx.Request(a.swarm, &messages.Download{Txn: j.id, SeedFile: seedFileOfEntry(x.Entry)})
	}
}

func (a *installerActor) downloaded(ctx actor.Context, j *job, msg *messages.DownloadDone) {
	if msg.Err != nil {
		a.stopJob(ctx, j, fmt.Errorf("download of %s failed: %v", j.nameOf(msg.File), msg.Err))
		return
	}
	for i, x := range j.plan.Packages {
		if x.Entry.File == msg.File {
			j.paths[i] = msg.Path
			ctx.Send(j.to, &wire.Reply{Type: wire.ReplyProgress, Progress: &wire.Progress{
				Package: x.Entry.Name, Stage: wire.StageVerify, Bytes: x.Entry.Size, Total: x.Entry.Size}})
		}
	}
	a.applyNext(ctx, j)
}

// applyNext applies, in one engine transaction, the packages that are
// here and whose dependencies in the plan are applied or go in with them,
// the first such in the plan's order and those after it that want the
// same intent: packages that do not depend on each other go in as their
// downloads end, so the last download is followed by one install, and
// downloads that end together share one (its sync is most of an install's
// time).
func (a *installerActor) applyNext(ctx actor.Context, j *job) {
	if j.busy || j.stop != nil {
		return
	}
	var batch []int
	taken := make([]bool, len(j.plan.Packages))
	for i, x := range j.plan.Packages {
		if j.applied[i] || j.paths[i] == "" {
			continue
		}
		if len(batch) > 0 && x.Intent() != j.plan.Packages[batch[0]].Intent() {
			continue
		}
		ready := true
		for _, d := range x.After {
			ready = ready && (j.applied[d] || taken[d])
		}
		if ready {
			batch = append(batch, i)
			taken[i] = true
		}
	}
	if len(batch) == 0 {
		return
	}
	j.current = batch
	req := engine.InstallRequest{Prefix: j.prefix, Intent: j.plan.Packages[batch[0]].Intent()}
	var names []string
	for _, i := range batch {
		e := j.plan.Packages[i].Entry
		reason := store.Dependency
		if j.plan.Packages[i].Requested {
			reason = store.Explicit
		}
		if r, ok := j.reasons[e.Name]; ok {
			reason = r // an upgrade keeps why the package is here
		}
		ctx.Send(j.to, &wire.Reply{Type: wire.ReplyProgress, Progress: &wire.Progress{
			Package: e.Name, Stage: wire.StageInstall, Bytes: e.Size, Total: e.Size}})
		req.Archives = append(req.Archives, engine.Archive{Path: j.paths[i], Reason: reason})
		names = append(names, e.Name)
	}
	a.installing = strings.Join(names, ", ")
	records := a.records
	plan := j.plan
	a.apply(ctx, j, func(eng *engine.Engine, h engine.Hooks) ([]engine.OpResult, []engine.Skipped, error) {
		p, skipped, err := eng.PrepareInstall(context.Background(), req)
		if err != nil {
			return nil, skipped, err
		}
		ops, err := eng.Apply(context.Background(), p, h)
		return ops, skipped, err
	}, func(eng *engine.Engine) []messages.SeedFile {
		// The old version's file, if this was an upgrade, is no longer
		// needed by this prefix.
		var dropped []messages.SeedFile
		for _, i := range batch {
			x := plan.Packages[i]
			if x.Old != "" && x.Old != x.Entry.Version {
				dropped = append(dropped, dropCache(eng, records, x.Entry.Name, x.Old)...)
			}
		}
		return dropped
	})
}

// apply runs one engine transaction on a goroutine: never cancelled once
// started (a package is never left half-installed), its output sent to
// the request's actor as it comes.
func (a *installerActor) apply(ctx actor.Context, j *job, run func(*engine.Engine, engine.Hooks) ([]engine.OpResult, []engine.Skipped, error),
	after func(*engine.Engine) []messages.SeedFile) {
	j.busy, j.placed = true, true
	done := make(chan struct{})
	a.applyDone = done
	eng, self, root, to, builderPID := a.eng, ctx.Self(), ctx.ActorSystem().Root, j.to, a.builder
	a.lastID++
	buildID := a.lastID // one build at most per apply
	log := a.env.log
	hooks := engine.Hooks{
		Output: func(pkg, step, line string) {
			root.Send(to, &wire.Reply{Type: wire.ReplyOutput, Output: &wire.Output{Package: pkg, Step: step, Line: line}})
		},
		Applied: func(r engine.OpResult) {
			res := query.OpResult(r)
			root.Send(to, &wire.Reply{Type: wire.ReplyDone, Done: &res})
		},
		// Builds run under the builder actor, which kills them when it
		// restarts or the daemon stops; their output goes to the request.
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
	id, m, prefix := j.id, a.cfg.Metrics, a.cfg.Prefix
	a.env.bg.Go(func() {
		msg := &applied{id: id}
		func() {
			defer close(done)
			defer func() {
				if p := recover(); p != nil {
					log.Error("transaction failed", "panic", fmt.Sprint(p))
					msg.err = fmt.Errorf("the daemon failed during the transaction (%v); check with tpm verify and run the command again", p)
				}
			}()
			start := time.Now()
			msg.ops, msg.skipped, msg.err = run(eng, hooks)
			if msg.err == nil {
				m.Install(time.Since(start))
				countInstalled(eng, prefix, m)
			}
			if msg.err != nil {
				if _, rerr := eng.Recover(context.Background()); rerr != nil {
					log.Error("recovering after a failed transaction", "err", rerr)
				}
				return
			}
			msg.dropped = after(eng)
		}()
		root.Send(self, msg)
	})
}

func (a *installerActor) applied(ctx actor.Context, j *job, msg *applied) {
	j.busy = false
	a.applyDone = nil
	a.installing = ""
	for _, s := range msg.skipped {
		sk := query.Skipped(s)
		ctx.Send(j.to, &wire.Reply{Type: wire.ReplySkipped, Skipped: &sk})
	}
	for _, r := range msg.ops {
		j.results = append(j.results, query.OpResult(r))
		j.names = append(j.names, r.Name)
	}
	if len(msg.dropped) > 0 {
		ctx.Send(a.swarm, &messages.SeedFiles{Remove: msg.dropped})
	}
	if msg.err != nil {
		a.finish(ctx, j, j.partial(msg.err))
		return
	}
	if j.plan == nil { // a removal: one engine transaction
		a.finish(ctx, j, nil)
		return
	}
	for _, i := range j.current {
		e := j.plan.Packages[i].Entry
		ctx.Send(j.to, &wire.Reply{Type: wire.ReplyProgress, Progress: &wire.Progress{
			Package: e.Name, Stage: wire.StageDone, Bytes: e.Size, Total: e.Size}})
		j.applied[i] = true
	}
	switch {
	case j.stop != nil:
		a.finish(ctx, j, j.partial(j.stop))
	case !slices.Contains(j.applied, false):
		a.finish(ctx, j, nil)
	default:
		a.applyNext(ctx, j)
	}
}

func (a *installerActor) removePlanned(ctx actor.Context, j *job, msg *removePlanned) {
	if msg.err == nil && j.stop != nil {
		msg.err = j.stop
	}
	if msg.err != nil {
		a.finish(ctx, j, msg.err)
		return
	}
	j.prefix = msg.prefix
	ctx.Send(j.to, &wire.Reply{Type: wire.ReplyPlan, Plan: query.PlanItems(msg.plan)})
	a.installing = strings.Join(j.req.Args, ", ")
	records := a.records
	var removed []engine.OpResult
	a.apply(ctx, j, func(eng *engine.Engine, h engine.Hooks) ([]engine.OpResult, []engine.Skipped, error) {
		ops, err := eng.Apply(context.Background(), msg.plan, h)
		removed = ops
		return ops, nil, err
	}, func(eng *engine.Engine) []messages.SeedFile {
		var drop []messages.SeedFile
		for _, r := range removed {
			drop = append(drop, dropCache(eng, records, r.Name, r.Version)...)
		}
		return drop
	})
}

// stopJob ends the running job: at once when no goroutine works for it,
// otherwise when that goroutine reports (a package being applied is
// finished first).
func (a *installerActor) stopJob(ctx actor.Context, j *job, why error) {
	if j.stop == nil {
		j.stop = why
	}
	ctx.Send(a.swarm, &messages.CancelDownloads{Txn: j.id})
	if !j.busy {
		a.finish(ctx, j, j.partial(j.stop))
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
	if j := a.cur; j != nil && j.to != nil && j.to.Equal(who) && !j.placed {
		a.stopJob(ctx, j, errors.New("cancelled: the CLI went away; nothing was installed"))
	}
}

// countInstalled tells m how many packages prefix has: keys only, so it
// costs little after every package applied.
func countInstalled(eng *engine.Engine, prefix string, m *metrics.Host) {
	eng.State().View(func(tx *store.StateTx) error {
		m.Installed(tx.CountReceipts(prefix))
		return nil
	})
}

// finish answers the job's request and starts the next job.
func (a *installerActor) finish(ctx actor.Context, j *job, err error) {
	if j.req != nil {
		a.cfg.Metrics.Transaction(j.req.Verb, err != nil, time.Since(j.started))
	}
	if j.to != nil {
		var reply *wire.Reply
		if err != nil {
			reply = wire.Failure(oneLine(err.Error()))
		} else if reply, err = wire.Result(nonNil(j.results)); err != nil {
			reply = wire.Failure(err.Error())
		}
		ctx.Send(j.to, reply)
		ctx.Unwatch(j.to)
	}
	if err != nil && j.plan != nil {
		// What this transaction recorded and downloaded but did not
		// install goes; dropCache keeps what some prefix has.
		ctx.Send(a.swarm, &messages.CancelDownloads{Txn: j.id})
		eng, records, swarmPID, root := a.eng, a.records, a.swarm, ctx.ActorSystem().Root
		pkgs := j.plan.Packages
		a.env.bg.Go(func() {
			var drop []messages.SeedFile
			for _, x := range pkgs {
				drop = append(drop, dropCache(eng, records, x.Entry.Name, x.Entry.Version)...)
			}
			if len(drop) > 0 {
				root.Send(swarmPID, &messages.SeedFiles{Remove: drop})
			}
		})
	}
	a.cur, a.installing = nil, ""
	a.startNext(ctx)
}

func nonNil(rs []wire.OpResult) []wire.OpResult {
	if rs == nil {
		return []wire.OpResult{}
	}
	return rs
}
