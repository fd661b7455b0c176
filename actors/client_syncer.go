package actors

import (
	"context"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/scheduler"

	"tpm/messages"
)

// syncerActor keeps the index fresh: a fetch at start, every sync interval
// and on "sync". One fetch runs at a time, on a goroutine; requests that
// arrive meanwhile wait for the next one, which starts as soon as the
// running one ends (they may have been asked after a server change).
type syncerActor struct {
	c        *Client
	cancel   scheduler.CancelFunc
	running  bool
	waiting  []messages.Replier // answered by the running fetch
	next     []messages.Replier // answered by the fetch after it
	again    bool
	cancelGo context.CancelFunc
	sched    *scheduler.TimerScheduler
	retry    time.Duration // after a failed fetch; doubles up to maxRetry
	cancelRe scheduler.CancelFunc
}

// A failed fetch (the server restarting, the network down) is retried
// sooner than the sync interval: after 2 s, then twice as long each time,
// at most maxRetry.
const (
	firstRetry = 2 * time.Second
	maxRetry   = 5 * time.Minute
)

func (a *syncerActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		s := scheduler.NewTimerScheduler(ctx)
		a.sched = s
		a.cancel = s.SendRepeatedly(a.c.cfg.SyncInterval, a.c.cfg.SyncInterval, ctx.Self(), &messages.SyncTick{})
		a.start(ctx)
	case *actor.Stopping, *actor.Restarting:
		if a.cancel != nil {
			a.cancel()
		}
		if a.cancelGo != nil {
			a.cancelGo()
		}
		if a.cancelRe != nil {
			a.cancelRe()
		}
		for _, r := range append(a.waiting, a.next...) {
			sendResult(r, nil, errStopping)
		}
		a.waiting, a.next = nil, nil
	case *messages.SyncTick:
		if !a.running {
			a.start(ctx)
		}
	case *messages.SyncNow:
		if msg.Reply != nil {
			if a.running {
				a.next = append(a.next, msg.Reply)
				a.again = true
				return
			}
			a.waiting = append(a.waiting, msg.Reply)
		}
		if !a.running {
			a.start(ctx)
		}
	case *messages.SyncDone:
		a.running = false
		if msg.Err != nil {
			a.retry = min(max(2*a.retry, firstRetry), maxRetry, a.c.cfg.SyncInterval)
			a.c.log.Warn("index sync failed", "err", msg.Err, "retry_in", a.retry)
			if a.cancelRe != nil {
				a.cancelRe()
			}
			a.cancelRe = a.sched.SendOnce(a.retry, ctx.Self(), &messages.SyncTick{})
		} else {
			a.retry = 0
		}
		if msg.Err == nil && msg.Changed {
			a.c.log.Info("index updated", "generation", msg.Generation, "packages", len(a.c.Index().Entries), "took", msg.Took.Round(time.Millisecond))
		}
		for _, r := range a.waiting {
			sendResult(r, messages.SyncResult{Generation: msg.Generation, Changed: msg.Changed}, msg.Err)
		}
		a.waiting = nil
		if a.again {
			a.waiting, a.next, a.again = a.next, nil, false
			a.start(ctx)
		}
	case *messages.Crash:
		panic("syncer: " + msg.Reason)
	}
}

func (a *syncerActor) start(ctx actor.Context) {
	a.running = true
	fctx, cancel := context.WithTimeout(a.c.stopCtx, 2*time.Minute)
	a.cancelGo = cancel
	self, root := ctx.Self(), ctx.ActorSystem().Root
	a.c.goBG(func() {
		defer cancel()
		begin := time.Now()
		cur := a.c.Index()
		idx, changed, err := a.c.mirror.Fetch(fctx, cur)
		if err == nil {
			a.c.index.Store(idx)
		}
		gen := cur.Generation
		if idx != nil {
			gen = idx.Generation
		}
		root.Send(self, &messages.SyncDone{Generation: gen, Changed: changed, Err: err, Took: time.Since(begin)})
	})
}
