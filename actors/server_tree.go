package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"tpm/messages"
	"tpm/publish"
	"tpm/repo"
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
	Check        repo.Check
	Logger       *slog.Logger
	// NoSeed publishes and tracks without seeding: clients get packages
	// from each other and from the web seed only (tpmd server --seed=false).
	NoSeed bool

	// Supervision: a component that fails more than MaxRestarts times
	// within RestartWindow is stopped and the server reports a failure
	// (Failed) instead of restarting it forever. Zero means 5 in a minute.
	MaxRestarts   int
	RestartWindow time.Duration
}

// Component names: the children of the server's supervisor.
const (
	Scanner   = "scanner"
	Seeder    = "seeder"
	Publisher = "publisher"
)

// Server is a running tpmd server: an actor system with one supervisor we
// own ("server") and its three children. The catalog and the HTTP handler's
// state (the current generation, the tracker's peers) belong to Server, so
// they outlive a component's restart; listeners and the torrent client
// belong to the actors and are reopened on restart.
type Server struct {
	cfg       ServerConfig
	log       *slog.Logger
	system    *actor.ActorSystem
	root      *actor.PID
	catalog   *store.Catalog
	scanner   *repo.Scanner
	publisher *publish.Publisher

	// Set by the actors.
	seederPort  atomic.Int32
	seeder      atomic.Pointer[swarm.Seeder] // the running seeder's client, for /healthz
	mu          sync.Mutex
	httpAddr    string // bound address, reused on restart
	torrentAddr string

	ready     chan readyMsg
	failed    chan error
	failOnce  sync.Once
	bg        sync.WaitGroup // scan and sync goroutines, HTTP drains
	lastStale atomic.Int64   // unix ns of the last rescan asked for by a stale file
	scanSeq   atomic.Uint64
	stopOnce  sync.Once
	stopErr   error
	quiet     *slog.Logger // warnings and worse only, for libraries
	startedMu sync.Mutex
	startedC  map[string]bool // components that have started once
}

type readyMsg struct {
	component string
	err       error
}

// StartServer opens the catalog, starts the actors, and returns once the
// HTTP and BitTorrent listeners are bound (or with the error that stopped
// one of them). The first scan runs in the background; until it finishes
// the index answers 503.
func StartServer(cfg ServerConfig) (*Server, error) {
	if cfg.MaxRestarts <= 0 {
		cfg.MaxRestarts = 5
	}
	if cfg.RestartWindow <= 0 {
		cfg.RestartWindow = time.Minute
	}
	if cfg.ScanInterval <= 0 {
		cfg.ScanInterval = 12 * time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cat, err := store.OpenCatalog(filepath.Join(cfg.StateDir, "catalog.db"))
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		catalog: cat,
		ready:   make(chan readyMsg, 4),
		failed:  make(chan error, 1),
		scanner: repo.NewScanner(cat, repo.Options{
			Dir: cfg.PackageDir, PublicURL: cfg.PublicURL, Signer: cfg.Signer, Check: cfg.Check,
		}),
		httpAddr:    cfg.HTTPAddr,
		torrentAddr: cfg.TorrentAddr,
	}
	s.publisher, err = publish.New(publish.Config{
		Dir:        cfg.PackageDir,
		SeederPort: func() int { return int(s.seederPort.Load()) },
		SeederStats: func() (int, int, int64) {
			if sd := s.seeder.Load(); sd != nil {
				loaded, complete := sd.Seeding()
				return loaded, complete, sd.Uploaded()
			}
			return 0, 0, 0
		},
		OnStale:   s.staleFile,
		PeersFile: filepath.Join(cfg.StateDir, "tracker-peers.json"),
		Logger:    cfg.Logger,
	})
	if err != nil {
		cat.Close()
		return nil, err
	}

	// protoactor logs through slog at Info level ("actor system started",
	// dead letters) in colour by default; keep only its warnings, in our
	// format.
	s.quiet = slog.New(levelFilter{cfg.Logger.Handler(), slog.LevelWarn})
	s.system = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return s.quiet }))
	strategy := loggingStrategy{
		inner: actor.NewOneForOneStrategy(cfg.MaxRestarts, cfg.RestartWindow, actor.DefaultDecider),
		log:   cfg.Logger,
	}
	props := actor.PropsFromProducer(func() actor.Actor { return &supervisor{s: s} }, actor.WithSupervisor(strategy))
	s.root, err = s.system.Root.SpawnNamed(props, "server")
	if err != nil {
		s.closeAll()
		return nil, fmt.Errorf("start server: %w", err)
	}

	var errs []error
	components := 2 // publisher and seeder
	if cfg.NoSeed {
		components = 1
	}
	for range components {
		select {
		case r := <-s.ready:
			if r.err != nil {
				errs = append(errs, r.err)
			}
		case <-time.After(30 * time.Second):
			errs = append(errs, errors.New("start server: components did not start within 30 s"))
		}
		if len(errs) > 0 {
			break
		}
	}
	if len(errs) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Stop(ctx)
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// HTTPAddr is the address the publisher listens on.
func (s *Server) HTTPAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.httpAddr
}

// TorrentAddr is the address the seeder listens on.
func (s *Server) TorrentAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.torrentAddr
}

// Current is the generation being published, or nil before the first scan.
func (s *Server) Current() *messages.Generation { return s.publisher.Current() }

// Rescan asks for a scan now (SIGHUP does this).
func (s *Server) Rescan(reason string) {
	s.system.Root.Send(s.root, &messages.Rescan{Reason: reason})
}

