package actors

import (
	"context"
	"errors"
	"net"
	"net/url"
	"runtime/debug"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/scheduler"

	"tpm/generation"
	"tpm/messages"
	"tpm/metrics"
	"tpm/repo"
	"tpm/store"
)

// DHTNodes are the DHT nodes the signed index names (repo.Options), so
// that a host's --dht needs no --dht-bootstrap: the server's own node, at
// the public URL's host (where the built-in tracker is named too) and the
// torrent port. None without the DHT, or when the port is picked at start
// (0) or the URL names no host.
func (cfg ServerConfig) DHTNodes() []string {
	if cfg.DHT == nil {
		return nil
	}
	u, err := url.Parse(cfg.PublicURL)
	if err != nil {
		return nil
	}
	_, port, err := net.SplitHostPort(cfg.TorrentAddr)
	if err != nil {
		return nil
	}
	node := net.JoinHostPort(u.Hostname(), port)
	if store.CheckDHTNode(node) != nil {
		return nil
	}
	return []string{node}
}

// scannerActor runs scans: at start, every interval, and on Rescan
// (SIGHUP, a request, a stale file). A scan runs on its own goroutine and
// reports with scanFinished; requests during a scan fold into one more scan
// after it. The catalog and the scan over it (repo.Scanner) are the
// server's, so a restarted scanner goes on with the same catalog.
type scannerActor struct {
	env          *env
	scanner      *repo.Scanner
	interval     time.Duration
	verifyEvery  time.Duration // 0: no periodic verify
	metrics      *metrics.Server
	life         lifetime
	cancelTimer  scheduler.CancelFunc
	stopVerify   scheduler.CancelFunc
	busy         bool
	pending      string // reason of a scan asked for while busy
	pendingFull  bool   // and whether one of those asked to verify
	pendingWhole bool   // or to list the directory whole
}

// scanFinished is what a scan's goroutine reports.
type scanFinished struct {
	token      uint64 // of the instance that started it
	verify     bool
	generation *generation.Generation
	stats      repo.ScanStats
	err        error
}

func (a *scannerActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		a.life = newLifetime()
		a.cancelTimer = scheduler.NewTimerScheduler(ctx.ActorSystem().Root).
			SendRepeatedly(a.interval, a.interval, ctx.Self(), &messages.Rescan{Reason: "timer", Whole: true})
		if a.verifyEvery > 0 {
			a.stopVerify = scheduler.NewTimerScheduler(ctx.ActorSystem().Root).
				SendRepeatedly(a.verifyEvery, a.verifyEvery, ctx.Self(), &messages.Rescan{Reason: "verify", Verify: true})
		}
		ctx.Send(ctx.Parent(), &messages.Ready{Component: Scanner})
		a.start(ctx, "start", scanKind{})
	case *actor.Stopping, *actor.Restarting:
		for _, stop := range []scheduler.CancelFunc{a.cancelTimer, a.stopVerify} {
			if stop != nil {
				stop()
			}
		}
		a.life.end()
	case *messages.RestartFailed:
		restartFailed(Scanner, msg)
	case *messages.Rescan:
		if a.busy {
			a.pending = msg.Reason
			a.pendingFull = a.pendingFull || msg.Verify
			a.pendingWhole = a.pendingWhole || msg.Whole
			return
		}
		a.start(ctx, msg.Reason, scanKind{verify: msg.Verify, whole: msg.Whole})
	case *scanFinished:
		a.finished(ctx, msg)
	}
}

// scanKind is what a scan looks at: the watch's changes (zero), every
// file's stat (whole), or every file's bytes (verify).
type scanKind struct{ verify, whole bool }

func (a *scannerActor) start(ctx actor.Context, reason string, kind scanKind) {
	a.busy, a.pending, a.pendingFull, a.pendingWhole = true, "", false, false
	scanCtx, token, self, root, scanner := a.life.ctx, a.life.token, ctx.Self(), ctx.ActorSystem().Root, a.scanner
	a.env.log.Debug("scan starting", "reason", reason, "verify", kind.verify, "whole", kind.whole)
	a.env.bg.Go(func() {
		scan := scanner.Scan
		switch {
		case kind.verify:
			scan = scanner.Verify
		case kind.whole:
			scan = scanner.ScanWhole
		}
		g, stats, err := scan(scanCtx)
		root.Send(self, &scanFinished{token: token, verify: kind.verify, generation: g, stats: stats, err: err})
		// A scan that listed the directory or changed many files leaves
		// hundreds of MB of garbage (every entry decoded, every file's
		// header read), which the runtime would hand back to the system
		// only over minutes: a server's memory would stay at its scan's
		// peak. After the generation is on its way: a forced collection of
		// a large heap is a tenth of a second or more, which a watched
		// rescan of a few files (its garbage the runtime's to collect as
		// usual) does not pay.
		if !stats.Watched || stats.Added+stats.Changed+stats.Removed+stats.Rejected >= 1000 || err != nil {
			debug.FreeOSMemory()
		}
	})
}

func (a *scannerActor) finished(ctx actor.Context, msg *scanFinished) {
	// A result of an earlier instance (before a restart) is still a valid
	// generation; only this instance's own scan frees it for the next one.
	if msg.token == a.life.token {
		a.busy = false
	}
	log := a.env.log
	if errors.Is(msg.err, context.Canceled) {
		log.Debug("scan cancelled")
	} else if msg.err != nil {
		log.Error("scan failed; the last good generation stays published", "err", msg.err)
	} else {
		st := msg.stats
		kind := "scan"
		if msg.verify {
			kind = "verify"
		}
		a.metrics.Scan(kind, st.Duration)
		for _, r := range st.Rejections {
			log.Warn("package rejected", "file", r.File, "reason", r.Reason)
		}
		log.Info("scan", "generation", msg.generation.Number, "new", st.NewGeneration,
			"added", st.Added, "changed", st.Changed, "removed", st.Removed, "rejected", st.Rejected,
			"unchanged", st.Unchanged, "skipped", st.Skipped, "published", st.Published,
			"read_bytes", st.BytesRead, "watched", st.Watched, "took", st.Duration.Round(time.Millisecond))
		if st.NewGeneration {
			ctx.Send(ctx.Parent(), &messages.GenerationReady{Generation: msg.generation})
		}
	}
	if !a.busy && a.pending != "" {
		a.start(ctx, a.pending, scanKind{verify: a.pendingFull, whole: a.pendingWhole})
	}
}
