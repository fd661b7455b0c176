package actors

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"tpm/messages"
	"tpm/publish"
)

// drainTimeout bounds how long in-flight HTTP requests may finish after the
// publisher stops: tpmd must be gone within 5 s of SIGTERM.
const drainTimeout = 3 * time.Second

// publisherActor owns the HTTP listener and swaps generations into the
// Server's publish.Publisher. On stop (or restart) it closes the listener at
// once, so a restarted publisher can bind the same address, and drains the
// open connections in the background.
type publisherActor struct {
	s   *Server
	srv *publish.Server
}

func (a *publisherActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		a.listen(ctx)
	case *actor.Stopping, *actor.Restarting:
		a.stop()
	case *messages.GenerationReady:
		if a.s.publisher.Swap(msg.Generation) {
			a.s.log.Info("published", "generation", msg.Generation.Number, "packages", len(msg.Generation.Packages))
		}
	case *messages.Crash:
		panic("publisher: " + msg.Reason)
	}
}

func (a *publisherActor) listen(ctx actor.Context) {
	s := a.s
	first := !s.started(Publisher)
	srv, err := publish.Listen(s.HTTPAddr(), s.publisher, s.quiet)
	if err != nil {
		if first {
			s.ready <- readyMsg{Publisher, err}
			return
		}
		panic(fmt.Errorf("publisher: %w", err))
	}
	a.srv = srv
	s.mu.Lock()
	s.httpAddr = srv.Addr()
	s.mu.Unlock()
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		if err := srv.Serve(); err != nil {
			s.log.Error("http server stopped", "err", err)
		}
	}()
	if first {
		s.markStarted(Publisher)
		s.ready <- readyMsg{Publisher, nil}
	}
	ctx.Request(ctx.Parent(), &messages.NeedGeneration{})
}

func (a *publisherActor) stop() {
	if a.srv == nil {
		return
	}
	srv := a.srv
	a.srv = nil
	srv.CloseListener()
	a.s.bg.Add(1)
	go func() {
		defer a.s.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			a.s.log.Warn("http drain", "err", err)
		}
	}()
}

// withPort replaces the port of addr ("host:port").
func withPort(addr string, port int) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}
