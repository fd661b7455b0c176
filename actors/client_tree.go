package actors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"tpm/engine"
	"tpm/fifo"
	"tpm/messages"
	"tpm/mirror"
	"tpm/signing"
	"tpm/store"
	"tpm/swarm"
)

// ClientConfig is everything tpmd client is told.
type ClientConfig struct {
	Server       string // the repository's base URL
	TrustedKey   signing.PublicKey
	StateDir     string // tpm.db, index.db(.sig), cache records, piece completion
	CacheDir     string // the .tpkg of every installed package
	RunDir       string // FIFOs, lockfiles
	AdminGID     int    // group allowed to write admin.fifo, or -1
	Prefix       string // for requests that name none
	SyncInterval time.Duration
	TorrentAddr  string // "host:port"; port 0 picks one
	NoWebSeeds   bool   // download from peers only
	StallTimeout time.Duration
	Logger       *slog.Logger

	// Source packages: where they are built, for how long at most, and
	// where they are linked (relative to the prefix; "" is usr/local).
	BuildRoot    string
	BuildTimeout time.Duration
	LinkDir      string

	// Step is passed to the engine (tests kill the daemon at a step).
	Step func(string)

	// Supervision, as for the server: zero means 5 restarts in a minute.
	MaxRestarts   int
	RestartWindow time.Duration
}

// Client components: the children of the client's supervisor.
const (
	Gateway   = "gateway"
	Syncer    = "syncer"
	Swarm     = "swarm"
	Installer = "installer"
)

// Client is a running tpmd client. The state that must outlive a
// component's restart belongs here: the engine (one transaction at a time,
// under txMu), the current index, the torrent client's handle for status.
type Client struct {
	cfg     ClientConfig
	log     *slog.Logger
	quiet   *slog.Logger
	system  *actor.ActorSystem
	root    *actor.PID
	engine  *engine.Engine
	mirror  *mirror.Mirror
	records store.CacheRecords
	started time.Time

	index      atomic.Pointer[mirror.Index]
	swarm      atomic.Pointer[swarm.Client]
	installing atomic.Pointer[string]

	txMu sync.Mutex // one transaction at a time, across installer restarts

	taMu        sync.Mutex
	torrentAddr string // the swarm's listen address, its port fixed once bound

	// The engine's callbacks go to the transaction that runs: a sink
	// swapped under sinkMu.
	sinkMu sync.Mutex
	sink   *txSink

	bg       sync.WaitGroup
	stopCtx  context.Context // cancelled by Stop: every goroutine's parent
	cancel   context.CancelFunc
	ready    chan readyMsg
	failed   chan error
	failOnce sync.Once
	stopOnce sync.Once
	stopErr  error
	startMu  sync.Mutex
	startedC map[string]bool
}

// txSink receives the engine's callbacks for one transaction.
type txSink struct {
	output  func(pkg, script, line string)
	applied func(engine.OpResult)
}

