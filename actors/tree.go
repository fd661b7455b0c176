package actors

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"tpm/messages"
)

// The supervision plumbing both daemons share: a process-wide env, a
// supervisor (tree) that spawns its components in stages, tells whoever
// started it when every component is up, keeps what a restarted component
// needs from its predecessor (its listen address), and reports a component
// its strategy gave up on.

// env is what every actor of one daemon process shares. It is set up
// before the first actor starts and never changes.
type env struct {
	log   *slog.Logger
	quiet *slog.Logger // warnings and worse only, for libraries
	// bg tracks the goroutines that slow work runs on, so that a stop
	// waits for them (a transaction placing files, a listener draining).
	bg *sync.WaitGroup
	// middleware wraps every component's Receive; only tests set it (to
	// inject failures), through export_test.go.
	middleware []actor.ReceiverMiddleware
}

func newEnv(log *slog.Logger) *env {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &env{log: log, quiet: slog.New(levelFilter{log.Handler(), slog.LevelWarn}), bg: &sync.WaitGroup{}}
}

// newSystem makes an actor system that logs protoactor's own warnings in
// our format (its default prints coloured lines at Info).
func (e *env) newSystem() *actor.ActorSystem {
	return actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return e.quiet }))
}

// component is one child of a tree.
type component struct {
	name string
	// stage orders start-up: the components of a stage are spawned once
	// every component of the stages before is ready.
	stage int
	// make returns the actor; pids are the components spawned before it,
	// by name, so it can talk to them.
	make func(pids map[string]*actor.PID) actor.Actor
}

// treeConfig is how a tree supervises.
type treeConfig struct {
	name          string // of the tree's root actor, and in messages
	components    []component
	maxRestarts   int // within restartWindow, then the component is stopped
	restartWindow time.Duration
	// addrs are the configured listen addresses by component (port 0
	// picks one, which the component's Ready then reports).
	addrs map[string]string
}

// tree is the state of a supervisor; each role's supervisor embeds it and
// passes every message to receive first.
type tree struct {
	env      *env
	cfg      treeConfig
	pids     map[string]*actor.PID
	ready    map[string]bool   // ready at least once
	readies  map[string]int    // times ready: more than once is a restarted component
	addrs    map[string]string // listen addresses, kept across restarts
	stage    int               // the stage being started
	started  bool              // every component was ready once
	startErr error
	waiting  []*actor.PID // AwaitStart askers
	stopping bool
}

func newTree(e *env, cfg treeConfig) tree {
	if cfg.maxRestarts <= 0 {
		cfg.maxRestarts = 5
	}
	if cfg.restartWindow <= 0 {
		cfg.restartWindow = time.Minute
	}
	addrs := map[string]string{}
	for n, a := range cfg.addrs {
		addrs[n] = a
	}
	return tree{env: e, cfg: cfg, pids: map[string]*actor.PID{}, ready: map[string]bool{}, readies: map[string]int{}, addrs: addrs}
}

// strategy is how a tree supervises its components: OneForOne with bounded
// restarts, each failure logged.
func (t *tree) strategy() actor.SupervisorStrategy {
	return loggingStrategy{
		inner: actor.NewOneForOneStrategy(t.cfg.maxRestarts, t.cfg.restartWindow, actor.DefaultDecider),
		log:   t.env.log,
	}
}

// receive handles what every tree does and reports whether msg was one of
// those.
func (t *tree) receive(ctx actor.Context) bool {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		t.spawnStage(ctx)
	case *actor.Stopping:
		t.stopping = true
	case *actor.Terminated:
		if t.pids[lastPart(msg.Who.Id)] != nil && !t.stopping {
			err := fmt.Errorf("%s failed %d times within %v and was stopped", lastPart(msg.Who.Id), t.cfg.maxRestarts+1, t.cfg.restartWindow)
			ctx.ActorSystem().EventStream.Publish(&messages.TreeFailed{Err: err})
			if !t.started {
				// Given up on while the tree starts: the start fails now,
				// not when its wait ends.
				t.fail(ctx, err)
			}
		}
	case *messages.AwaitStart:
		if t.started || t.startErr != nil {
			ctx.Respond(t.startedMsg())
			return true
		}
		t.waiting = append(t.waiting, ctx.Sender())
	case *messages.NeedAddr:
		ctx.Respond(&messages.Addr{Addr: t.addrs[t.nameOf(ctx.Sender())]})
	case *messages.Ready:
		t.componentReady(ctx, msg)
	default:
		return false
	}
	return true
}

func (t *tree) nameOf(pid *actor.PID) string {
	if pid == nil {
		return ""
	}
	return lastPart(pid.Id)
}

func (t *tree) componentReady(ctx actor.Context, msg *messages.Ready) {
	if msg.Err == nil {
		t.readies[msg.Component]++
	}
	if msg.Addr != "" {
		t.addrs[msg.Component] = msg.Addr
	}
	if msg.Err != nil {
		if !t.ready[msg.Component] && !t.started {
			t.fail(ctx, fmt.Errorf("start %s: %w", msg.Component, msg.Err))
			return
		}
		// A restart that failed: fail again, so the strategy counts it.
		if pid := t.pids[msg.Component]; pid != nil {
			ctx.Send(pid, &messages.RestartFailed{Err: msg.Err})
		}
		return
	}
	t.ready[msg.Component] = true
	if t.started || t.startErr != nil {
		return
	}
	for _, c := range t.cfg.components {
		if c.stage == t.stage && !t.ready[c.name] {
			return
		}
	}
	t.stage++
	t.spawnStage(ctx)
}

