package actors

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"tpm/cache"
	"tpm/engine"
	"tpm/fairqueue"
	"tpm/index"
	"tpm/messages"
	"tpm/messages/wire"
	"tpm/query"
)

// Bounds of what the installer takes on: queries answered at once (each on
// a goroutine, reading the database), and of them for one uid, so that
// another user's query always finds a slot soon; queries and transactions
// waiting. Beyond them a request is answered at once that tpmd is busy.
const (
	maxQueries       = 4
	maxQueriesUID    = 2
	maxQueuedQueries = 256
	maxQueuedJobs    = 64
)

// installerActor owns the engine (the host's state database), the index
// snapshot it installs from, the queue of jobs (transactions, and the
// reconciliation of the cache with the receipts; one runs at a time) and
// the query slots. It receives, delegates and replies: a transaction's
// state is a transaction.Transaction (host_transaction.go drives it), its
// work and the queries' answers run on goroutines in the domain packages
// (transaction, cache, query), and report back with messages.
//
// The engine is opened when the actor starts (on a goroutine: it waits for
// a predecessor's transaction to let go of the database, and recovers what
// a crash left) and closed when it stops, after the package being applied
// is in.
type installerActor struct {
	env            *env
	cfg            HostConfig
	started        time.Time // of the daemon, for status
	swarm, builder *actor.PID
	life           lifetime
	records        cache.Records
	eng            *engine.Engine // nil until open
	// applyDone is closed by the goroutine applying a package once it is
	// done with the engine; nil when none runs. Closing the engine waits
	// for it, so a transaction is never cut off halfway.
	applyDone chan struct{}
	idx       *index.Snapshot
	jobs      []*job // waiting
	cur       *job   // running
	// lastID numbers jobs and builds. It starts from the instance's random
	// token, so a predecessor's late results (downloads, an apply that
	// finished after a restart) never match a job of this instance.
	lastID     uint64
	installing string // what the running transaction applies now, for status
	queries    *fairqueue.Queue[waitingQuery]
	unknown    unknownMessages
}

// waitingQuery is a query waiting for the engine or a free slot.
type waitingQuery struct {
	req *wire.Request
	to  *actor.PID
}

// engineOpened is what the goroutine that opens the engine reports.
type engineOpened struct {
	token uint64
	eng   *engine.Engine
	rec   *engine.Recovery
	err   error
}

// queryDone frees a query slot of the instance with the token.
type queryDone struct {
	token uint64
	uid   int
}

func (a *installerActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		a.start(ctx)
	case *actor.Restarting:
		a.shutdown(ctx, "the daemon's installer failed and was restarted; what had not started installing was cancelled: check with tpm list, then run the command again")
	case *actor.Stopping:
		a.shutdown(ctx, "the daemon is stopping; run the command again when it is back")
	case *messages.RestartFailed:
		restartFailed(Installer, msg)
	case *engineOpened:
		a.engineOpened(ctx, msg)
	case *messages.IndexReady:
		a.indexReady(ctx, msg)
	case *messages.NeedSeeds:
		a.needSeeds(ctx)
	case *wire.Request:
		a.request(ctx, msg)
	case *queryDone:
		if msg.token == a.life.token {
			a.queries.Done(msg.uid)
			a.nextQuery(ctx)
		}
	case *actor.Terminated:
		a.requestGone(ctx, msg.Who)
	case *reseeded, *planned, *removePlanned, *applied, *messages.DownloadProgress, *messages.DownloadDone:
		a.transaction(ctx, msg)
	default:
		a.unknown.log(a.env.log, Installer, msg)
	}
}

func (a *installerActor) start(ctx actor.Context) {
	a.life = newLifetime()
	a.lastID = a.life.token
	a.records = cache.Records{Dir: filepath.Join(a.cfg.StateDir, "cache")}
	a.idx = index.Empty()
	a.queries = fairqueue.New[waitingQuery](maxQueries, maxQueriesUID)
	a.unknown = unknownMessages{}
	ctx.Request(ctx.Parent(), &messages.NeedIndex{})
	// What the cache holds is reconciled with the receipts first: a
	// predecessor may have left records of a transaction it cancelled.
	a.enqueue(ctx, &job{seedsTo: a.swarm})
	a.openEngine(ctx)
}

func (a *installerActor) openEngine(ctx actor.Context) {
	life, opts, self, root := a.life, engineOptions(a.cfg), ctx.Self(), ctx.ActorSystem().Root
	log := a.env.log
	a.env.bg.Go(func() {
		eng, rec, err := engine.OpenWhenFree(life.ctx, opts, 100*time.Millisecond, func() {
			log.Info("waiting for the transaction that runs to let go of the state database")
		})
		if err == nil && life.ctx.Err() != nil {
			eng.Close() // the instance that wanted it is gone
			return
		}
		root.Send(self, &engineOpened{token: life.token, eng: eng, rec: rec, err: err})
	})
}

