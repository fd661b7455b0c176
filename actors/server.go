package actors

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/eventstream"

	"tpm/generation"
	"tpm/messages"
	"tpm/metrics"
	"tpm/publish"
	"tpm/repo"
	"tpm/signing"
	"tpm/store"
	"tpm/swarm"
)

// ServerConfig is everything tpmd server is told.
type ServerConfig struct {
	PackageDir   string
	StateDir     string        // catalog.db and the seeder's piece-completion database
	HTTPAddr     string        // "host:port" of the publisher; port 0 picks one
	PublicURL    string        // the HTTP server as clients reach it
	TorrentAddr  string        // "host:port" of the seeder; port 0 picks one
	Signer       repo.Signer   // signs /index.db
	ScanInterval time.Duration // between periodic scans
	// IndexValidFor is how long a published index is valid (zero:
	// repo.DefaultValidFor); scans come at least every quarter of it.
	IndexValidFor time.Duration
	// VerifyInterval, when set, reads every published file again that
	// often (repo.Scanner.Verify).
	VerifyInterval time.Duration
	Check          repo.Check
	Logger         *slog.Logger
	// NoSeed publishes and tracks without seeding: clients get packages
	// from each other and from the web seed only (tpmd server --seed=false).
	NoSeed bool
	// Announce are standard trackers (BEP 3 HTTP, BEP 15 UDP) put in every
	// torrent's announce list after the built-in one; the seeder announces
	// to them. NoTracker turns the built-in tracker off.
	Announce  []string
	NoTracker bool
	// WebSeeds are mirrors' /packages/ URLs named in every torrent's
	// url-list after the server's own.
	WebSeeds []string
	// DHT, when set, runs a DHT node on the torrent port, the fleet's
	// bootstrap node; with NoSeed the node runs alone, seeding nothing.
	DHT *swarm.DHTConfig
	// LiveTorrents caps the seeder's torrents live at once (zero: 1,000);
	// the others are dormant until demand wakes them.
	LiveTorrents int

	// Supervision: a component that fails more than MaxRestarts times
	// within RestartWindow is stopped and the server reports a failure
	// (Failed) instead of restarting it forever. Zero means 5 in a minute.
	MaxRestarts   int
	RestartWindow time.Duration

	middleware []actor.ReceiverMiddleware // tests only: export_test.go
}

// Component names: the children of the server's supervisor.
const (
	Scanner   = "scanner"
	Seeder    = "seeder"
	Publisher = "publisher"
)

// Server is a running tpmd server: a supervisor ("server") with the
// publisher, the seeder and the scanner under it. The catalog (a bbolt
// file), the scan over it and the HTTP handler's state (the generation
// served, the tracker's peers) are domain objects made here and handed to
// the actors, which drive them; the listeners and the torrent client
// belong to the actors and are reopened when one restarts.
type Server struct{ *publishing }

// StartServer opens the catalog, starts the actors, and returns once the
// HTTP and BitTorrent listeners are bound (or with the error that stopped
// one of them). The first scan runs in the background; until it finishes
// the index answers 503.
func StartServer(cfg ServerConfig) (*Server, error) {
	if cfg.ScanInterval <= 0 {
		cfg.ScanInterval = 12 * time.Hour
	}
	cfg.ScanInterval = min(cfg.ScanInterval, repo.RescanEvery(cfg.IndexValidFor))
	cat, err := store.OpenCatalog(filepath.Join(cfg.StateDir, "catalog.db"))
	if err != nil {
		return nil, err
	}
	listings, err := store.OpenListings(filepath.Join(cfg.StateDir, "listings.db"))
	if err != nil {
		cat.Close()
		return nil, err
	}
	scanner := repo.NewScanner(cat, repo.Options{Dir: cfg.PackageDir, PublicURL: cfg.PublicURL, Signer: cfg.Signer, Check: cfg.Check,
		ValidFor: cfg.IndexValidFor, Listings: listings, Trackers: cfg.trackers(), DHTNodes: cfg.DHTNodes(), WebSeeds: cfg.WebSeeds, SpoolDir: cfg.StateDir,
		Watch: true})
	if _, err := scanner.Watching(); err != nil {
		cfg.Logger.Info("rescans list the package directory whole", "why", err)
	}
	var keyID, publicKey string
	if k, ok := cfg.Signer.(*signing.Key); ok {
		keyID, publicKey = k.PublicKey().ID(), k.PublicKey().String()
	}
	p, err := startPublishing(publishingConfig{
		name: "server", seeder: Seeder, log: cfg.Logger, middleware: cfg.middleware, stateDir: cfg.StateDir,
		httpAddr: cfg.HTTPAddr, torrentAddr: cfg.TorrentAddr, maxRestarts: cfg.MaxRestarts, restartWindow: cfg.RestartWindow,
		publish: publish.Config{Dir: cfg.PackageDir, NoTracker: cfg.NoTracker, PublicURL: cfg.PublicURL,
			KeyID: keyID, PublicKey: publicKey, Listing: listings.Get},
		components: func(e *env, m *metrics.Server) []component {
			return cfg.components(e, m, scanner)
		},
		closeRest: func() error { return errors.Join(scanner.Close(), cat.Close(), listings.Close()) },
	})
	if err != nil {
		return nil, err
	}
	return &Server{p}, nil
}

