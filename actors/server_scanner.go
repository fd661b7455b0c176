package actors

import (
	"context"
	"errors"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/scheduler"

	"tpm/messages"
)

// scannerActor runs scans: at start, every ScanInterval, and on Rescan
// (SIGHUP, a request, a stale file). A scan runs on its own goroutine and
// reports with ScanFinished; requests during a scan fold into one more scan
// after it. The work itself is repo.Scanner's, which the Server owns, so a
// restarted scanner goes on with the same catalog.
type scannerActor struct {
	s           *Server
	cancelTimer scheduler.CancelFunc
	cancelScan  context.CancelFunc
	seq         uint64 // of the scan running, if busy
	busy        bool
	pending     string // reason of a scan asked for while busy
}

func (a *scannerActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		iv := a.s.cfg.ScanInterval
		a.cancelTimer = scheduler.NewTimerScheduler(ctx.ActorSystem().Root).
			SendRepeatedly(iv, iv, ctx.Self(), &messages.Rescan{Reason: "timer"})
		a.start(ctx, "start")
	case *actor.Stopping, *actor.Restarting:
		if a.cancelTimer != nil {
			a.cancelTimer()
		}
		if a.cancelScan != nil {
			a.cancelScan()
		}
	case *messages.Rescan:
		if a.busy {
			a.pending = msg.Reason
			return
		}
		a.start(ctx, msg.Reason)
	case *messages.ScanFinished:
		a.finished(ctx, msg)
	case *messages.Crash:
		panic("scanner: " + msg.Reason)
	}
}

func (a *scannerActor) start(ctx actor.Context, reason string) {
	a.seq = a.s.scanSeq.Add(1) // server-wide, so an old instance's result never matches
	a.busy, a.pending = true, ""
	scanCtx, cancel := context.WithCancel(context.Background())
	a.cancelScan = cancel
	seq, self, root, scanner := a.seq, ctx.Self(), ctx.ActorSystem().Root, a.s.scanner
	a.s.log.Debug("scan starting", "reason", reason)
	a.s.bg.Add(1)
	go func() {
		defer a.s.bg.Done()
		defer cancel()
		g, stats, err := scanner.Scan(scanCtx)
		root.Send(self, &messages.ScanFinished{Seq: seq, Generation: g, Stats: stats, Err: err})
	}()
}

func (a *scannerActor) finished(ctx actor.Context, msg *messages.ScanFinished) {
	// A result of an earlier instance (before a restart) is still a valid
	// generation; only this instance's own scan frees it for the next one.
	if msg.Seq == a.seq && a.busy {
		a.busy = false
	}
	log := a.s.log
	if errors.Is(msg.Err, context.Canceled) {
		log.Debug("scan cancelled")
	} else if msg.Err != nil {
		log.Error("scan failed; the last good generation stays published", "err", msg.Err)
	} else {
		st := msg.Stats
		for _, r := range st.Rejections {
			log.Warn("package rejected", "file", r.File, "reason", r.Reason)
		}
		log.Info("scan", "generation", msg.Generation.Number, "new", st.NewGeneration,
			"added", st.Added, "changed", st.Changed, "removed", st.Removed, "rejected", st.Rejected,
			"unchanged", st.Unchanged, "skipped", st.Skipped, "published", st.Published,
			"read_bytes", st.BytesRead, "took", st.Duration.Round(time.Millisecond))
		if st.NewGeneration {
			ctx.Send(ctx.Parent(), &messages.GenerationReady{Generation: msg.Generation})
		}
	}
	if !a.busy && a.pending != "" {
		a.start(ctx, a.pending)
	}
}
