package messages

// What the components of both daemons' supervision trees say to their
// supervisor, and what the process that starts a tree asks of it. A
// component's goroutines report to the component itself with types private
// to it (in actors/); the types here cross from one actor to another.

// Ready is sent by a component to its supervisor when it is up (its
// listener bound, its database open, its first index in), or with Err when
// it cannot come up. The supervisor starts the components of the next stage
// once every one of a stage is ready, and the tree is started when all are.
type Ready struct {
	Component string
	Err       error
	// Addr is the address the component listens on, if it has one, with
	// the port it got: a restart binds it again, so peers that know it keep
	// reaching it.
	Addr string
}

// AwaitStart asks a tree's supervisor to answer (with Started) once every
// component was ready once, or one failed to start.
type AwaitStart struct{}

// Started answers AwaitStart: Err is the first component's failure to
// start; Addrs are the components' listen addresses by component.
type Started struct {
	Err   error
	Addrs map[string]string
}

// NeedAddr is sent by a component that listens, when it starts, to its
// supervisor, which answers with Addr: the address to bind (the one an
// earlier instance bound, when the component is restarted).
type NeedAddr struct{}

// Addr answers NeedAddr.
type Addr struct{ Addr string }

// RestartFailed tells a restarted component that its start failed (it said
// so with Ready): it fails again, so that its supervisor's strategy counts
// the failure and restarts it or gives up.
type RestartFailed struct{ Err error }

// TreeFailed is published on the actor system's event stream when a
// component failed more often than its supervisor allows and was stopped:
// the daemon is then incomplete and the process should exit.
type TreeFailed struct{ Err error }
