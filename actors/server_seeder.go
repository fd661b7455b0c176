package actors

import (
	"context"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"tpm/messages"
	"tpm/swarm"
)

// seederActor owns the torrent client. It opens it on start (so a restart
// gets a fresh client on the same port), asks the supervisor for the last
// generation, and syncs the seeded set to every new generation on a
// goroutine; generations arriving during a sync fold into the newest.
type seederActor struct {
	s          *Server
	seeder     *swarm.Seeder
	cancelSync context.CancelFunc
	syncing    bool
	pending    *messages.Generation
	current    *messages.Generation // the last one synced or syncing
}

func (a *seederActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		a.open(ctx)
	case *actor.Stopping, *actor.Restarting:
		a.close()
	case *messages.GenerationReady:
		if a.seeder == nil || (a.current != nil && a.current.Number == msg.Generation.Number) {
			return // not open, or this generation is already seeded
		}
		if a.syncing {
			a.pending = msg.Generation
			return
		}
		a.sync(ctx, msg.Generation)
	case *messages.SeedSynced:
		a.syncing = false
		if msg.Err != nil {
			a.s.log.Error("seeder sync incomplete", "generation", msg.Number, "err", msg.Err)
		} else {
			a.s.log.Info("seeding", "generation", msg.Number, "added", msg.Added, "dropped", msg.Dropped,
				"kept", msg.Kept, "took", msg.Duration.Round(time.Millisecond))
		}
		if g := a.pending; g != nil {
			a.pending = nil
			a.sync(ctx, g)
		}
	case *messages.Crash:
		panic("seeder: " + msg.Reason)
	}
}

func (a *seederActor) open(ctx actor.Context) {
	s := a.s
	first := !s.started(Seeder)
	seeder, err := swarm.NewSeeder(swarm.SeederConfig{
		Dir:        s.cfg.PackageDir,
		StateDir:   s.cfg.StateDir,
		ListenAddr: s.TorrentAddr(),
		Logger:     s.quiet,
	})
	if err != nil {
		if first {
			s.ready <- readyMsg{Seeder, err}
			return // StartServer stops everything
		}
		panic(fmt.Errorf("seeder: %w", err)) // the supervisor retries
	}
	a.seeder = seeder
	s.seeder.Store(seeder)
	s.seederPort.Store(int32(seeder.Port()))
	s.mu.Lock()
	s.torrentAddr = withPort(s.torrentAddr, seeder.Port())
	s.mu.Unlock()
	if first {
		s.markStarted(Seeder)
		s.ready <- readyMsg{Seeder, nil}
	}
	ctx.Request(ctx.Parent(), &messages.NeedGeneration{})
}

func (a *seederActor) sync(ctx actor.Context, g *messages.Generation) {
	a.syncing, a.current = true, g
	items := make([]swarm.Item, len(g.Packages))
	for i, p := range g.Packages {
		items[i] = swarm.Item{InfoHash: p.InfoHash, InfoBytes: p.InfoBytes}
	}
	syncCtx, cancel := context.WithCancel(context.Background())
	a.cancelSync = cancel
	self, root, seeder := ctx.Self(), ctx.ActorSystem().Root, a.seeder
	a.s.bg.Add(1)
	go func() {
		defer a.s.bg.Done()
		defer cancel()
		start := time.Now()
		st, err := seeder.Sync(syncCtx, items)
		root.Send(self, &messages.SeedSynced{Number: g.Number, Added: st.Added, Dropped: st.Dropped,
			Kept: st.Kept, Err: err, Duration: time.Since(start)})
	}()
}

// close cancels a running sync and closes the client; Close waits for the
// sync to let go of the client first.
func (a *seederActor) close() {
	if a.cancelSync != nil {
		a.cancelSync()
	}
	if a.seeder != nil {
		a.s.seederPort.Store(0)
		a.s.seeder.Store(nil)
		if err := a.seeder.Close(); err != nil {
			a.s.log.Warn("closing the torrent client", "err", err)
		}
		a.seeder = nil
	}
}
