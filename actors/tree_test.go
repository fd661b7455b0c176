package actors

import (
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"tpm/messages"
)

// stub is a component for the tree's tests: it says it is ready when it
// starts (or when told, with wait), and fails its restarts with failRestarts.
type stub struct {
	name    string
	started chan string
	wait    bool
	starts  *atomic.Int32
	// failRestarts makes every start after the first report an error.
	failRestarts bool
	readySent    *atomic.Bool // set when it says it is ready
}

type goReady struct{}

func (s *stub) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		n := s.starts.Add(1)
		s.started <- s.name
		if s.failRestarts && n > 1 {
			ctx.Send(ctx.Parent(), &messages.Ready{Component: s.name, Err: errors.New("cannot come up again")})
			return
		}
		if !s.wait {
			ctx.Send(ctx.Parent(), &messages.Ready{Component: s.name, Addr: "127.0.0.1:" + s.name})
		}
	case *goReady:
		if s.readySent != nil {
			s.readySent.Store(true)
		}
		ctx.Send(ctx.Parent(), &messages.Ready{Component: s.name})
	case *messages.RestartFailed:
		restartFailed(s.name, msg)
	}
}

func startStubs(t *testing.T, cfg treeConfig) (*running, error) {
	e := newEnv(slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	e.middleware = []actor.ReceiverMiddleware{crashes}
	tr := newTree(e, cfg)
	r := newRunning(e)
	err := r.start("tree", tr.strategy(), func() actor.Actor { return &treeSupervisor{tree: tr} }, 10*time.Second)
	if err == nil {
		t.Cleanup(func() { r.stop(t.Context()) })
	}
	return r, err
}

// treeSupervisor is a supervisor with nothing but the tree.
type treeSupervisor struct{ tree }

func (a *treeSupervisor) Receive(ctx actor.Context) { a.tree.receive(ctx) }

// The components of a stage start once every one of the stage before is
// ready; the tree is started when all are, with their addresses.
func TestTreeStartsInStages(t *testing.T) {
	started := make(chan string, 10)
	var starts [2]atomic.Int32
	var firstReady atomic.Bool
	e := newEnv(slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	tr := newTree(e, treeConfig{components: []component{
		{name: "first", make: func(map[string]*actor.PID) actor.Actor {
			return &stub{name: "first", started: started, wait: true, starts: &starts[0], readySent: &firstReady}
		}},
		{name: "second", stage: 1, make: func(pids map[string]*actor.PID) actor.Actor {
			if pids["first"] == nil || !firstReady.Load() {
				t.Error("the second stage started before the first was ready")
			}
			return &stub{name: "second", started: started, starts: &starts[1]}
		}},
	}})
	r := newRunning(e)
	root, err := r.system.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return &treeSupervisor{tree: tr} },
		actor.WithSupervisor(tr.strategy())), "tree")
	if err != nil {
		t.Fatal(err)
	}
	r.root = root
	t.Cleanup(func() { r.stop(t.Context()) })
	if s := <-started; s != "first" {
		t.Fatalf("%s started first", s)
	}
	// Until the first stage is ready the tree is not started.
	f := r.system.Root.RequestFuture(root, &messages.AwaitStart{}, 10*time.Second)
	r.system.Root.Send(r.system.NewLocalPID(root.Id+"/first"), &goReady{})
	res, err := f.Result()
	if err != nil {
		t.Fatal(err)
	}
	st := res.(*messages.Started)
	if st.Err != nil || st.Addrs["second"] != "127.0.0.1:second" {
		t.Fatalf("started: %+v", st)
	}
	if s := <-started; s != "second" {
		t.Fatalf("then %s started", s)
	}
}

// A component that cannot come up fails the start, which names it.
func TestTreeStartFailsWithTheComponent(t *testing.T) {
	var starts atomic.Int32
	_, err := startStubs(t, treeConfig{components: []component{
		{name: "fine", make: func(map[string]*actor.PID) actor.Actor {
			return &stub{name: "fine", started: make(chan string, 10), starts: &starts}
		}},
		{name: "other", make: func(map[string]*actor.PID) actor.Actor {
			return &stubFails{}
		}},
	}})
	if err == nil || !strings.Contains(err.Error(), "start other: no port") {
		t.Fatalf("start: %v", err)
	}
}

// stubFails cannot come up.
type stubFails struct{}

func (s *stubFails) Receive(ctx actor.Context) {
	if _, ok := ctx.Message().(*actor.Started); ok {
		ctx.Send(ctx.Parent(), &messages.Ready{Component: "other", Err: errors.New("no port")})
	}
}

// A component whose restarts fail is restarted no more than the strategy
// allows, then stopped, and the tree reports it: the process should exit.
func TestTreeReportsAComponentItGaveUpOn(t *testing.T) {
	var starts atomic.Int32
	started := make(chan string, 100)
	r, err := startStubs(t, treeConfig{maxRestarts: 2, restartWindow: time.Minute, components: []component{
		{name: "flaky", make: func(map[string]*actor.PID) actor.Actor {
			return &stub{name: "flaky", started: started, starts: &starts, failRestarts: true}
		}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	r.system.Root.Send(r.child("flaky"), &crash{})
	select {
	case err := <-r.failed:
		if !strings.Contains(err.Error(), "flaky failed 3 times") {
			t.Fatalf("failure: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no failure reported")
	}
	if n := starts.Load(); n != 3 {
		t.Fatalf("%d starts, want the first and 2 restarts", n)
	}
}

// A restarted actor keeps its PID, so a predecessor's late goroutine result
// reaches it: the seeder's sync and the swarm's seeding batch say whose
// they are, and another instance's leave the one running alone.
func TestPredecessorResultsIgnored(t *testing.T) {
	seeder := &seederActor{env: newEnv(nil), life: lifetime{token: 1}, syncing: true}
	seeder.synced(nil, &seedSynced{token: 2, err: errors.New("the old client closed")})
	if !seeder.syncing {
		t.Error("the seeder took a predecessor's sync for its own")
	}
	seeder.synced(nil, &seedSynced{token: 1})
	if seeder.syncing {
		t.Error("the seeder missed the end of its own sync")
	}

	sw := &swarmActor{env: newEnv(nil), life: lifetime{token: 1}, seeding: true}
	sw.seedsDone(nil, &seeded{token: 2, err: errors.New("the old client closed")})
	if !sw.seeding {
		t.Error("the swarm took a predecessor's seeding batch for its own")
	}
	sw.seedsDone(nil, &seeded{token: 1})
	if sw.seeding {
		t.Error("the swarm missed the end of its own seeding batch")
	}
}
