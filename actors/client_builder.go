package actors

import (
	"context"
	"errors"
	"fmt"

	"github.com/asynkron/protoactor-go/actor"

	"tpm/builder"
	"tpm/messages"
)

// Builder is the client component that runs source builds.
const Builder = "builder"

// builderActor runs source builds, each on a goroutine of its own (a build
// takes minutes; the mailbox stays free), and remembers them: if the actor
// fails and is restarted, every running build is cancelled (its process
// group killed) and its transaction told so, and nothing is half-linked
// because the engine only links after a build returns.
type builderActor struct {
	c       *Client
	running map[string]runningBuild
	next    int
}

type runningBuild struct {
	cancel context.CancelFunc
	done   chan<- error
}

func (a *builderActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		a.running = make(map[string]runningBuild)
	case *actor.Restarting:
		for key, b := range a.running {
			b.cancel()
			b.done <- errors.New("the daemon's builder failed and was restarted; the build was stopped: run the command again")
			delete(a.running, key)
		}
	case *messages.Build:
		a.next++
		key := fmt.Sprintf("%s#%d", msg.Name, a.next)
		bctx, cancel := context.WithCancel(a.c.stopCtx)
		a.running[key] = runningBuild{cancel: cancel, done: msg.Done}
		self, root := ctx.Self(), ctx.ActorSystem().Root
		a.c.goBG(func() {
			defer cancel()
			err := msg.Run(bctx)
			root.Send(self, &messages.BuildFinished{Key: key})
			// The restart may have answered already; Done has room for both.
			msg.Done <- err
		})
	case *messages.BuildFinished:
		delete(a.running, msg.Key)
	case *messages.Crash:
		panic("builder: " + msg.Reason)
	}
}

// build is the engine's Options.Build in the daemon: it hands the build to
// the builder actor and waits for it, or for the transaction's end.
func (c *Client) build(ctx context.Context, spec builder.Spec) (*builder.Result, error) {
	var res *builder.Result
	done := make(chan error, 2)
	c.system.Root.Send(c.child(Builder), &messages.Build{
		Name: spec.Name,
		Run: func(bctx context.Context) error {
			// Either context ending stops the build: the daemon's or the request's.
			bctx, cancel := context.WithCancel(bctx)
			defer cancel()
			stop := context.AfterFunc(ctx, cancel)
			defer stop()
			var err error
			res, err = builder.Build(bctx, spec)
			return err
		},
		Done: done,
	})
	select {
	case err := <-done:
		if err != nil {
			return nil, err
		}
		return res, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
