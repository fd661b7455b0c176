package actors

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"tpm/fifo"
	"tpm/messages/wire"
)

func TestWarnLimiter(t *testing.T) {
	var w warnLimiter
	now := w.start.Add(warnWindow)
	logged := 0
	for range 1000 {
		if _, ok := w.allow(now); ok {
			logged++
		}
	}
	if logged != warnBurst {
		t.Fatalf("%d warnings logged in a window, want %d", logged, warnBurst)
	}
	dropped, ok := w.allow(now.Add(warnWindow))
	if !ok || dropped != 1000-warnBurst {
		t.Fatalf("next window: %v, dropped %d, want %d", ok, dropped, 1000-warnBurst)
	}
}

// TestRequestActorSaysAlive: a request that is worked on in silence is
// said alive on its reply FIFO, and its parts are written before they are
// acknowledged.
func TestRequestActorSaysAlive(t *testing.T) {
	p := newProbes(t)
	run := t.TempDir()
	spool, err := fifo.MakeSpool(run)
	if err != nil {
		t.Fatal(err)
	}
	out, err := fifo.NewOutgoing(spool)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	l, err := fifo.Listen(fifo.Path(run, false), 0o622, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := out.Send(ctx, fifo.Path(run, false), []byte("{}"), -1); err != nil {
		t.Fatal(err)
	}
	in, err := fifo.Accept(spool, out.Token(), wire.MaxRequest, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	pid := p.system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return &requestActor{id: in.Token, w: in.Reply, log: p.env.log, aliveEvery: 50 * time.Millisecond}
	}))
	p.top = append(p.top, pid)
	next := func() wire.Reply {
		t.Helper()
		b, err := out.ReadLine(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var r wire.Reply
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := next(); r.Type != wire.ReplyAlive || r.ID != in.Token {
		t.Fatalf("first line of a silent request: %+v", r)
	}
	if err := sendPart(p.system.Root, pid, &wire.Reply{Type: wire.ReplyItems, Data: json.RawMessage(`[1]`)}); err != nil {
		t.Fatal(err)
	}
	for {
		r := next()
		if r.Type == wire.ReplyItems {
			break
		}
		if r.Type != wire.ReplyAlive {
			t.Fatalf("got %+v", r)
		}
	}
	p.system.Root.Send(pid, &wire.Reply{Type: wire.ReplyResult})
	for r := next(); r.Type != wire.ReplyResult; r = next() {
		if r.Type != wire.ReplyAlive {
			t.Fatalf("got %+v", r)
		}
	}
}
