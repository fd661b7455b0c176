package actors

import (
	"fmt"
	"io"
	"runtime/debug"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"tpm/generation"
	"tpm/messages"
	"tpm/swarm"
)

// seederActor owns the server's torrent client. It opens it on start, on
// the address its supervisor keeps (so a restart gets a fresh client on the
// same port), asks for the last generation, and syncs the seeded set to
// every new generation on a goroutine; generations arriving during a sync
// fold into the newest. A generation that says what it changed of the one
// last synced is applied as that change; any other is compared whole.
type seederActor struct {
	env        *env
	packageDir string
	stateDir   string
	trackers   []string // standard trackers it announces to
	dht        *swarm.DHTConfig
	dhtOnly    bool // --seed=false --dht: a DHT node that seeds nothing
	// liveTorrents caps the torrents live at once.
	liveTorrents int
	life         lifetime
	seeder       *swarm.Seeder
	syncing      bool
	pending      *generation.Generation
	current      *generation.Generation // the last one synced or syncing
	// seeded is the number of the generation the seeded set last became,
	// whole (0: none, or a sync failed since).
	seeded uint64
}

// seedSynced is what a sync's goroutine reports.
type seedSynced struct {
	token    uint64 // of the instance that started it
	number   uint64
	stats    swarm.SyncStats
	err      error
	duration time.Duration
}

func (a *seederActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		a.life = newLifetime()
		ctx.Request(ctx.Parent(), &messages.NeedAddr{})
	case *messages.Addr:
		a.open(ctx, msg.Addr)
	case *actor.Stopping, *actor.Restarting:
		a.close(ctx)
	case *messages.RestartFailed:
		restartFailed(Seeder, msg)
	case *messages.GenerationReady:
		if a.seeder == nil || a.dhtOnly || (a.current != nil && a.current.Number == msg.Generation.Number) {
			return // not open, or this generation is already seeded
		}
		if a.syncing {
			a.pending = msg.Generation
			return
		}
		a.sync(ctx, msg.Generation)
	case *seedSynced:
		a.synced(ctx, msg)
	case *messages.SeederFiguresRequest:
		answerFigures(ctx, a.env, a.seeder != nil, a.seeder)
	case *messages.Demand:
		if a.seeder != nil {
			a.seeder.Wake(msg.InfoHash) // a map lookup, or adding one torrent
		}
	}
}

func (a *seederActor) synced(ctx actor.Context, msg *seedSynced) {
	if msg.token != a.life.token {
		return // a predecessor's sync, of a client closed since
	}
	a.syncing, a.seeded = false, msg.number
	if msg.err != nil {
		a.seeded = 0
		a.env.log.Error("seeder sync incomplete", "generation", msg.number, "err", msg.err)
	} else {
		a.env.log.Info("seeding", "generation", msg.number, "added", msg.stats.Added, "dropped", msg.stats.Dropped,
			"kept", msg.stats.Kept, "took", msg.duration.Round(time.Millisecond))
	}
	if g := a.pending; g != nil {
		a.pending = nil
		a.sync(ctx, g)
	}
}

func (a *seederActor) open(ctx actor.Context, addr string) {
	seeder, err := swarm.NewSeeder(swarm.SeederConfig{
		Dir:          a.packageDir,
		StateDir:     a.stateDir,
		ListenAddr:   addr,
		Logger:       a.env.quiet,
		Trackers:     a.trackers,
		DHT:          a.dht,
		LiveTorrents: a.liveTorrents,
	})
	if err != nil {
		ctx.Send(ctx.Parent(), &messages.Ready{Component: Seeder, Err: fmt.Errorf("seeder: %w", err)})
		return
	}
	a.seeder = seeder
	ctx.Send(ctx.Parent(), &messages.Ready{Component: Seeder, Addr: withPort(addr, seeder.Port())})
	if a.dhtOnly {
		return // nothing to seed: the tracker must not name it
	}
	ctx.Send(ctx.Parent(), &messages.SeederUp{Port: seeder.Port(), Figures: ctx.Self()})
	ctx.Request(ctx.Parent(), &messages.NeedGeneration{})
}

func (a *seederActor) sync(ctx actor.Context, g *generation.Generation) {
	a.syncing, a.current = true, g
	syncCtx, token, self, root, seeder := a.life.ctx, a.life.token, ctx.Self(), ctx.ActorSystem().Root, a.seeder
	change := func() (swarm.SyncStats, error) { return seeder.Sync(syncCtx, items(g.Packages)) }
	if c := g.Changes; c != nil && a.seeded != 0 && c.From == a.seeded {
		// One new file costs a map entry, not 100 ms of comparing the
		// whole catalogue under the seeder's lock.
		added := make([]swarm.Item, 0, len(c.Added))
		for _, ih := range c.Added {
			if p := g.ByInfoHash(ih); p != nil {
				added = append(added, itemOf(p))
			}
		}
		change = func() (swarm.SyncStats, error) { return seeder.Update(syncCtx, added, c.Removed) }
	}
	a.env.bg.Go(func() {
		start := time.Now()
		st, err := change()
		// As after a scan: a sync that added or dropped thousands of
		// torrents leaves ~100 MB of its work that the runtime would
		// hand back only over minutes.
		if st.Added+st.Dropped >= 1000 {
			debug.FreeOSMemory()
		}
		root.Send(self, &seedSynced{token: token, number: g.Number, stats: st, err: err, duration: time.Since(start)})
	})
}

// close cancels a running sync and closes the client; Close waits for the
// sync to let go of the client first.
func (a *seederActor) close(ctx actor.Context) {
	a.life.end()
	if a.seeder != nil {
		closeSeeding(ctx, a.env, a.seeder)
		a.seeder = nil
	}
}

// seedingClient is what the seeder and the mirror's copier read their
// figures from: their torrent client.
type seedingClient interface {
	Seeding() (loaded, complete int)
	Live() int
	Uploaded() int64
	Refused() int64
}

// answerFigures answers a SeederFiguresRequest with the figures of the
// asking actor's own torrent client (zero when none is open), read on a
// goroutine: the seeder's count waits for a running sync to let go of its
// torrents, which must not hold up the actor. The client stays the
// actor's: only the figures, plain numbers, leave it.
func answerFigures(ctx actor.Context, e *env, open bool, client seedingClient) {
	asker, root := ctx.Sender(), ctx.ActorSystem().Root
	switch {
	case asker == nil:
		return
	case !open:
		ctx.Respond(&messages.SeederFigures{})
		return
	}
	e.bg.Go(func() {
		loaded, complete := client.Seeding()
		root.Send(asker, &messages.SeederFigures{Loaded: loaded, Complete: complete, Live: client.Live(), Uploaded: client.Uploaded(), Refused: client.Refused()})
	})
}

// closeSeeding closes the torrent client that seeds what is published,
// and tells the publisher (through the supervisor) that none runs.
func closeSeeding(ctx actor.Context, e *env, client io.Closer) {
	ctx.Send(ctx.Parent(), &messages.SeederUp{})
	if err := client.Close(); err != nil {
		e.log.Warn("closing the torrent client", "err", err)
	}
}

// items are the seeder's items of packages.
func items(pkgs []generation.Package) []swarm.Item {
	its := make([]swarm.Item, len(pkgs))
	for i := range pkgs {
		its[i] = itemOf(&pkgs[i])
	}
	return its
}

func itemOf(p *generation.Package) swarm.Item {
	return swarm.Item{InfoHash: p.InfoHash, InfoBytes: p.InfoBytes, Size: p.Size, MTimeNS: p.MTimeNS, CTimeNS: p.CTimeNS, Inode: p.Inode}
}