func (a *installerActor) engineOpened(ctx actor.Context, msg *engineOpened) {
	if msg.token != a.life.token {
		if msg.eng != nil {
			msg.eng.Close()
		}
		return
	}
	if msg.err != nil {
		ctx.Send(ctx.Parent(), &messages.Ready{Component: Installer, Err: msg.err})
		return
	}
	a.eng = msg.eng
	a.countInstalled()
	if rec := msg.rec; rec != nil {
		a.env.log.Warn("finished a transaction that a crash interrupted", "id", rec.ID, "prefix", rec.Prefix,
			"completed", rec.Completed, "rolled_back", rec.RolledBack, "scripts_not_run", rec.ScriptsNotRun)
	}
	ctx.Send(ctx.Parent(), &messages.Ready{Component: Installer})
	a.nextQuery(ctx)
	a.startNext(ctx)
}

// countInstalled tells the metrics how many packages the default prefix
// has: keys only, so it costs little after every package applied.
func (a *installerActor) countInstalled() {
	a.cfg.Metrics.Installed(query.CountInstalled(a.eng, a.cfg.Prefix))
}

// indexReady takes a new index, and answers the syncs it carries once it
// is the one queries read.
func (a *installerActor) indexReady(ctx actor.Context, msg *messages.IndexReady) {
	a.idx = msg.Index
	a.cfg.Metrics.Index(a.idx.Generation, a.idx.Updated, a.idx.ValidUntil)
	if len(msg.Synced) == 0 {
		return
	}
	res, err := wire.Result(wire.SyncResult{Generation: msg.Index.Generation, Changed: msg.Changed})
	if err != nil {
		res = wire.Failure(err.Error())
	}
	for _, to := range msg.Synced {
		ctx.Send(to, res)
	}
}

// needSeeds queues a reconciliation for the swarm that asked, unless one
// is queued or running: its SeedFiles leave after this request came, so
// they reach the swarm that asked.
func (a *installerActor) needSeeds(ctx actor.Context) {
	if a.cur != nil && a.cur.seedsTo != nil {
		return
	}
	for _, j := range a.jobs {
		if j.seedsTo != nil {
			return
		}
	}
	a.enqueue(ctx, &job{seedsTo: ctx.Sender()})
}

// shutdown ends this instance: every waiting request is told why, the
// running transaction's downloads stop, and the engine closes once the
// package being applied (if any) is in.
func (a *installerActor) shutdown(ctx actor.Context, why string) {
	a.life.end()
	a.queries.Reset(func(q waitingQuery) { ctx.Send(q.to, wire.Failure(why)) })
	for _, j := range a.jobs {
		if j.to != nil {
			ctx.Send(j.to, wire.Failure(why))
		}
	}
	a.jobs = nil
	if j := a.cur; j != nil {
		if j.to != nil {
			ctx.Send(j.to, wire.Failure(j.txn.Partial(errors.New(why)).Error()))
		}
		ctx.Send(a.swarm, &messages.CancelDownloads{Txn: j.id})
		a.cur = nil
	}
	if eng, done := a.eng, a.applyDone; eng != nil {
		a.env.bg.Go(func() {
			if done != nil {
				<-done
			}
			eng.Close()
		})
	}
	a.eng, a.applyDone = nil, nil
}

// request takes a request of the gateway; its sender is the request's actor.
func (a *installerActor) request(ctx actor.Context, req *wire.Request) {
	to := ctx.Sender()
	switch req.Verb {
	case wire.VerbStatus:
		a.status(ctx, to)
	case wire.VerbInstall, wire.VerbUpgrade, wire.VerbRemove:
		if len(a.jobs) >= maxQueuedJobs {
			ctx.Send(to, wire.Failure(fmt.Sprintf("tpmd is busy: %d transactions are waiting; try again later", len(a.jobs))))
			return
		}
		ctx.Watch(to)
		if a.cur != nil {
			ctx.Send(to, &wire.Reply{Type: wire.ReplyLog, Text: "waiting for another transaction to finish"})
		}
		a.enqueue(ctx, &job{req: req, to: to})
	default:
		if a.queries.Waiting() >= maxQueuedQueries {
			ctx.Send(to, wire.Failure(fmt.Sprintf("tpmd is busy: %d requests are waiting; try again in a moment", a.queries.Waiting())))
			return
		}
		a.queries.Push(req.UID, waitingQuery{req: req, to: to})
		a.nextQuery(ctx)
	}
}

// nextQuery starts waiting queries while slots are free, each answered on
// a goroutine through query's one dispatch; long results go to the
// request's actor in parts, each written before the next is read.
func (a *installerActor) nextQuery(ctx actor.Context) {
	for a.eng != nil {
		uid, q, ok := a.queries.Next()
		if !ok {
			return
		}
		eng, idx, self, root, def, token := a.eng, a.idx, ctx.Self(), ctx.ActorSystem().Root, a.cfg.Prefix, a.life.token
		log := a.env.log
		a.env.bg.Go(func() {
			defer root.Send(self, &queryDone{token: token, uid: uid})
			defer func() {
				if p := recover(); p != nil {
					log.Error("query failed", "verb", q.req.Verb, "panic", fmt.Sprint(p))
					root.Send(q.to, wire.Failure(fmt.Sprintf("the daemon failed answering %s (%v); it keeps running — try again", q.req.Verb, p)))
				}
			}()
			if final := query.Reply(eng, idx, q.req, def, func(r *wire.Reply) error { return sendPart(root, q.to, r) }); final != nil {
				root.Send(q.to, final)
			}
		})
	}
}
