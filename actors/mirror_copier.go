package actors

import (
	"context"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/scheduler"

	"tpm/generation"
	"tpm/index"
	"tpm/messages"
	"tpm/mirror"
	"tpm/swarm"
)

// copierActor owns the mirror's torrent client (a swarm.Peer over the
// package directory), the index it keeps and the copy it publishes. It
// fetches the upstreams' index at start, every interval and on Rescan; each
// new index is copied on a goroutine (every package downloaded through the
// swarm and checked, the generation built), one copy at a time, and
// published once whole, so a mirror never serves an index whose packages
// it lacks. Fetches and copies asked for meanwhile fold into one after.
type copierActor struct {
	env    *env
	cfg    MirrorConfig
	keeper *index.Keeper
	life   lifetime
	sched  *scheduler.TimerScheduler
	stop   []scheduler.CancelFunc
	peer   *swarm.Peer

	idx      *index.Snapshot // the index kept; nil until loaded
	fetching bool
	recopy   bool // copy again after the next fetch, even if unchanged
	again    bool // a fetch was asked for during one
	copying  bool
	pending  bool // the kept index changed during a copy or a prune
	// pruning: a prune runs, and the next copy, whose downloads it could
	// meet, waits for it.
	pruning bool
	// published and before are the copies published last and before
	// that: their files stay, whatever comes next. kept is the copy kept
	// from the last run, when it was published at the start.
	published, before, kept *mirror.Copy
}

// mirrorParallel is how many packages a mirror downloads at once.
const mirrorParallel = 4

// copierTick, copierFetched and copied: the copier's timer and its
// goroutines' results.
type (
	copierTick   struct{}
	copierLoaded struct {
		token uint64
		idx   *index.Snapshot
		err   error
	}
	copierFetched struct {
		token   uint64
		idx     *index.Snapshot
		changed bool
		err     error
	}
	copied struct {
		token uint64
		copy  *mirror.Copy
		gen   *generation.Generation
		err   error
		took  time.Duration
	}
	resumed struct {
		token uint64
		copy  *mirror.Copy
		gen   *generation.Generation
		err   error
	}
	pruned struct{ token uint64 }
)

func (a *copierActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		a.life = newLifetime()
		a.sched = scheduler.NewTimerScheduler(ctx)
		ctx.Request(ctx.Parent(), &messages.NeedAddr{})
	case *messages.Addr:
		a.open(ctx, msg.Addr)
	case *actor.Stopping, *actor.Restarting:
		a.close(ctx)
	case *messages.RestartFailed:
		restartFailed(Copier, msg)
	case *copierLoaded:
		a.loaded(ctx, msg)
	case *messages.Rescan:
		// A published file changed (or SIGHUP): every file is checked
		// again after the fetch.
		a.recopy = true
		a.fetch(ctx)
	case *copierTick:
		a.fetch(ctx)
	case *copierFetched:
		a.fetchEnded(ctx, msg)
	case *resumed:
		// The first copy checks every file again; until it is done, hosts
		// get what they check anyway.
		if msg.err == nil && a.published == nil && msg.token == a.life.token {
			a.kept = msg.copy
			a.env.log.Info("published the copy kept from the last run; checking every file again", "generation", msg.gen.Number)
			ctx.Send(ctx.Parent(), &messages.GenerationReady{Generation: msg.gen})
		}
	case *copied:
		a.copyEnded(ctx, msg)
	case *pruned:
		if msg.token == a.life.token {
			a.pruning = false
			if a.pending {
				a.pending = false
				a.copy(ctx)
			}
		}
	case *messages.Demand:
		if a.peer != nil {
			a.peer.Wake(msg.InfoHash)
		}
	case *messages.SeederFiguresRequest:
		answerFigures(ctx, a.env, a.peer != nil, a.peer)
	}
}