// StartClient opens the engine (recovering an interrupted transaction),
// loads the kept index, starts the actors, and returns once the FIFOs and
// the torrent client are up.
func StartClient(cfg ClientConfig) (*Client, error) {
	if cfg.MaxRestarts <= 0 {
		cfg.MaxRestarts = 5
	}
	if cfg.RestartWindow <= 0 {
		cfg.RestartWindow = time.Minute
	}
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "/"
	}
	c := &Client{
		cfg:     cfg,
		log:     cfg.Logger,
		records: store.CacheRecords{Dir: filepath.Join(cfg.StateDir, "cache")},
		started: time.Now(),
		ready:   make(chan readyMsg, 4),
		failed:  make(chan error, 1),
		mirror:  mirror.New(cfg.Server, cfg.TrustedKey, cfg.StateDir),

		torrentAddr: cfg.TorrentAddr,
	}
	c.stopCtx, c.cancel = context.WithCancel(context.Background())
	empty := ""
	c.installing.Store(&empty)
	for _, d := range []string{cfg.StateDir, cfg.CacheDir, cfg.RunDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("start client: %w", err)
		}
	}
	eng, rec, err := engine.Open(c.stopCtx, engine.Options{
		StateDir:     cfg.StateDir,
		BuildRoot:    cfg.BuildRoot,
		BuildTimeout: cfg.BuildTimeout,
		LinkDir:      cfg.LinkDir,
		Build:        c.build,
		Root:         os.Geteuid() == 0,
		Step:         cfg.Step,
		Output: func(pkg, script, line string) {
			if s := c.currentSink(); s != nil {
				s.output(pkg, script, line)
			}
		},
		Applied: func(r engine.OpResult) {
			if s := c.currentSink(); s != nil {
				s.applied(r)
			}
		},
	})
	if errors.Is(err, store.ErrLocked) {
		return nil, fmt.Errorf("the state database in %s is in use (another tpmd client, or tpm --offline?)", cfg.StateDir)
	}
	if err != nil {
		return nil, err
	}
	c.engine = eng
	if rec != nil {
		c.log.Warn("finished a transaction that a crash interrupted", "id", rec.ID, "prefix", rec.Prefix,
			"completed", rec.Completed, "rolled_back", rec.RolledBack, "scripts_not_run", rec.ScriptsNotRun)
	}
	idx, err := c.mirror.Load()
	if err != nil {
		c.log.Warn("ignoring the kept index; fetching a new one", "err", err)
		idx = mirror.Empty()
	}
	c.index.Store(idx)

	c.quiet = slog.New(levelFilter{cfg.Logger.Handler(), slog.LevelWarn})
	c.system = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return c.quiet }))
	strategy := loggingStrategy{
		inner: actor.NewOneForOneStrategy(cfg.MaxRestarts, cfg.RestartWindow, actor.DefaultDecider),
		log:   cfg.Logger,
	}
	props := actor.PropsFromProducer(func() actor.Actor { return &clientSupervisor{c: c} }, actor.WithSupervisor(strategy))
	c.root, err = c.system.Root.SpawnNamed(props, "client")
	if err != nil {
		eng.Close()
		return nil, fmt.Errorf("start client: %w", err)
	}
	var errs []error
	for range 2 { // gateway and swarm
		select {
		case r := <-c.ready:
			if r.err != nil {
				errs = append(errs, r.err)
			}
		case <-time.After(30 * time.Second):
			errs = append(errs, errors.New("start client: components did not start within 30 s"))
		}
		if len(errs) > 0 {
			break
		}
	}
	if len(errs) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c.Stop(ctx)
		return nil, errors.Join(errs...)
	}
	return c, nil
}

func (c *Client) currentSink() *txSink {
	c.sinkMu.Lock()
	defer c.sinkMu.Unlock()
	return c.sink
}

func (c *Client) setSink(s *txSink) {
	c.sinkMu.Lock()
	c.sink = s
	c.sinkMu.Unlock()
}

// Failed delivers the error of a component its supervisor gave up on.
func (c *Client) Failed() <-chan error { return c.failed }

// Index is the current verified index.
func (c *Client) Index() *mirror.Index { return c.index.Load() }

// TorrentPort is the port the torrent client listens on, or 0.
func (c *Client) TorrentPort() int {
	if s := c.swarm.Load(); s != nil {
		return s.Port()
	}
	return 0
}

// InjectCrash makes a component panic, to see its supervisor restart it.
func (c *Client) InjectCrash(component string) {
	c.system.Root.Send(c.child(component), &messages.Crash{Reason: "injected"})
}

func (c *Client) child(name string) *actor.PID {
	return c.system.NewLocalPID(c.root.Id + "/" + name)
}

func (c *Client) fail(err error) { c.failOnce.Do(func() { c.failed <- err }) }

func (c *Client) markStarted(component string) (first bool) {
	c.startMu.Lock()
	defer c.startMu.Unlock()
	if c.startedC == nil {
		c.startedC = make(map[string]bool)
	}
	first = !c.startedC[component]
	c.startedC[component] = true
	return first
}

// go runs fn on a tracked goroutine that Stop waits for.
func (c *Client) goBG(fn func()) {
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		fn()
	}()
}

// Stop cancels everything in flight (downloads stop; a transaction that
// started placing files finishes its current package, the engine's
// journal guaranteeing the rest), stops the actors and closes the engine.
func (c *Client) Stop(ctx context.Context) error {
	c.stopOnce.Do(func() { c.stopErr = c.stop(ctx) })
	return c.stopErr
}

