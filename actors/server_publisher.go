package actors

import (
	"context"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/scheduler"

	"tpm/messages"
	"tpm/publish"
)

// drainTimeout bounds how long in-flight HTTP requests may finish after the
// publisher stops: tpmd must be gone within 5 s of SIGTERM.
const drainTimeout = 3 * time.Second

// publisherActor owns the HTTP listener and swaps generations into the
// server's publish.Publisher. On stop (or restart) it closes the listener at
// once, so a restarted publisher can bind the same address, and drains the
// open connections in the background.
type publisherActor struct {
	env       *env
	publisher *publish.Publisher
	srv       *publish.Server
	stopSave  scheduler.CancelFunc
	saving    bool // a save of the tracker's peers runs
}

// peersSaveEvery is how often the tracker's peers are saved when they
// changed: a server killed with -9 names its seeders again at once after a
// restart, instead of at their next announce (10 min).
const peersSaveEvery = 2 * time.Second

// savePeers and peersSaved: the periodic save, and its goroutine's end.
type (
	savePeers  struct{}
	peersSaved struct{ err error }
)

func (a *publisherActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		ctx.Request(ctx.Parent(), &messages.NeedAddr{})
		a.stopSave = scheduler.NewTimerScheduler(ctx.ActorSystem().Root).SendRepeatedly(peersSaveEvery, peersSaveEvery, ctx.Self(), &savePeers{})
	case *savePeers:
		if !a.saving {
			a.saving = true
			pub, self, root := a.publisher, ctx.Self(), ctx.ActorSystem().Root
			a.env.bg.Go(func() { root.Send(self, &peersSaved{err: pub.SavePeers()}) })
		}
	case *peersSaved:
		a.saving = false
		if msg.err != nil {
			a.env.log.Warn("saving the tracker's peers", "err", msg.err)
		}
	case *messages.Addr:
		a.listen(ctx, msg.Addr)
	case *actor.Stopping, *actor.Restarting:
		if a.stopSave != nil {
			a.stopSave()
		}
		a.stop()
	case *messages.RestartFailed:
		restartFailed(Publisher, msg)
	case *messages.GenerationReady:
		if a.publisher.Swap(msg.Generation) {
			a.env.log.Info("published", "generation", msg.Generation.Number, "packages", len(msg.Generation.Packages))
		}
	case *messages.SeederUp:
		if msg.Port > 0 && msg.Figures != nil {
			a.publisher.SetSeeder(msg.Port, askedFigures{root: ctx.ActorSystem().Root, owner: msg.Figures})
		} else {
			a.publisher.SetSeeder(0, nil)
		}
	}
}

// askedFigures are the seeding torrent client's figures as the publisher's
// HTTP goroutines read them (/healthz, the metrics): asked of the actor
// that owns the client at each read, so a read counts every byte sent
// until then, while the client itself never leaves its actor. It holds a
// PID and the actor system's root context, both safe to use from any
// goroutine.
type askedFigures struct {
	root  *actor.RootContext
	owner *actor.PID
}

// figuresWait bounds a read: the owner answers at once, unless a sync
// holds the seeder's torrents; then the figures read as zero.
const figuresWait = 10 * time.Second

// SeederFigures asks the owner once for every figure a read shows.
func (f askedFigures) SeederFigures() publish.SeederFigures {
	res, err := f.root.RequestFuture(f.owner, &messages.SeederFiguresRequest{}, figuresWait).Result()
	if fig, ok := res.(*messages.SeederFigures); ok && err == nil {
		return publish.SeederFigures{Loaded: fig.Loaded, Complete: fig.Complete, Live: fig.Live, Uploaded: fig.Uploaded, Refused: fig.Refused}
	}
	return publish.SeederFigures{}
}

func (a *publisherActor) listen(ctx actor.Context, addr string) {
	srv, err := publish.Listen(addr, a.publisher, a.env.quiet)
	if err != nil {
		ctx.Send(ctx.Parent(), &messages.Ready{Component: Publisher, Err: fmt.Errorf("publisher: %w", err)})
		return
	}
	a.srv = srv
	log := a.env.log
	a.env.bg.Go(func() {
		if err := srv.Serve(); err != nil {
			log.Error("http server stopped", "err", err)
		}
	})
	ctx.Send(ctx.Parent(), &messages.Ready{Component: Publisher, Addr: srv.Addr()})
	ctx.Request(ctx.Parent(), &messages.NeedGeneration{})
}

func (a *publisherActor) stop() {
	if a.srv == nil {
		return
	}
	srv, log := a.srv, a.env.log
	a.srv = nil
	srv.CloseListener()
	a.env.bg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			log.Warn("http drain", "err", err)
		}
	})
}