// close stops the timers and the goroutines, and closes the torrent
// client, which the tracker then no longer names.
func (a *copierActor) close(ctx actor.Context) {
	for _, c := range a.stop {
		c()
	}
	a.life.end()
	if a.peer != nil {
		closeSeeding(ctx, a.env, a.peer)
		a.peer = nil
	}
}

// loaded starts the copier proper once the kept index is read: the kept
// copy published again, the timer, the first fetch.
func (a *copierActor) loaded(ctx actor.Context, msg *copierLoaded) {
	if msg.token != a.life.token {
		return // a predecessor's: this instance loads its own
	}
	a.idx = index.Empty()
	if msg.err != nil {
		a.env.log.Warn("ignoring the kept index; fetching a new one", "err", msg.err)
	} else {
		a.idx = msg.idx
	}
	if a.idx.Generation > 0 {
		a.resume(ctx)
	}
	a.stop = append(a.stop, a.sched.SendRepeatedly(a.cfg.SyncInterval, a.cfg.SyncInterval, ctx.Self(), &copierTick{}))
	a.fetch(ctx)
}

func (a *copierActor) fetchEnded(ctx actor.Context, msg *copierFetched) {
	if msg.token != a.life.token {
		return
	}
	a.fetching = false
	if msg.err != nil {
		a.env.log.Warn("index fetch failed", "err", msg.err)
		// The kept copy is still checked, upstreams or not.
		if a.published == nil && a.idx.Generation > 0 {
			a.copy(ctx)
		}
	} else {
		a.idx = msg.idx
		if msg.changed || a.published == nil || a.recopy {
			a.recopy = false
			a.copy(ctx)
		}
	}
	if a.again {
		a.again = false
		a.fetch(ctx)
	}
}

func (a *copierActor) copyEnded(ctx actor.Context, msg *copied) {
	if msg.token != a.life.token {
		return
	}
	a.copying = false
	if msg.err != nil {
		a.env.log.Warn("copy incomplete; trying again at the next fetch", "err", msg.err)
		a.recopy = true // even if the index stays the same
	} else {
		a.env.log.Info("mirrored", "generation", msg.gen.Number, "packages", len(msg.gen.Packages), "took", msg.took.Round(time.Millisecond))
		a.prune(ctx, msg.copy)
		ctx.Send(ctx.Parent(), &messages.GenerationReady{Generation: msg.gen})
	}
	if a.pending {
		a.pending = false
		a.copy(ctx)
	}
}

func (a *copierActor) open(ctx actor.Context, addr string) {
	peer, err := swarm.NewPeer(swarm.PeerConfig{
		CacheDir: a.cfg.PackageDir, StateDir: a.cfg.StateDir, ListenAddr: addr, Logger: a.env.quiet, DHT: a.cfg.DHT,
		ConnsPerTorrent: swarm.ServingConnsPerTorrent, LiveTorrents: a.cfg.LiveTorrents,
		// Its uplink serves many hosts: it refuses what they can get
		// from each other, as the origin does.
		Refuse: true,
	})
	if err != nil {
		ctx.Send(ctx.Parent(), &messages.Ready{Component: Copier, Err: fmt.Errorf("torrent client: %w", err)})
		return
	}
	a.peer = peer
	ctx.Send(ctx.Parent(), &messages.Ready{Component: Copier, Addr: withPort(addr, peer.Port())})
	// The mirror's tracker names its own peer, a seed of whatever it
	// publishes.
	ctx.Send(ctx.Parent(), &messages.SeederUp{Port: peer.Port(), Figures: ctx.Self()})
	keeper, token, self, root := a.keeper, a.life.token, ctx.Self(), ctx.ActorSystem().Root
	a.env.bg.Go(func() {
		idx, err := keeper.Load()
		root.Send(self, &copierLoaded{token: token, idx: idx, err: err})
	})
}

