package actors

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/scheduler"

	"tpm/messages"
	"tpm/swarm"
)

// swarmActor owns the host's torrent client (a swarm.Peer): what it seeds
// and the downloads in flight. It opens the client on the address its
// supervisor keeps, asks (through the supervisor) the installer for what
// to seed, and runs each download on a goroutine that reports back;
// cancellation is a message. Seeding changes run one batch at a time, on a
// goroutine, in the order they were asked for. At most
// HostConfig.ParallelDownloads downloads run at once; the others wait in
// the order they came.
type swarmActor struct {
	env  *env
	cfg  HostConfig
	life lifetime
	peer *swarm.Peer
	// downloads holds every download asked for and not ended: a running
	// one's cancel, nil for one waiting its turn in queued.
	downloads map[downloadKey]context.CancelFunc
	running   int
	queued    []queuedDownload
	early     []early // asked for before the client was open
	seeding   bool    // a batch of seeding changes runs
	seedQueue []*messages.SeedFiles
	stopTick  scheduler.CancelFunc
	// trackers is the announce list of the last index (nil: it names
	// none, and the server's own tracker is used).
	trackers []string
	// The DHT nodes of the last index (dhtWant), those the client was
	// last told (dhtNodes), and whether that join runs: one at a time.
	dhtWant, dhtNodes []string
	dhtJoining        bool
}

// metricsTick asks the swarm to tell the host's metrics what its torrent
// client counts.
type metricsTick struct{}

// metricsEvery is how often it does.
const metricsEvery = 5 * time.Second

type downloadKey struct {
	txn  uint64
	file string
}

// queuedDownload is a download waiting for one of the running to end.
type queuedDownload struct {
	msg       *messages.Download
	requester *actor.PID
}

// DefaultParallelDownloads is how many downloads a host runs at once
// unless told. Each running download is a live torrent with its pieces,
// connections and goroutines: 3,000 packages installed in requests of 500
// peaked at 190 to 205 MB with all of a request's at once, 167 to 175 MB
// with 32, in the same time. What a peak leaves fragmented stays in the
// daemon's memory while it seeds.
const DefaultParallelDownloads = 32

// early is a message that came before the client was open, with its
// sender.
type early struct {
	msg    any
	sender *actor.PID
}

// maxEarly bounds what waits for the client to open (a transaction's
// downloads, a few seeding batches).
const maxEarly = 1024

// downloadEnded is what a download's goroutine reports.
type downloadEnded struct {
	token     uint64 // of the instance that started it
	key       downloadKey
	path      string
	err       error
	requester *actor.PID
}

// dhtJoined is what joining the DHT through an index's nodes did.
type dhtJoined struct {
	token uint64 // of the instance that started it
	nodes []string
	known int // nodes in the routing table after it
	err   error
}

// dhtJoinWait bounds one join: pings, then a bootstrap.
const dhtJoinWait = 30 * time.Second

// seeded is what a batch of seeding changes did.
type seeded struct {
	token          uint64 // of the instance that started it
	reset          bool
	added, removed int
	err            error
}