// spawnStage spawns the components of the current stage, or finishes the
// start when there are none left.
func (t *tree) spawnStage(ctx actor.Context) {
	spawned := false
	for _, c := range t.cfg.components {
		if c.stage != t.stage {
			continue
		}
		spawned = true
		pids := make(map[string]*actor.PID, len(t.pids))
		for n, p := range t.pids {
			pids[n] = p
		}
		mk := c.make
		props := actor.PropsFromProducer(func() actor.Actor { return mk(pids) },
			actor.WithReceiverMiddleware(t.env.middleware...))
		pid, err := ctx.SpawnNamed(props, c.name)
		if err != nil {
			t.fail(ctx, fmt.Errorf("start %s: %w", c.name, err))
			return
		}
		t.pids[c.name] = pid
	}
	if spawned {
		return
	}
	t.started = true
	for _, w := range t.waiting {
		ctx.Send(w, t.startedMsg())
	}
	t.waiting = nil
}

func (t *tree) fail(ctx actor.Context, err error) {
	if t.startErr == nil {
		t.startErr = err
	}
	for _, w := range t.waiting {
		ctx.Send(w, t.startedMsg())
	}
	t.waiting = nil
}

func (t *tree) startedMsg() *messages.Started {
	addrs := make(map[string]string, len(t.addrs))
	for n, a := range t.addrs {
		addrs[n] = a
	}
	return &messages.Started{Err: t.startErr, Addrs: addrs}
}

// running is a started tree: its actor system, root, and how it reports
// failure.
type running struct {
	env      *env
	system   *actor.ActorSystem
	root     *actor.PID
	failed   chan error
	addrs    map[string]string
	stopOnce sync.Once
	stopErr  error
}

// newRunning makes a daemon's actor system, with failures reported on the
// returned running's channel.
func newRunning(e *env) *running {
	r := &running{env: e, system: e.newSystem(), failed: make(chan error, 1)}
	r.system.EventStream.Subscribe(func(evt any) {
		if f, ok := evt.(*messages.TreeFailed); ok {
			select {
			case r.failed <- f.Err:
			default: // the first failure is the one reported
			}
		}
	})
	return r
}

// start spawns a supervisor made by newSupervisor (whose strategy is the
// tree's) and waits until every component is ready, or one failed, or
// timeout passed; on failure everything is stopped again.
func (r *running) start(name string, strategy actor.SupervisorStrategy, newSupervisor actor.Producer, timeout time.Duration) error {
	root, err := r.system.Root.SpawnNamed(actor.PropsFromProducer(newSupervisor, actor.WithSupervisor(strategy)), name)
	if err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	r.root = root
	res, err := r.system.Root.RequestFuture(root, &messages.AwaitStart{}, timeout).Result()
	if err == nil {
		started := res.(*messages.Started)
		err, r.addrs = started.Err, started.Addrs
	} else {
		err = fmt.Errorf("start %s: components did not start within %v", name, timeout)
	}
	if err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r.stop(ctx)
		return err
	}
	return nil
}

// stop stops the actors (children first; each closes what it owns) and
// waits for their background work until ctx ends. A second stop returns
// the first one's result.
func (r *running) stop(ctx context.Context) error {
	r.stopOnce.Do(func() { r.stopErr = r.stopActors(ctx) })
	return r.stopErr
}

func (r *running) stopActors(ctx context.Context) error {
	var errs []error
	if err := r.system.Root.StopFuture(r.root).Wait(); err != nil {
		errs = append(errs, fmt.Errorf("stop actors: %w", err))
	}
	done := make(chan struct{})
	go func() {
		r.env.bg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		// A script still runs, say: the process exit leaves the rest to the
		// next start (the journal finishes or undoes a transaction).
		errs = append(errs, fmt.Errorf("stop: background work still running: %w", ctx.Err()))
	}
	r.system.Shutdown()
	return errors.Join(errs...)
}

// lifetime is a context for the goroutines one actor instance starts,
// cancelled when the instance stops or restarts, and a token that tells
// its goroutines' results from those of an earlier instance (a restarted
// actor keeps its PID, so its predecessor's late results reach it).
type lifetime struct {
	ctx    context.Context
	cancel context.CancelFunc
	token  uint64
}

func newLifetime() lifetime {
	ctx, cancel := context.WithCancel(context.Background())
	var b [8]byte
	rand.Read(b[:])
	return lifetime{ctx: ctx, cancel: cancel, token: binary.LittleEndian.Uint64(b[:])}
}

func (l *lifetime) end() {
	if l.cancel != nil {
		l.cancel()
	}
}

// restartFailed makes the component that receives it fail, so that its
// supervisor's strategy decides whether to try once more.
func restartFailed(component string, msg *messages.RestartFailed) {
	panic(fmt.Errorf("%s: %w", component, msg.Err))
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

// withPort replaces the port of addr ("host:port").
func withPort(addr string, port int) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// lastPart is a child's name from its PID's id ("client/installer").
func lastPart(id string) string {
	for i := len(id) - 1; i >= 0; i-- {
		if id[i] == '/' {
			return id[i+1:]
		}
	}
	return id
}

// splitPort is the port of addr ("host:port"), 0 when it has none.
func splitPort(addr string) (string, int) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, 0
	}
	n, _ := strconv.Atoi(port)
	return host, n
}
