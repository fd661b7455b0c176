package actors

import (
	"context"
	"errors"

	"github.com/asynkron/protoactor-go/actor"

	"tpm/builder"
	"tpm/messages"
)

// builderActor owns the source builds that run: each on a goroutine (a
// build takes minutes; the mailbox stays free), its process groups killed
// when the build is cancelled. If the actor fails and is restarted, or the
// daemon stops, every running build is cancelled and its requester told;
// nothing is half-linked because the engine links only after a build
// returns.
type builderActor struct {
	env     *env
	life    lifetime
	running map[uint64]runningBuild
}

type runningBuild struct {
	cancel    context.CancelFunc
	requester *actor.PID
}

// buildEnded is what a build's goroutine reports.
type buildEnded struct {
	id        uint64
	requester *actor.PID
	res       *builder.Result
	err       error
}

func (a *builderActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		a.life = newLifetime()
		a.running = map[uint64]runningBuild{}
		ctx.Send(ctx.Parent(), &messages.Ready{Component: Builder})
	case *actor.Restarting:
		a.stopAll(ctx, errors.New("the daemon's builder failed and was restarted; the build was stopped: run the command again"))
	case *actor.Stopping:
		a.stopAll(ctx, errors.New("the daemon is stopping; the build was stopped: run the command again when it is back"))
	case *messages.RestartFailed:
		restartFailed(Builder, msg)
	case *messages.BuildRequest:
		a.build(ctx, msg)
	case *buildEnded:
		// A build this instance does not know was answered by the restart
		// or stop that ended it.
		if b, ok := a.running[msg.id]; ok {
			b.cancel()
			delete(a.running, msg.id)
			ctx.Send(msg.requester, &messages.BuildResult{ID: msg.id, Result: msg.res, Err: msg.err})
		}
	}
}

func (a *builderActor) build(ctx actor.Context, msg *messages.BuildRequest) {
	requester := ctx.Sender()
	if _, dup := a.running[msg.ID]; dup {
		ctx.Respond(&messages.BuildResult{ID: msg.ID, Err: errors.New("a build with this id runs already")})
		return
	}
	bctx, cancel := context.WithCancel(a.life.ctx)
	a.running[msg.ID] = runningBuild{cancel: cancel, requester: requester}
	self, root, spec, to := ctx.Self(), ctx.ActorSystem().Root, msg.Spec, msg.OutputTo
	a.env.bg.Go(func() {
		out := outputTo(root, to)
		res, err := builder.Build(bctx, spec, func(step, line string) { out(spec.Name, step, line) })
		root.Send(self, &buildEnded{id: msg.ID, requester: requester, res: res, err: err})
	})
}

func (a *builderActor) stopAll(ctx actor.Context, why error) {
	a.life.end()
	for id, b := range a.running {
		ctx.Send(b.requester, &messages.BuildResult{ID: id, Err: why})
	}
	a.running = nil
}