// components are the server's components after the publisher: the seeder
// (unless it would run neither a seed nor a DHT node) and the scanner.
func (cfg ServerConfig) components(e *env, m *metrics.Server, scanner *repo.Scanner) []component {
	var list []component
	if !cfg.NoSeed || cfg.DHT != nil {
		list = append(list, component{name: Seeder, make: func(map[string]*actor.PID) actor.Actor {
			return &seederActor{env: e, packageDir: cfg.PackageDir, stateDir: cfg.StateDir, trackers: cfg.Announce,
				dht: cfg.DHT, dhtOnly: cfg.NoSeed, liveTorrents: cfg.LiveTorrents}
		}})
	}
	// The scanner last: its first generation should find the others up.
	return append(list, component{name: Scanner, make: func(map[string]*actor.PID) actor.Actor {
		return &scannerActor{env: e, scanner: scanner, interval: cfg.ScanInterval, verifyEvery: cfg.VerifyInterval, metrics: m}
	}})
}

// trackers is every torrent's announce list: the built-in tracker unless it
// is off, then the standard ones, each once.
func (cfg ServerConfig) trackers() []string {
	var list []string
	if !cfg.NoTracker {
		list = append(list, swarm.PublicTracker(cfg.PublicURL))
	}
	for _, t := range cfg.Announce {
		if !slices.Contains(list, t) {
			list = append(list, t)
		}
	}
	return list
}

// Rescan asks for a scan now (SIGHUP does this).
func (s *Server) Rescan(reason string) { s.rescan(reason) }

// publishing is what a server and a mirror share: a tree under the
// server's supervisor whose publisher serves a publish.Publisher made
// here, and what the role opened for it, closed once the tree stopped.
type publishing struct {
	run       *running
	publisher *publish.Publisher
	seeder    string       // the component that listens on the torrent address
	closeRest func() error // what the role opened besides the publisher; may be nil
	closeOnce sync.Once
}

// publishingConfig is what startPublishing needs of a role.
type publishingConfig struct {
	name                  string // the tree's root actor: "server", "mirror"
	seeder                string // Seeder or Copier: the component on torrentAddr
	httpAddr, torrentAddr string
	stateDir              string // where the tracker's peers are kept
	log                   *slog.Logger
	middleware            []actor.ReceiverMiddleware
	maxRestarts           int
	restartWindow         time.Duration
	closeRest             func() error // as in publishing
	// publish is the publisher's configuration but for what ties it to the
	// tree, which startPublishing sets: OnStale, PeersFile, Logger, Metrics,
	// OnRequest.
	publish publish.Config
	// components makes the components after the publisher, once the
	// daemon's env and metrics exist.
	components func(e *env, m *metrics.Server) []component
}

// startPublishing makes the publisher and starts the tree, the publisher
// first; it returns once every component is up. On failure it closes what
// the role opened.
func startPublishing(cfg publishingConfig) (*publishing, error) {
	e := newEnv(cfg.log)
	e.middleware = cfg.middleware
	run := newRunning(e)
	// The figures read the publisher when scraped, which is after it exists.
	var pub *publish.Publisher
	m := metrics.NewServer(func() metrics.ServerFigures { return pub.Figures() })
	pc := cfg.publish
	// A changed file is found on an HTTP request's goroutine: the
	// supervisor listens on the event stream for it and has the scanner
	// or the copier look again.
	pc.OnStale = func(file string) { run.system.EventStream.Publish(&messages.Rescan{Reason: "changed file " + file}) }
	pc.OnDemand = func(ih [20]byte) { run.system.EventStream.Publish(&messages.Demand{InfoHash: ih}) }
	pc.PeersFile = filepath.Join(cfg.stateDir, "tracker-peers.json")
	pc.Logger, pc.Metrics, pc.OnRequest = e.log, m.Handler(), m.Request
	pub, err := publish.New(pc)
	if err != nil {
		if cfg.closeRest != nil {
			cfg.closeRest()
		}
		return nil, err
	}
	p := &publishing{run: run, publisher: pub, seeder: cfg.seeder, closeRest: cfg.closeRest}
	components := append([]component{{name: Publisher, make: func(map[string]*actor.PID) actor.Actor {
		return &publisherActor{env: e, publisher: pub}
	}}}, cfg.components(e, m)...)
	t := newTree(e, treeConfig{name: cfg.name, components: components, maxRestarts: cfg.maxRestarts, restartWindow: cfg.restartWindow,
		addrs: map[string]string{Publisher: cfg.httpAddr, cfg.seeder: cfg.torrentAddr}})
	if err := run.start(cfg.name, t.strategy(), func() actor.Actor { return &serverSupervisor{tree: t} }, 30*time.Second); err != nil {
		p.closeAll()
		return nil, err
	}
	return p, nil
}