func (a *copierActor) fetch(ctx actor.Context) {
	if a.peer == nil || a.idx == nil {
		return // the first fetch follows the kept index's loading
	}
	if a.fetching {
		a.again = true
		return
	}
	a.fetching = true
	cur, keeper, token, life := a.idx, a.keeper, a.life.token, a.life.ctx
	self, root := ctx.Self(), ctx.ActorSystem().Root
	a.env.bg.Go(func() {
		fctx, cancel := context.WithTimeout(life, fetchTimeout)
		defer cancel()
		idx, changed, err := keeper.Fetch(fctx, cur)
		root.Send(self, &copierFetched{token: token, idx: idx, changed: changed, err: err})
	})
}

func (a *copierActor) copy(ctx actor.Context) {
	if a.copying || a.pruning {
		a.pending = true
		return
	}
	a.copying = true
	cfg, peer, token, life := a.cfg, a.peer, a.life.token, a.life.ctx
	self, root := ctx.Self(), ctx.ActorSystem().Root
	a.env.bg.Go(func() {
		start := time.Now()
		c, g, err := keptCopy(cfg, func(c *mirror.Copy) error {
			return mirror.Fetch(life, peer, c.Specs(cfg.Upstreams), mirrorParallel)
		})
		root.Send(self, &copied{token: token, copy: c, gen: g, err: err, took: time.Since(start)})
	})
}

// resume makes, on a goroutine, the generation of the copy kept from the
// last run from the files as they are, without reading them: a restarted
// mirror serves again at once, not after reading every file.
func (a *copierActor) resume(ctx actor.Context) {
	cfg, token := a.cfg, a.life.token
	self, root := ctx.Self(), ctx.ActorSystem().Root
	a.env.bg.Go(func() {
		c, g, err := keptCopy(cfg, nil)
		root.Send(self, &resumed{token: token, copy: c, gen: g, err: err})
	})
}

// keptCopy opens the copy the state directory keeps and, once fill (when
// set) brought its files in, makes its generation.
func keptCopy(cfg MirrorConfig, fill func(*mirror.Copy) error) (*mirror.Copy, *generation.Generation, error) {
	c, err := mirror.Open(cfg.StateDir, cfg.TrustedKey)
	if err != nil {
		return nil, nil, err
	}
	if fill != nil {
		if err := fill(c); err != nil {
			return c, nil, err
		}
	}
	g, err := c.Generation(cfg.PackageDir, cfg.PublicURL, cfg.Upstreams)
	return c, g, err
}

// prune deletes, on a goroutine, the packages that neither the copy just
// made nor the one published until now lists. The first copy of a run
// keeps the copy published at the start instead, and also deletes the
// package files left from before the start, which no copy of this run
// lists (Prune only knows this run's copies).
func (a *copierActor) prune(ctx actor.Context, c *mirror.Copy) {
	old, first := a.before, a.published == nil
	a.before, a.published = a.published, c
	if first {
		a.before = a.kept
	}
	if old == nil && !first {
		return
	}
	keep := c.Files()
	if a.before != nil {
		for f := range a.before.Files() {
			keep[f] = true
		}
	}
	var specs []swarm.Spec
	if old != nil {
		specs = old.Specs(a.cfg.Upstreams)
	}
	a.pruning = true
	peer, dir, log, token := a.peer, a.cfg.PackageDir, a.env.log, a.life.token
	self, root := ctx.Self(), ctx.ActorSystem().Root
	a.env.bg.Go(func() {
		defer root.Send(self, &pruned{token: token})
		if first {
			// What this run downloaded for an index it did not publish.
			specs = peer.Held()
		}
		if err := mirror.Prune(peer, specs, keep); err != nil {
			log.Warn("removing packages no longer published", "err", err)
		}
		if !first {
			return
		}
		n, err := mirror.Sweep(dir, keep)
		if err != nil {
			log.Warn("removing packages of copies made before the start", "err", err)
		}
		if n > 0 {
			log.Info("removed packages of copies made before the start", "files", n)
		}
	})
}
