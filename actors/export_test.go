package actors

import (
	"slices"
	"sync"

	"github.com/asynkron/protoactor-go/actor"

	"tpm/messages"
)

// crash makes the component that receives it fail, to see its supervisor
// restart it. Only tests send it, through the middleware below: the
// shipped actors know nothing of it.
type crash struct{}

func crashes(next actor.ReceiverFunc) actor.ReceiverFunc {
	return func(c actor.ReceiverContext, env *actor.MessageEnvelope) {
		if _, ok := env.Message.(*crash); ok {
			panic("failure injected by a test")
		}
		next(c, env)
	}
}

// withCrashes lets InjectCrash reach the server's components.
func (cfg ServerConfig) withCrashes() ServerConfig {
	cfg.middleware = []actor.ReceiverMiddleware{crashes}
	return cfg
}

// InjectCrash makes a component fail.
func (s *Server) InjectCrash(component string) {
	s.run.system.Root.Send(s.run.child(component), &crash{})
}

// withCrashes lets InjectCrash reach the host's components.
func (cfg HostConfig) withCrashes() HostConfig {
	cfg.middleware = []actor.ReceiverMiddleware{crashes}
	return cfg
}

// InjectCrash makes a component fail.
func (h *Host) InjectCrash(component string) {
	h.run.system.Root.Send(h.run.child(component), &crash{})
}

// starts counts the starts each component has handled, by name: a restart
// is one more, so a test can wait for it instead of sleeping.
type starts struct {
	mu sync.Mutex
	n  map[string]int
}

func newStarts() *starts { return &starts{n: map[string]int{}} }

func (s *starts) middleware(next actor.ReceiverFunc) actor.ReceiverFunc {
	return func(c actor.ReceiverContext, env *actor.MessageEnvelope) {
		next(c, env)
		key := ""
		switch m := env.Message.(type) {
		case *actor.Started:
			key = lastPart(c.Self().Id)
		case *messages.SeedFiles:
			if m.Reset {
				key = seedResets
			}
		}
		if key != "" {
			s.mu.Lock()
			s.n[key]++
			s.mu.Unlock()
		}
	}
}

// seedResets counts, among the starts, the times the swarm was told all it
// seeds (SeedFiles with Reset).
const seedResets = "seed resets"

func (s *starts) count(component string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n[component]
}

// withStarts has s count the starts of the host's components.
func (cfg HostConfig) withStarts(s *starts) HostConfig {
	cfg.middleware = append(slices.Clone(cfg.middleware), s.middleware)
	return cfg
}