// InjectCrash makes a component panic, to see its supervisor restart it.
// Only tests call it.
func (s *Server) InjectCrash(component string) {
	s.system.Root.Send(s.child(component), &messages.Crash{Reason: "injected by a test"})
}

// Failed delivers the error of a component that its supervisor gave up on.
// The server is then incomplete and should be stopped (and restarted by
// the service manager).
func (s *Server) Failed() <-chan error { return s.failed }

// started reports whether component has started before: a first start
// reports to StartServer, a restart does not.
func (s *Server) started(component string) bool {
	s.startedMu.Lock()
	defer s.startedMu.Unlock()
	return s.startedC[component]
}

func (s *Server) markStarted(component string) {
	s.startedMu.Lock()
	defer s.startedMu.Unlock()
	if s.startedC == nil {
		s.startedC = make(map[string]bool)
	}
	s.startedC[component] = true
}

// child is the PID of a component; it stays the same across restarts.
func (s *Server) child(name string) *actor.PID {
	return s.system.NewLocalPID(s.root.Id + "/" + name)
}

func (s *Server) fail(err error) {
	s.failOnce.Do(func() { s.failed <- err })
}

// staleFile asks for a rescan when the publisher finds a changed file, at
// most once every 5 seconds however many requests notice it.
func (s *Server) staleFile(file string) {
	now := time.Now().UnixNano()
	last := s.lastStale.Load()
	if now-last < int64(5*time.Second) || !s.lastStale.CompareAndSwap(last, now) {
		return
	}
	s.Rescan("changed file " + file)
}

// Stop stops the actors (the publisher stops accepting and drains its
// connections, the torrent client closes), waits for background work until
// ctx ends, and closes the catalog.
// A second Stop returns the first one's result.
func (s *Server) Stop(ctx context.Context) error {
	s.stopOnce.Do(func() { s.stopErr = s.stop(ctx) })
	return s.stopErr
}

func (s *Server) stop(ctx context.Context) error {
	var errs []error
	if err := s.system.Root.StopFuture(s.root).Wait(); err != nil {
		errs = append(errs, fmt.Errorf("stop actors: %w", err))
	}
	done := make(chan struct{})
	go func() {
		s.bg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("stop: background work still running: %w", ctx.Err()))
	}
	s.system.Shutdown()
	errs = append(errs, s.closeAll())
	return errors.Join(errs...)
}

func (s *Server) closeAll() error {
	return errors.Join(s.publisher.Close(), s.catalog.Close())
}

// supervisor is the parent of the three components: it routes generations
// from the scanner to the publisher and the seeder, keeps the last one for
// a restarted component, and reports a component its strategy gave up on.
type supervisor struct {
	s        *Server
	last     *messages.Generation
	stopping bool
}

func (a *supervisor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		// The scanner last: its first generation should find the others up.
		children := []struct {
			name     string
			producer actor.Producer
		}{
			{Publisher, func() actor.Actor { return &publisherActor{s: a.s} }},
			{Seeder, func() actor.Actor { return &seederActor{s: a.s} }},
			{Scanner, func() actor.Actor { return &scannerActor{s: a.s} }},
		}
		for _, c := range children {
			if c.name == Seeder && a.s.cfg.NoSeed {
				continue
			}
			if _, err := ctx.SpawnNamed(actor.PropsFromProducer(c.producer), c.name); err != nil {
				a.s.fail(fmt.Errorf("start %s: %w", c.name, err))
			}
		}
	case *actor.Stopping:
		a.stopping = true
	case *actor.Terminated:
		if !a.stopping {
			a.s.fail(fmt.Errorf("%s failed %d times within %v and was stopped", msg.Who.Id, a.s.cfg.MaxRestarts+1, a.s.cfg.RestartWindow))
		}
	case *messages.GenerationReady:
		if a.last == nil || msg.Generation.Number >= a.last.Number {
			a.last = msg.Generation
			ctx.Send(a.s.child(Publisher), msg)
			if !a.s.cfg.NoSeed {
				ctx.Send(a.s.child(Seeder), msg)
			}
		}
	case *messages.NeedGeneration:
		if a.last != nil && ctx.Sender() != nil {
			ctx.Send(ctx.Sender(), &messages.GenerationReady{Generation: a.last})
		}
	case *messages.Rescan:
		ctx.Send(a.s.child(Scanner), msg)
	}
}

// loggingStrategy logs every failure before the OneForOne strategy acts on
// it, so a restart is never silent.
type loggingStrategy struct {
	inner actor.SupervisorStrategy
	log   *slog.Logger
}

func (l loggingStrategy) HandleFailure(system *actor.ActorSystem, sup actor.Supervisor, child *actor.PID,
	rs *actor.RestartStatistics, reason, message any) {
	l.log.Error("component failed; its supervisor restarts it (or stops it after too many failures)",
		"component", child.Id, "reason", fmt.Sprint(reason))
	l.inner.HandleFailure(system, sup, child, rs, reason, message)
}

// levelFilter drops records below min.
type levelFilter struct {
	slog.Handler
	min slog.Level
}

func (h levelFilter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h levelFilter) WithAttrs(as []slog.Attr) slog.Handler {
	return levelFilter{h.Handler.WithAttrs(as), h.min}
}

func (h levelFilter) WithGroup(n string) slog.Handler {
	return levelFilter{h.Handler.WithGroup(n), h.min}
}
