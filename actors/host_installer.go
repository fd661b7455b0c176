package actors

import (
	"cmp"
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"tpm/builder"
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
	// queryResumeWait bounds how long a query's goroutine waits for its
	// slot again after a part was written; it gives up (its request gets
	// an error) rather than hang on an installer that is gone.
	queryResumeWait = 30 * time.Second
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
	// queries are the query slots: new queries and the goroutines of
	// running ones that ask for a slot again (resumes), taken in turn.
	queries *fairqueue.Queue[waitingQuery]
	resumes int // of the waiting ones
	// running are the goroutines of the queries started, by id: whether
	// each holds a slot or waits for a part to be written (see nextQuery).
	running   map[uint64]*runningQuery
	lastQuery uint64
	unknown   unknownMessages
}

// waitingQuery is a query waiting for the engine or a free slot, or (with
// resumeFuture set) a running query's goroutine waiting for a slot again.
type waitingQuery struct {
	req          *wire.Request
	to           *actor.PID
	id           uint64     // of the running query, for a resume
	resumeFuture *actor.PID // the future that waits, for a resume
}

// runningQuery is a query's goroutine as the installer sees it.
type runningQuery struct {
	uid   int
	state queryState
}

type queryState int

const (
	queryHolding queryState = iota // reads the database, holding a slot
	queryWriting                   // a part is being written: no slot
	queryWaiting                   // waits in the queue for a slot again
	queryGaveUp                    // gave up waiting: its turn frees the slot at once
)

// engineOpened is what the goroutine that opens the engine reports.
type engineOpened struct {
	token uint64
	eng   *engine.Engine
	rec   *engine.Recovery
	err   error
}

// queryDone says a query's goroutine ended: it frees the query's slot if
// it holds one. Like the other query messages, it counts only for the
// instance with the token: a predecessor's goroutines are ignored.
type queryDone struct {
	token, id uint64
}

// queryPaused gives a query's slot back while one of its parts is written.
type queryPaused struct {
	token, id uint64
}

// queryResume asks (a future) for the slot of a paused query again, before
// it reads its next part; it is answered queryResumed when the fair queue
// grants one, or at once with an error when the query is not this
// instance's (or no longer paused).
type queryResume struct {
	token, id uint64
}

// queryResumed answers queryResume: the slot is the goroutine's again, or
// (err) the query must stop and tell its request why.
type queryResumed struct{ err string }

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
			a.queryDone(ctx, msg.id)
		}
	case *queryPaused:
		if msg.token == a.life.token {
			a.queryPaused(ctx, msg.id)
		}
	case *queryResume:
		a.queryResume(ctx, msg)
	case *actor.Terminated:
		a.requestGone(ctx, msg.Who)
	case *reseeded, *marked, *planned, *removePlanned, *applied, *messages.DownloadProgress, *messages.DownloadDone:
		a.transaction(ctx, msg)
	default:
		a.unknown.log(a.env.log, Installer, msg)
	}
}

