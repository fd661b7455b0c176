package actors

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"tpm/engine"
	"tpm/index"
	"tpm/messages"
	"tpm/metrics"
	"tpm/signing"
	"tpm/store"
	"tpm/swarm"
)

// HostConfig is everything tpmd client is told.
type HostConfig struct {
	// Servers are the base URLs of the repository's servers: the origin
	// and its mirrors, in the order the host prefers them.
	Servers      []string
	TrustedKey   signing.PublicKey
	StateDir     string // tpm.db, index.db(.sig), cache records, piece completion
	CacheDir     string // the .tpkg of every installed package
	RunDir       string // FIFOs, the request spool, the pid file
	AdminGID     int    // group allowed to write admin.fifo, or -1
	Prefix       string // for requests that name none
	SyncInterval time.Duration
	TorrentAddr  string           // "host:port"; port 0 picks one
	NoWebSeeds   bool             // download from peers only
	DHT          *swarm.DHTConfig // nil: no DHT
	LiveTorrents int              // seeded torrents live at once (zero: 1,000)
	// ParallelDownloads is how many downloads run at once, the others
	// waiting their turn (zero: DefaultParallelDownloads).
	ParallelDownloads int
	// KeepVersions is how many versions of each package the cache holds,
	// installed ones included, for undo (zero: cache.DefaultKeep).
	KeepVersions int
	StallTimeout time.Duration
	Logger       *slog.Logger

	// Source packages: where they are built, for how long at most, and
	// where they are linked (relative to the prefix; "" is usr/local).
	BuildRoot    string
	BuildTimeout time.Duration
	// ScriptTimeout bounds each package script (zero: the engine's 5 min).
	ScriptTimeout time.Duration
	LinkDir       string

	// Step is the engine's hook before every step of a transaction; only a
	// test build of tpmd sets it (to kill the daemon at a step).
	Step func(string)
	// Linger is how long a request's actor stays after its final reply
	// (zero: 20 ms); only a test build of tpmd lengthens it.
	Linger time.Duration

	// Metrics receives the host's figures (nil: none are kept).
	Metrics *metrics.Host

	// Supervision, as for the server: zero means 5 restarts in a minute.
	MaxRestarts   int
	RestartWindow time.Duration

	middleware []actor.ReceiverMiddleware // tests only: export_test.go
}

// Host components: the children of the host's supervisor.
const (
	Gateway   = "gateway"
	Syncer    = "syncer"
	Swarm     = "swarm"
	Installer = "installer"
	Builder   = "builder"
)

// firstFetchWait is how long a host without a kept index waits for its
// first fetch before it opens the FIFOs anyway (with an empty index): the
// repository may be down, and tpm must still reach the daemon.
const firstFetchWait = 15 * time.Second

// Host is a running tpmd client: a supervisor ("client") whose components
// own everything the daemon holds. Start-up is in two stages: the swarm,
// the builder, the installer (state database open, crash recovered) and
// the syncer (an index in: the one kept from the last run, or the outcome of
// the first fetch) first; the gateway, which opens the FIFOs, once they are
// all up. So a FIFO that answers always answers from an index and an open
// database.
type Host struct {
	run *running
}

// StartHost recovers the state database (finishing a transaction a crash
// interrupted), starts the actors, and returns once the FIFOs are open.
func StartHost(cfg HostConfig) (*Host, error) {
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = time.Hour
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "/"
	}
	e := newEnv(cfg.Logger)
	e.middleware = cfg.middleware
	for _, d := range []string{cfg.StateDir, cfg.CacheDir, cfg.RunDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("start client: %w", err)
		}
	}
	// The installer reopens the database on every start, waiting for a
	// predecessor's transaction to let go of it; here, before anything
	// runs, a database that another process holds is refused at once, and
	// a transaction a crash interrupted is finished before any request.
	if err := recoverState(context.Background(), e, cfg); err != nil {
		return nil, err
	}
	started := time.Now()
	components := []component{
		{name: Swarm, make: func(map[string]*actor.PID) actor.Actor {
			return &swarmActor{env: e, cfg: cfg}
		}},
		{name: Builder, make: func(map[string]*actor.PID) actor.Actor {
			return &builderActor{env: e}
		}},
		{name: Installer, make: func(pids map[string]*actor.PID) actor.Actor {
			return &installerActor{env: e, cfg: cfg, started: started, swarm: pids[Swarm], builder: pids[Builder]}
		}},
		{name: Syncer, make: func(map[string]*actor.PID) actor.Actor {
			return &syncerActor{env: e, keeper: index.New(cfg.Servers, cfg.TrustedKey, cfg.StateDir), interval: cfg.SyncInterval}
		}},
		{name: Gateway, stage: 1, make: func(pids map[string]*actor.PID) actor.Actor {
			return &gatewayActor{env: e, runDir: cfg.RunDir, adminGID: cfg.AdminGID, installer: pids[Installer], syncer: pids[Syncer], linger: cmp.Or(cfg.Linger, linger)}
		}},
	}
	t := newTree(e, treeConfig{name: "client", components: components, maxRestarts: cfg.MaxRestarts,
		restartWindow: cfg.RestartWindow, addrs: map[string]string{Swarm: cfg.TorrentAddr}})
	run := newRunning(e)
	if err := run.start("client", t.strategy(), func() actor.Actor { return &hostSupervisor{tree: t} }, firstFetchWait+30*time.Second); err != nil {
		return nil, err
	}
	return &Host{run: run}, nil
}