// HTTPAddr is the address the publisher listens on.
func (p *publishing) HTTPAddr() string { return p.run.addrs[Publisher] }

// TorrentAddr is the address the torrent client listens on ("" without
// one).
func (p *publishing) TorrentAddr() string { return p.run.addrs[p.seeder] }

// Current is the generation being published, or nil before the first one
// (the first scan, or the mirror's first complete copy).
func (p *publishing) Current() *generation.Generation { return p.publisher.Current() }

// rescan asks the scanner for a scan, or the copier for a fetch, now.
func (p *publishing) rescan(reason string) {
	p.run.system.Root.Send(p.run.root, &messages.Rescan{Reason: reason})
}

// Failed delivers the error of a component that its supervisor gave up on.
// The daemon is then incomplete and should be stopped (and restarted by
// the service manager).
func (p *publishing) Failed() <-chan error { return p.run.failed }

// Stop stops the actors (the publisher stops accepting and drains its
// connections, the torrent client closes), waits for background work until
// ctx ends, and closes the publisher and what the role opened (the
// server's catalog). A second Stop returns the first one's result.
func (p *publishing) Stop(ctx context.Context) error {
	return errors.Join(p.run.stop(ctx), p.closeAll())
}

func (p *publishing) closeAll() error {
	var err error
	p.closeOnce.Do(func() {
		err = p.publisher.Close()
		if p.closeRest != nil {
			err = errors.Join(err, p.closeRest())
		}
	})
	return err
}

// serverSupervisor routes generations from the scanner to the publisher
// and the seeder, keeps the last one for a restarted component, and passes
// the seeder's port to the publisher (the tracker names the seeder). The
// mirror's tree uses it too: there the copier makes the generations and
// is the seeder.
type serverSupervisor struct {
	tree
	last       *generation.Generation
	seeder     messages.SeederUp // the running seeder, for a restarted publisher
	staleFiles *eventstream.Subscription
}

func (a *serverSupervisor) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *actor.Started:
		// The publisher finds changed files and hosts' demand on HTTP
		// goroutines, which publish a Rescan or a Demand on the event
		// stream.
		self, root := ctx.Self(), ctx.ActorSystem().Root
		a.staleFiles = ctx.ActorSystem().EventStream.Subscribe(func(evt any) {
			switch evt.(type) {
			case *messages.Rescan, *messages.Demand:
				root.Send(self, evt)
			}
		})
	case *actor.Stopping:
		ctx.ActorSystem().EventStream.Unsubscribe(a.staleFiles)
	}
	if a.tree.receive(ctx) {
		return
	}
	switch msg := ctx.Message().(type) {
	case *messages.GenerationReady:
		if a.last == nil || msg.Generation.Number >= a.last.Number {
			a.last = msg.Generation
			for _, c := range []string{Publisher, Seeder} {
				if pid := a.pids[c]; pid != nil {
					ctx.Send(pid, msg)
				}
			}
		}
	case *messages.NeedGeneration:
		if a.last != nil && ctx.Sender() != nil {
			ctx.Send(ctx.Sender(), &messages.GenerationReady{Generation: a.last})
		}
		if a.nameOf(ctx.Sender()) == Publisher {
			up := a.seeder // a copy: the message must not share the supervisor's state
			ctx.Send(ctx.Sender(), &up)
		}
	case *messages.SeederUp:
		a.seeder = *msg
		ctx.Send(a.pids[Publisher], msg)
	case *messages.Rescan: // to the server's scanner, or the mirror's copier
		for _, c := range []string{Scanner, Copier} {
			if pid := a.pids[c]; pid != nil {
				ctx.Send(pid, msg)
			}
		}
	case *messages.Demand: // to whichever seeds: the seeder, or the mirror's copier
		for _, c := range []string{Seeder, Copier} {
			if pid := a.pids[c]; pid != nil {
				ctx.Send(pid, msg)
			}
		}
	}
}