func (a *installerActor) start(ctx actor.Context) {
	a.life = newLifetime()
	a.lastID = a.life.token
	// The cache keeps the versions before the installed ones for undo.
	keep := a.cfg.KeepVersions
	if keep <= 0 {
		keep = cache.DefaultKeep
	}
	a.records = cache.Records{Dir: cache.RecordsDir(a.cfg.StateDir), Keep: keep}
	a.idx = index.Empty()
	a.queries = fairqueue.New[waitingQuery](maxQueries, maxQueriesUID)
	a.resumes, a.running = 0, map[uint64]*runningQuery{}
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
		// A predecessor's transaction finishes the package it applies: its
		// scripts and a source build at most, and a minute more.
		limit := cmp.Or(opts.BuildTimeout, builder.DefaultTimeout) + 2*cmp.Or(opts.ScriptTimeout, 5*time.Minute) + time.Minute
		eng, rec, err := engine.OpenWhenFree(life.ctx, opts, 100*time.Millisecond, limit, func(holder string) {
			log.Info("waiting for the transaction that runs to let go of the state database", "holder", holder, "at_most", limit)
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
	a.queries.Reset(func(q waitingQuery) {
		if q.resumeFuture != nil {
			ctx.Send(q.resumeFuture, &queryResumed{err: why}) // its goroutine tells its request
			return
		}
		ctx.Send(q.to, wire.Failure(why))
	})
	a.resumes, a.running = 0, map[uint64]*runningQuery{}
	for _, j := range a.jobs {
		if j.to != nil {
			ctx.Send(j.to, wire.Failure(why))
		}
	}
	a.jobs = nil
	if j := a.cur; j != nil {
		switch {
		case j.to != nil && j.txn == nil && j.req.Verb == wire.VerbClean:
			ctx.Send(j.to, wire.Failure(why+" (the cache may or may not be cleaned: run tpm clean again)"))
		case j.to != nil && j.txn == nil: // a mark: it went in or not, as its goroutine ends
			ctx.Send(j.to, wire.Failure(why+" (the marks asked for may or may not be set: check with tpm list)"))
		case j.to != nil:
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
	case wire.VerbInstall, wire.VerbUpgrade, wire.VerbRemove, wire.VerbAutoremove, wire.VerbMark, wire.VerbHold, wire.VerbUnhold,
		wire.VerbUndo, wire.VerbRollback, wire.VerbClean:
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
		if n := a.queries.Waiting() - a.resumes; n >= maxQueuedQueries {
			ctx.Send(to, wire.Failure(fmt.Sprintf("tpmd is busy: %d requests are waiting; try again in a moment", n)))
			return
		}
		a.queries.Push(req.UID, waitingQuery{req: req, to: to})
		a.nextQuery(ctx)
	}
}

// nextQuery starts waiting queries while slots are free, each answered on
// a goroutine through query's one dispatch, and gives the slots back to the
// paused queries whose turn it is. Long results go to the request's actor in
// parts, each written before the next is read; the goroutine gives its slot
// back while a part is written (queryPaused) and asks for one again before
// it reads the next (queryResume), in turn with new queries, so the slots
// bound the database work and a CLI that reads slowly holds none. The
// goroutines waiting for their parts to be written are bounded by the
// requests in flight, which the gateway bounds (16 per uid, 512 in all):
// each is one request's whose final reply is not written yet.
func (a *installerActor) nextQuery(ctx actor.Context) {
	for a.eng != nil {
		uid, q, ok := a.queries.Next()
		if !ok {
			return
		}
		if q.resumeFuture != nil {
			a.resumes--
			if rq := a.running[q.id]; rq != nil && rq.state == queryWaiting {
				rq.state = queryHolding
				ctx.Send(q.resumeFuture, &queryResumed{})
				continue
			}
			// It gave up waiting (queryDone came first): nobody takes the slot.
			delete(a.running, q.id)
			a.queries.Done(uid)
			continue
		}
		a.lastQuery++
		id := a.lastQuery
		a.running[id] = &runningQuery{uid: uid, state: queryHolding}
		eng, idx, self, root, def, life := a.eng, a.idx, ctx.Self(), ctx.ActorSystem().Root, a.cfg.Prefix, a.life
		log := a.env.log
		a.env.bg.Go(func() {
			defer root.Send(self, &queryDone{token: life.token, id: id})
			defer func() {
				if p := recover(); p != nil {
					log.Error("query failed", "verb", q.req.Verb, "panic", fmt.Sprint(p))
					root.Send(q.to, wire.Failure(fmt.Sprintf("the daemon failed answering %s (%v); it keeps running — try again", q.req.Verb, p)))
				}
			}()
			var stopped error // why the rest of the answer will not come, when the slot was not given back
			send := func(r *wire.Reply) error {
				root.Send(self, &queryPaused{token: life.token, id: id})
				if err := sendPart(root, q.to, r); err != nil {
					return err
				}
				stopped = resumeQuery(root, self, life, id)
				return stopped
			}
			final := query.Reply(eng, idx, q.req, def, send)
			if final == nil && stopped != nil {
				final = wire.Failure(stopped.Error())
			}
			if final != nil {
				root.Send(q.to, final)
			}
		})
	}
}

// pausedGone is why a query paused by an installer instance that is gone
// does not read on.
const pausedGone = "the daemon's installer was restarted or stopped while this answer was being written; run the command again"

// resumeQuery waits until the installer gives the paused query id its slot
// again. It fails at once when the installer instance that started it has
// stopped, and after queryResumeWait at most.
func resumeQuery(root *actor.RootContext, self *actor.PID, life lifetime, id uint64) error {
	if life.ctx.Err() != nil {
		return errors.New(pausedGone)
	}
	res, err := root.RequestFuture(self, &queryResume{token: life.token, id: id}, queryResumeWait).Result()
	if err != nil {
		return fmt.Errorf("tpmd is busy and stopped answering this request (%v); try again", err)
	}
	if r, ok := res.(*queryResumed); !ok {
		return errors.New(pausedGone)
	} else if r.err != "" {
		return errors.New(r.err)
	}
	return nil
}

// queryPaused frees the slot of a query whose part is being written.
func (a *installerActor) queryPaused(ctx actor.Context, id uint64) {
	rq := a.running[id]
	if rq == nil || rq.state != queryHolding {
		return
	}
	rq.state = queryWriting
	a.queries.Done(rq.uid)
	a.nextQuery(ctx)
}

// queryResume queues a paused query for a slot, behind its uid's waiting
// queries; a query this instance does not know as paused (a predecessor's,
// or one that ended) is answered at once that it must stop.
func (a *installerActor) queryResume(ctx actor.Context, msg *queryResume) {
	rq := a.running[msg.id]
	if msg.token != a.life.token || rq == nil || rq.state != queryWriting {
		ctx.Respond(&queryResumed{err: pausedGone})
		return
	}
	rq.state = queryWaiting
	a.resumes++
	a.queries.Push(rq.uid, waitingQuery{id: msg.id, resumeFuture: ctx.Sender()})
	a.nextQuery(ctx)
}

// queryDone forgets a query whose goroutine ended, freeing its slot if it
// holds one; one that waits in the queue frees the slot it gets at its turn.
func (a *installerActor) queryDone(ctx actor.Context, id uint64) {
	rq := a.running[id]
	if rq == nil {
		return
	}
	switch rq.state {
	case queryHolding:
		delete(a.running, id)
		a.queries.Done(rq.uid)
		a.nextQuery(ctx)
	case queryWriting:
		delete(a.running, id)
	case queryWaiting:
		rq.state = queryGaveUp
	}
}
