package actors

import (
	"context"
	"errors"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/scheduler"

	"tpm/index"
	"tpm/messages"
	"tpm/messages/wire"
)

// syncerActor owns the host's current index: it loads the one kept in the
// state directory when it starts, fetches the repository's at start, every
// interval and on sync, and hands each verified snapshot (immutable) to its
// supervisor, which passes it to the installer. One fetch runs at a time,
// on a goroutine; syncs asked for meanwhile wait for the next one, which
// starts as soon as the running one ends (they may have been asked after a
// server change).
type syncerActor struct {
	env      *env
	keeper   *index.Keeper
	interval time.Duration
	life     lifetime
	sched    *scheduler.TimerScheduler
	cancels  []scheduler.CancelFunc
	idx      *index.Snapshot
	ready    bool // told the supervisor it has an index to answer from
	running  bool
	waiting  []*actor.PID // answered by the running fetch
	next     []*actor.PID // answered by the fetch after it
	again    bool
	retry    time.Duration // after a failed fetch; doubles up to maxRetry
	cancelRe scheduler.CancelFunc
}

// A failed fetch (the server restarting, the network down) is retried
// sooner than the sync interval: after 2 s, then twice as long each time,
// at most maxRetry.
const (
	firstRetry = 2 * time.Second
	maxRetry   = 5 * time.Minute
	// fetchTimeout bounds one fetch of the index and its signature.
	fetchTimeout = 2 * time.Minute
)

// indexLoaded is the index kept from the last run (Empty when none).
type indexLoaded struct {
	idx *index.Snapshot
	err error
}

// fetched is the outcome of one fetch.
type fetched struct {
	token   uint64
	idx     *index.Snapshot // nil on error
	changed bool
	err     error
	took    time.Duration
}

// syncTick is the syncer's timer; firstFetchLate says the first fetch of a
// host with no kept index took too long to wait for.
type (
	syncTick       struct{}
	firstFetchLate struct{}
)

func (a *syncerActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		a.life = newLifetime()
		a.idx = index.Empty()
		a.sched = scheduler.NewTimerScheduler(ctx)
		a.cancels = append(a.cancels, a.sched.SendRepeatedly(a.interval, a.interval, ctx.Self(), &syncTick{}))
		self, root, keeper := ctx.Self(), ctx.ActorSystem().Root, a.keeper
		a.env.bg.Go(func() {
			idx, err := keeper.Load()
			root.Send(self, &indexLoaded{idx: idx, err: err})
		})
	case *actor.Stopping, *actor.Restarting:
		for _, c := range append(a.cancels, a.cancelRe) {
			if c != nil {
				c()
			}
		}
		a.life.end()
		for _, r := range append(a.waiting, a.next...) {
			ctx.Send(r, wire.Failure("the daemon is stopping or its syncer restarted; run the command again"))
		}
		a.waiting, a.next = nil, nil
	case *messages.RestartFailed:
		restartFailed(Syncer, msg)
	case *indexLoaded:
		a.loaded(ctx, msg)
	case *firstFetchLate:
		a.setReady(ctx)
	case *syncTick:
		if !a.running {
			a.start(ctx)
		}
	case *messages.SyncNow:
		// No sender: a sync the daemon asked for itself (SIGHUP), with no
		// request to answer.
		asker := ctx.Sender()
		if a.running {
			if asker != nil {
				a.next = append(a.next, asker)
			}
			a.again = true
			return
		}
		if asker != nil {
			a.waiting = append(a.waiting, asker)
		}
		a.start(ctx)
	case *fetched:
		a.fetched(ctx, msg)
	}
}

func (a *syncerActor) loaded(ctx actor.Context, msg *indexLoaded) {
	if msg.err != nil {
		a.env.log.Warn("ignoring the kept index; fetching a new one", "err", msg.err)
	} else if msg.idx.Generation >= a.idx.Generation {
		a.idx = msg.idx
	}
	ctx.Send(ctx.Parent(), &messages.IndexReady{Index: a.idx})
	if a.idx.Generation > 0 {
		a.setReady(ctx) // answer from the kept index while the fetch runs
	} else {
		a.cancels = append(a.cancels, a.sched.SendOnce(firstFetchWait, ctx.Self(), &firstFetchLate{}))
	}
	if !a.running {
		a.start(ctx)
	}
}

func (a *syncerActor) setReady(ctx actor.Context) {
	if !a.ready {
		a.ready = true
		ctx.Send(ctx.Parent(), &messages.Ready{Component: Syncer})
	}
}

func (a *syncerActor) start(ctx actor.Context) {
	a.running = true
	cur, keeper, token := a.idx, a.keeper, a.life.token
	life, self, root := a.life.ctx, ctx.Self(), ctx.ActorSystem().Root
	a.env.bg.Go(func() {
		fctx, cancel := context.WithTimeout(life, fetchTimeout)
		defer cancel()
		begin := time.Now()
		idx, changed, err := keeper.Fetch(fctx, cur)
		root.Send(self, &fetched{token: token, idx: idx, changed: changed, err: err, took: time.Since(begin)})
	})
}

func (a *syncerActor) fetched(ctx actor.Context, msg *fetched) {
	if msg.token != a.life.token {
		// An earlier instance's fetch: its index, if newer, is still good.
		if msg.err == nil && msg.idx.Generation > a.idx.Generation {
			a.idx = msg.idx
			ctx.Send(ctx.Parent(), &messages.IndexReady{Index: a.idx})
		}
		return
	}
	a.running = false
	if msg.err != nil {
		a.retry = min(max(2*a.retry, firstRetry), maxRetry, a.interval)
		a.env.log.Warn("index sync failed", "err", msg.err, "retry_in", a.retry)
		if a.cancelRe != nil {
			a.cancelRe()
		}
		a.cancelRe = a.sched.SendOnce(a.retry, ctx.Self(), &syncTick{})
		// tpm status shows each server down: the same index, with what
		// each server said this time.
		if fe := (*index.FetchError)(nil); errors.As(msg.err, &fe) {
			same := *a.idx
			same.Servers = fe.States
			a.idx = &same
			ctx.Send(ctx.Parent(), &messages.IndexReady{Index: a.idx})
		}
	} else {
		a.retry = 0
		a.idx = msg.idx
		if msg.changed {
			a.env.log.Info("index updated", "generation", a.idx.Generation, "packages", a.idx.Len(), "took", msg.took.Round(time.Millisecond))
		}
		// The installer answers the syncs, once it has the index.
		ctx.Send(ctx.Parent(), &messages.IndexReady{Index: a.idx, Synced: a.waiting, Changed: msg.changed})
	}
	a.setReady(ctx)
	if msg.err != nil {
		for _, r := range a.waiting {
			ctx.Send(r, wire.Failure(wire.OneLine(msg.err.Error())))
		}
	}
	a.waiting = nil
	if a.again {
		a.waiting, a.next, a.again = a.next, nil, false
		a.start(ctx)
	}
}