func (a *swarmActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		a.life = newLifetime()
		a.downloads = map[downloadKey]context.CancelFunc{}
		ctx.Request(ctx.Parent(), &messages.NeedAddr{})
		a.stopTick = scheduler.NewTimerScheduler(ctx.ActorSystem().Root).SendRepeatedly(metricsEvery, metricsEvery, ctx.Self(), &metricsTick{})
	case *metricsTick:
		a.tellMetrics()
	case *messages.Addr:
		a.open(ctx, msg.Addr)
	case *messages.IndexReady:
		if msg.Index.Trackers != nil && !slices.Equal(msg.Index.Trackers, a.trackers) && a.peer != nil {
			peer, trackers := a.peer, msg.Index.Trackers
			a.env.bg.Go(func() { peer.AddTrackers(trackers) })
		}
		a.trackers = msg.Index.Trackers
		a.dhtWant = msg.Index.DHTNodes
		a.joinDHT(ctx)
	case *dhtJoined:
		a.dhtJoinDone(ctx, msg)
	case *actor.Stopping, *actor.Restarting:
		if a.stopTick != nil {
			a.stopTick()
		}
		a.close(ctx)
	case *messages.RestartFailed:
		restartFailed(Swarm, msg)
	case *messages.Download, *messages.SeedFiles, *messages.CancelDownloads:
		if a.peer == nil {
			if len(a.early) < maxEarly {
				a.early = append(a.early, early{msg: msg, sender: ctx.Sender()})
			} else if d, ok := msg.(*messages.Download); ok {
				ctx.Respond(&messages.DownloadDone{Txn: d.Txn, File: d.File, Err: errors.New("the torrent client is not running")})
			}
			return
		}
		a.handle(ctx, msg, ctx.Sender())
	case *downloadEnded:
		a.downloadDone(ctx, msg)
	case *seeded:
		a.seedsDone(ctx, msg)
	case *messages.SwarmStatusRequest:
		ctx.Respond(a.status())
	}
}

// joinDHT tells the client the DHT nodes the index names, unless it knows
// them already or is being told others: with --dht and no --dht-bootstrap
// they are how the host joins the DHT at all.
func (a *swarmActor) joinDHT(ctx actor.Context) {
	if a.peer == nil || a.cfg.DHT == nil || a.dhtJoining || len(a.dhtWant) == 0 || slices.Equal(a.dhtWant, a.dhtNodes) {
		return
	}
	a.dhtJoining, a.dhtNodes = true, a.dhtWant
	peer, nodes, token, self, root, life := a.peer, a.dhtWant, a.life.token, ctx.Self(), ctx.ActorSystem().Root, a.life.ctx
	a.env.bg.Go(func() {
		jctx, cancel := context.WithTimeout(life, dhtJoinWait)
		defer cancel()
		known, err := peer.JoinDHT(jctx, nodes)
		root.Send(self, &dhtJoined{token: token, nodes: nodes, known: known, err: err})
	})
}

// dhtJoinDone logs a join and starts the next if a newer index named
// other nodes. A failed join is not tried again: the client keeps the
// nodes as its starting nodes, and its DHT bootstraps through them every
// minute until it knows one.
func (a *swarmActor) dhtJoinDone(ctx actor.Context, msg *dhtJoined) {
	if msg.token != a.life.token {
		return // a predecessor's, on a client closed since
	}
	a.dhtJoining = false
	if msg.err != nil {
		a.env.log.Warn("joining the DHT through the nodes the index names", "nodes", msg.nodes, "err", msg.err)
	} else {
		a.env.log.Info("joined the DHT through the nodes the index names", "nodes", msg.nodes, "known", msg.known)
	}
	a.joinDHT(ctx)
}

// tellMetrics tells the host's metrics what the torrent client counts.
func (a *swarmActor) tellMetrics() {
	if a.peer != nil {
		s := a.peer.Stats()
		a.cfg.Metrics.Traffic(s.BytesUp, s.BytesDown)
		a.cfg.Metrics.Seeding(s.Complete)
	}
}

func (a *swarmActor) status() *messages.SwarmStatus {
	if a.peer == nil {
		return &messages.SwarmStatus{}
	}
	s := a.peer.Stats()
	return &messages.SwarmStatus{Port: a.peer.Port(), Seeding: s.Complete, Peers: s.Peers, BytesUp: s.BytesUp, BytesDown: s.BytesDown,
		Downloading: a.running, DownloadsWaiting: len(a.queued)}
}

// seedsDone takes the end of a batch and starts the next one.
func (a *swarmActor) seedsDone(ctx actor.Context, msg *seeded) {
	if msg.token != a.life.token {
		// A predecessor's batch, on a client closed since: this instance
		// runs its own, one at a time.
		return
	}
	a.seeding = false
	if msg.err != nil {
		a.env.log.Warn("seeding the cache", "err", msg.err)
	}
	if msg.reset {
		a.env.log.Info("seeding", "packages", msg.added, "removed_from_cache", msg.removed)
	}
	a.nextSeeds(ctx)
}