func recoverState(ctx context.Context, e *env, cfg HostConfig) error {
	opts := engineOptions(cfg)
	opts.CheckDatabase = true // every page, once per start: refuse a file damaged while tpmd was stopped
	eng, rec, err := engine.Open(ctx, opts)
	if errors.Is(err, store.ErrLocked) {
		return fmt.Errorf("the state database in %s is in use (another tpmd client, or tpm --offline?)", cfg.StateDir)
	}
	if err != nil {
		return err
	}
	if rec != nil {
		e.log.Warn("finished a transaction that a crash interrupted", "id", rec.ID, "prefix", rec.Prefix,
			"completed", rec.Completed, "rolled_back", rec.RolledBack, "scripts_not_run", rec.ScriptsNotRun)
	}
	return eng.Close()
}

func engineOptions(cfg HostConfig) engine.Options {
	return engine.Options{
		StateDir:      cfg.StateDir,
		BuildRoot:     cfg.BuildRoot,
		BuildTimeout:  cfg.BuildTimeout,
		ScriptTimeout: cfg.ScriptTimeout,
		LinkDir:       cfg.LinkDir,
		Root:          os.Geteuid() == 0,
		Step:          cfg.Step,
	}
}

// TorrentPort is the port the torrent client listens on.
func (h *Host) TorrentPort() int {
	_, port := splitPort(h.run.addrs[Swarm])
	return port
}

// Sync fetches the index at once, as tpm sync does, with nobody to answer:
// what SIGHUP does to tpmd client.
func (h *Host) Sync() {
	h.run.system.Root.Send(h.run.child(Syncer), &messages.SyncNow{})
}

// child is the PID of a component of the tree; it stays the same across
// restarts.
func (r *running) child(name string) *actor.PID {
	return r.system.NewLocalPID(r.root.Id + "/" + name)
}

// Failed delivers the error of a component its supervisor gave up on.
func (h *Host) Failed() <-chan error { return h.run.failed }

// Stop stops the actors: downloads stop, a transaction that started placing
// files finishes its current package (the engine's journal guaranteeing the
// rest), the database closes. It waits for that until ctx ends.
func (h *Host) Stop(ctx context.Context) error { return h.run.stop(ctx) }

// hostSupervisor keeps what a restarted component needs from the others'
// past: the last index (for the installer) and routes the swarm's request
// for what to seed to the installer, which knows the receipts.
type hostSupervisor struct {
	tree
	last *index.Snapshot
}

func (a *hostSupervisor) Receive(ctx actor.Context) {
	if a.tree.receive(ctx) {
		return
	}
	switch msg := ctx.Message().(type) {
	case *messages.IndexReady:
		a.last = msg.Index
		ctx.Send(a.pids[Installer], msg) // spawned before the syncer
		// The swarm announces to the trackers the index names.
		ctx.Send(a.pids[Swarm], &messages.IndexReady{Index: msg.Index})
	case *messages.NeedIndex: // from the installer or the swarm
		if a.last != nil {
			ctx.Respond(&messages.IndexReady{Index: a.last})
		}
	case *messages.NeedSeeds:
		// At the daemon's start the installer reconciles the cache and
		// tells the swarm what to seed on its own; only a restarted swarm,
		// which lost its torrents, asks again (asking at the first start
		// too made every start seed everything twice).
		if pid := a.pids[Installer]; pid != nil && a.readies[Swarm] > 1 {
			ctx.Forward(pid)
		}
	}
}