func (c *Client) stop(ctx context.Context) error {
	var errs []error
	c.cancel()
	if err := c.system.Root.StopFuture(c.root).Wait(); err != nil {
		errs = append(errs, fmt.Errorf("stop actors: %w", err))
	}
	done := make(chan struct{})
	go func() {
		c.bg.Wait()
		close(done)
	}()
	select {
	case <-done:
		errs = append(errs, c.engine.Close())
	case <-ctx.Done():
		// A script still runs: leave the database to the process exit; the
		// journal makes the next start finish or undo the transaction.
		errs = append(errs, fmt.Errorf("stop: a transaction is still running: %w", ctx.Err()))
	}
	c.system.Shutdown()
	return errors.Join(errs...)
}

// clientSupervisor is the parent of the five components.
type clientSupervisor struct {
	c        *Client
	stopping bool
}

func (a *clientSupervisor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		children := []struct {
			name     string
			producer actor.Producer
		}{
			{Swarm, func() actor.Actor { return &swarmActor{c: a.c} }},
			{Installer, func() actor.Actor { return &installerActor{c: a.c} }},
			{Builder, func() actor.Actor { return &builderActor{c: a.c} }},
			{Syncer, func() actor.Actor { return &syncerActor{c: a.c} }},
			{Gateway, func() actor.Actor { return &gatewayActor{c: a.c} }},
		}
		for _, ch := range children {
			if _, err := ctx.SpawnNamed(actor.PropsFromProducer(ch.producer), ch.name); err != nil {
				a.c.fail(fmt.Errorf("start %s: %w", ch.name, err))
			}
		}
	case *actor.Stopping:
		a.stopping = true
	case *actor.Terminated:
		if !a.stopping {
			a.c.fail(fmt.Errorf("%s failed %d times within %v and was stopped", msg.Who.Id, a.c.cfg.MaxRestarts+1, a.c.cfg.RestartWindow))
		}
	}
}

// replier writes one request's reply stream to its FIFO. The FIFO is
// opened on the first Send, so a request that fails before anything is
// said costs one open.
type replier struct {
	id, path string
	log      *slog.Logger

	mu       sync.Mutex
	w        *fifo.ReplyWriter
	finished bool
	goneOnce sync.Once
	gone     chan struct{}
}

func newReplier(id, path string, log *slog.Logger) *replier {
	return &replier{id: id, path: path, log: log, gone: make(chan struct{})}
}

// replyTimeout bounds one reply write: a CLI that stops reading (but keeps
// its FIFO open) must not stall a transaction.
const replyTimeout = 5 * time.Second

func (r *replier) Send(rep *messages.Reply) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.finished {
		return nil
	}
	rep.ID = r.id
	if rep.Final() {
		r.finished = true
		defer r.close()
	}
	select {
	case <-r.gone:
		return messages.ErrReplyGone
	default:
	}
	if r.w == nil {
		w, err := fifo.OpenReply(r.path, replyTimeout)
		if err != nil {
			r.markGone()
			return fmt.Errorf("%w: %v", messages.ErrReplyGone, err)
		}
		r.w = w
	}
	b, err := json.Marshal(rep)
	if err != nil {
		return fmt.Errorf("reply: %w", err)
	}
	if err := r.w.WriteLine(b); err != nil {
		r.markGone()
		return fmt.Errorf("%w: %v", messages.ErrReplyGone, err)
	}
	return nil
}

func (r *replier) markGone() {
	r.goneOnce.Do(func() { close(r.gone) })
}

func (r *replier) close() {
	if r.w != nil {
		r.w.Close()
		r.w = nil
	}
}

func (r *replier) Gone() <-chan struct{} { return r.gone }

func (r *replier) Finished() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.finished
}

// sendResult ends a stream with data, or with err's one line.
func sendResult(rep messages.Replier, data any, err error) {
	if err != nil {
		rep.Send(&messages.Reply{Type: messages.ReplyError, Error: oneLine(err.Error())})
		return
	}
	b, merr := json.Marshal(data)
	if merr != nil {
		rep.Send(&messages.Reply{Type: messages.ReplyError, Error: "internal error encoding the result: " + merr.Error()})
		return
	}
	rep.Send(&messages.Reply{Type: messages.ReplyResult, Data: b})
}

func sendLog(rep messages.Replier, text string) error {
	return rep.Send(&messages.Reply{Type: messages.ReplyLog, Text: text})
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\r", " ")
	return strings.ReplaceAll(s, "\n", "; ")
}

var errStopping = errors.New("the daemon is stopping or its syncer restarted; run the command again")
