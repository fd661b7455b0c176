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
type Server struct {
	run       *running
	catalog   *store.Catalog
	listings  *store.Listings
	publisher *publish.Publisher
	closeOnce sync.Once // the catalog, the listings and the package directory
}

// StartServer opens the catalog, starts the actors, and returns once the
// HTTP and BitTorrent listeners are bound (or with the error that stopped
// one of them). The first scan runs in the background; until it finishes
// the index answers 503.
func StartServer(cfg ServerConfig) (*Server, error) {
	if cfg.ScanInterval <= 0 {
		cfg.ScanInterval = 12 * time.Hour
	}
	cfg.ScanInterval = min(cfg.ScanInterval, repo.RescanEvery(cfg.IndexValidFor))
	e := newEnv(cfg.Logger)
	e.middleware = cfg.middleware
	cat, err := store.OpenCatalog(filepath.Join(cfg.StateDir, "catalog.db"))
	if err != nil {
		return nil, err
	}
	run := newRunning(e)
	listings, err := store.OpenListings(filepath.Join(cfg.StateDir, "listings.db"))
	if err != nil {
		cat.Close()
		return nil, err
	}
	s := &Server{run: run, catalog: cat, listings: listings}
	scanner := repo.NewScanner(cat, repo.Options{Dir: cfg.PackageDir, PublicURL: cfg.PublicURL, Signer: cfg.Signer, Check: cfg.Check,
		ValidFor: cfg.IndexValidFor, Listings: listings, Trackers: cfg.trackers(), WebSeeds: cfg.WebSeeds})
	var keyID, publicKey string
	if k, ok := cfg.Signer.(*signing.Key); ok {
		keyID, publicKey = k.PublicKey().ID(), k.PublicKey().String()
	}
	// The figures read the publisher when scraped, which is after it exists.
	var pub *publish.Publisher
	m := metrics.NewServer(func() metrics.ServerFigures { return pub.Figures() })
	s.publisher, err = publish.New(publish.Config{
		Dir:       cfg.PackageDir,
		NoTracker: cfg.NoTracker,
		// From an HTTP request's goroutine: the supervisor listens on the
		// event stream for it.
		OnStale:   func(file string) { run.system.EventStream.Publish(&messages.Rescan{Reason: "changed file " + file}) },
		PeersFile: filepath.Join(cfg.StateDir, "tracker-peers.json"),
		Logger:    e.log,
		Metrics:   m.Handler(),
		OnRequest: m.Request,
		PublicURL: cfg.PublicURL,
		KeyID:     keyID,
		PublicKey: publicKey,
		Listing:   listings.Get,
	})
	pub = s.publisher
	if err != nil {
		cat.Close()
		listings.Close()
		return nil, err
	}
	components := []component{
		{name: Publisher, make: func(map[string]*actor.PID) actor.Actor {
			return &publisherActor{env: e, publisher: s.publisher}
		}},
		{name: Seeder, make: func(map[string]*actor.PID) actor.Actor {
			return &seederActor{env: e, packageDir: cfg.PackageDir, stateDir: cfg.StateDir, trackers: cfg.Announce,
				dht: cfg.DHT, dhtOnly: cfg.NoSeed}
		}},
		// The scanner last: its first generation should find the others up.
		{name: Scanner, make: func(map[string]*actor.PID) actor.Actor {
			return &scannerActor{env: e, scanner: scanner, interval: cfg.ScanInterval, verifyEvery: cfg.VerifyInterval, metrics: m}
		}},
	}
	if cfg.NoSeed && cfg.DHT == nil {
		components = append(components[:1], components[2:]...)
	}
	t := newTree(e, treeConfig{name: "server", components: components, maxRestarts: cfg.MaxRestarts, restartWindow: cfg.RestartWindow,
		addrs: map[string]string{Publisher: cfg.HTTPAddr, Seeder: cfg.TorrentAddr}})
	if err := run.start("server", t.strategy(), func() actor.Actor { return &serverSupervisor{tree: t} }, 30*time.Second); err != nil {
		s.closeAll()
		return nil, err
	}
	return s, nil
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

// HTTPAddr is the address the publisher listens on.
func (s *Server) HTTPAddr() string { return s.run.addrs[Publisher] }

// TorrentAddr is the address the seeder listens on ("" without one).
func (s *Server) TorrentAddr() string { return s.run.addrs[Seeder] }

// Current is the generation being published, or nil before the first scan.
func (s *Server) Current() *generation.Generation { return s.publisher.Current() }

// Rescan asks for a scan now (SIGHUP does this).
func (s *Server) Rescan(reason string) {
	s.run.system.Root.Send(s.run.root, &messages.Rescan{Reason: reason})
}

// Failed delivers the error of a component that its supervisor gave up on.
// The server is then incomplete and should be stopped (and restarted by
// the service manager).
func (s *Server) Failed() <-chan error { return s.run.failed }

// Stop stops the actors (the publisher stops accepting and drains its
// connections, the torrent client closes), waits for background work until
// ctx ends, and closes the catalog. A second Stop returns the first one's
// result.
func (s *Server) Stop(ctx context.Context) error {
	return errors.Join(s.run.stop(ctx), s.closeAll())
}

func (s *Server) closeAll() error {
	var err error
	s.closeOnce.Do(func() { err = errors.Join(s.publisher.Close(), s.catalog.Close(), s.listings.Close()) })
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
	seeder     seederUp // the running seeder, for a restarted publisher
	staleFiles *eventstream.Subscription
}

// seederUp tells the publisher the seeder's port and figures (zero: none).
type seederUp struct {
	port  int
	stats publish.SeederStats
}

func (a *serverSupervisor) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *actor.Started:
		// The publisher finds changed files on HTTP goroutines, which
		// publish a Rescan on the event stream.
		self, root := ctx.Self(), ctx.ActorSystem().Root
		a.staleFiles = ctx.ActorSystem().EventStream.Subscribe(func(evt any) {
			if r, ok := evt.(*messages.Rescan); ok {
				root.Send(self, r)
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
	case *seederUp:
		a.seeder = *msg
		ctx.Send(a.pids[Publisher], msg)
	case *messages.Rescan: // to the server's scanner, or the mirror's copier
		for _, c := range []string{Scanner, Copier} {
			if pid := a.pids[c]; pid != nil {
				ctx.Send(pid, msg)
			}
		}
	}
}