func (a *swarmActor) open(ctx actor.Context, addr string) {
	peer, err := swarm.NewPeer(swarm.PeerConfig{
		CacheDir: a.cfg.CacheDir, StateDir: a.cfg.StateDir, ListenAddr: addr,
		NoWebSeeds: a.cfg.NoWebSeeds, Logger: a.env.quiet, StallTimeout: a.cfg.StallTimeout, DHT: a.cfg.DHT,
		LiveTorrents: a.cfg.LiveTorrents,
	})
	if err != nil {
		ctx.Send(ctx.Parent(), &messages.Ready{Component: Swarm, Err: fmt.Errorf("torrent client: %w", err)})
		return
	}
	a.peer = peer
	// The port we got is ours for good: a restart and peers that know us
	// keep it.
	ctx.Send(ctx.Parent(), &messages.Ready{Component: Swarm, Addr: withPort(addr, peer.Port())})
	ctx.Request(ctx.Parent(), &messages.NeedIndex{})
	ctx.Request(ctx.Parent(), &messages.NeedSeeds{})
	for _, e := range a.early {
		a.handle(ctx, e.msg, e.sender)
	}
	a.early = nil
}

func (a *swarmActor) close(ctx actor.Context) {
	a.life.end() // every download running stops; each still reports its end
	// Those waiting never started: their requesters are answered here, as
	// a successor knows nothing of them.
	for _, q := range a.queued {
		ctx.Send(q.requester, &messages.DownloadDone{Txn: q.msg.Txn, File: q.msg.File, Err: errors.New("the torrent client stopped")})
	}
	a.queued, a.downloads, a.running = nil, nil, 0
	if a.peer != nil {
		if err := a.peer.Close(); err != nil {
			a.env.log.Warn("closing the torrent client", "err", err)
		}
		a.peer = nil
	}
}

func (a *swarmActor) handle(ctx actor.Context, msg any, sender *actor.PID) {
	switch msg := msg.(type) {
	case *messages.Download:
		a.download(ctx, msg, sender)
	case *messages.CancelDownloads:
		a.cancelDownloads(ctx, msg.Txn)
	case *messages.SeedFiles:
		a.seedQueue = append(a.seedQueue, msg)
		a.nextSeeds(ctx)
	}
}

// spec is the torrent of a file as this host finds its swarm: the trackers
// the index names (each server's own when it names none: an older
// server), and every server's web seed as the fallback.
func (a *swarmActor) spec(f messages.SeedFile) swarm.Spec {
	trackers := a.trackers
	var seeds []string
	for _, s := range a.cfg.Servers {
		if a.trackers == nil {
			trackers = append(trackers, swarm.PublicTracker(s))
		}
		seeds = append(seeds, swarm.PublicWebSeed(s))
	}
	return swarm.Spec{File: f.File, InfoHash: f.InfoHash, InfoBytes: f.InfoBytes, SHA256: f.SHA256, Size: f.Size,
		Trackers: trackers, WebSeeds: seeds}
}

// download starts the download msg asks for, or queues it while
// ParallelDownloads run.
func (a *swarmActor) download(ctx actor.Context, msg *messages.Download, requester *actor.PID) {
	key := downloadKey{txn: msg.Txn, file: msg.File}
	if _, dup := a.downloads[key]; dup {
		ctx.Send(requester, &messages.DownloadDone{Txn: msg.Txn, File: msg.File, Err: errors.New("already downloading")})
		return
	}
	if a.running >= a.parallel() {
		a.downloads[key] = nil
		a.queued = append(a.queued, queuedDownload{msg: msg, requester: requester})
		return
	}
	a.start(ctx, msg, requester)
}

func (a *swarmActor) parallel() int {
	if a.cfg.ParallelDownloads > 0 {
		return a.cfg.ParallelDownloads
	}
	return DefaultParallelDownloads
}

// start runs one download on a goroutine that reports its end.
func (a *swarmActor) start(ctx actor.Context, msg *messages.Download, requester *actor.PID) {
	key := downloadKey{txn: msg.Txn, file: msg.File}
	dctx, cancel := context.WithCancel(a.life.ctx)
	a.downloads[key] = cancel
	a.running++
	peer, spec, self, root, m, token := a.peer, a.spec(msg.SeedFile), ctx.Self(), ctx.ActorSystem().Root, a.cfg.Metrics, a.life.token
	a.env.bg.Go(func() {
		start := time.Now()
		path, err := peer.Download(dctx, spec, func(p swarm.Progress) {
			root.Send(requester, &messages.DownloadProgress{Txn: key.txn, File: key.file, Bytes: p.Bytes, Total: p.Total, Rate: p.Rate, Peers: p.Peers})
		})
		if err == nil {
			m.Download(time.Since(start))
		}
		root.Send(self, &downloadEnded{token: token, key: key, path: path, err: err, requester: requester})
	})
}

// downloadDone answers a download's requester and starts the next one
// waiting.
func (a *swarmActor) downloadDone(ctx actor.Context, msg *downloadEnded) {
	// An earlier instance's download is answered too: its requester waits.
	ctx.Send(msg.requester, &messages.DownloadDone{Txn: msg.key.txn, File: msg.key.file, Path: msg.path, Err: msg.err})
	if msg.token != a.life.token {
		return
	}
	if cancel := a.downloads[msg.key]; cancel != nil {
		cancel()
		delete(a.downloads, msg.key)
		a.running--
	}
	for a.running < a.parallel() && len(a.queued) > 0 && a.peer != nil {
		q := a.queued[0]
		a.queued[0] = queuedDownload{}
		a.queued = a.queued[1:]
		a.start(ctx, q.msg, q.requester)
	}
}

// cancelDownloads stops the downloads of txn: the running ones end through
// their goroutines, the waiting ones are answered now.
func (a *swarmActor) cancelDownloads(ctx actor.Context, txn uint64) {
	for k, cancel := range a.downloads {
		if k.txn == txn && cancel != nil {
			cancel()
		}
	}
	a.queued = slices.DeleteFunc(a.queued, func(q queuedDownload) bool {
		if q.msg.Txn != txn {
			return false
		}
		delete(a.downloads, downloadKey{txn: txn, file: q.msg.File})
		ctx.Send(q.requester, &messages.DownloadDone{Txn: txn, File: q.msg.File, Err: context.Canceled})
		return true
	})
}

// nextSeeds starts the next batch of seeding changes unless one runs.
func (a *swarmActor) nextSeeds(ctx actor.Context) {
	if a.seeding || len(a.seedQueue) == 0 || a.peer == nil {
		return
	}
	batch := a.seedQueue[0]
	a.seedQueue = a.seedQueue[1:]
	a.seeding = true
	peer, token, self, root := a.peer, a.life.token, ctx.Self(), ctx.ActorSystem().Root
	add, remove := make([]swarm.Spec, len(batch.Add)), make([]swarm.Spec, len(batch.Remove))
	for i, f := range batch.Add {
		add[i] = a.spec(f)
	}
	for i, f := range batch.Remove {
		remove[i] = a.spec(f)
	}
	log := a.env.log
	a.env.bg.Go(func() {
		var errs []error
		for _, s := range add {
			if err := peer.Seed(s); err != nil {
				errs = append(errs, err)
			}
		}
		for _, s := range remove {
			if err := peer.Remove(s); err != nil {
				log.Warn("dropping from the cache", "file", s.File, "err", err)
			}
		}
		root.Send(self, &seeded{token: token, reset: batch.Reset, added: len(add) - len(errs), removed: len(remove), err: errors.Join(errs...)})
	})
}
