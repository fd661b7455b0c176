package actors

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/scheduler"

	"tpm/fifo"
	"tpm/messages"
)

// maxInFlight bounds the requests answered at once; each holds an actor
// and, while it writes, its reply FIFO. Beyond it requests are refused
// unanswered (logged), so a flood cannot grow the daemon without end.
const maxInFlight = 512

// gatewayActor owns the two request FIFOs and the requests in flight. A
// goroutine per FIFO reads lines and sends them here; each is parsed with
// its FIFO's verb list and given an actor of its own (requestActor, a
// child) that writes its replies, then sent on, with that actor as sender:
// sync to the syncer, the rest to the installer. Bad lines get an error
// reply when they name a reply FIFO, and are logged; the gateway keeps
// serving.
type gatewayActor struct {
	env               *env
	runDir            string
	adminGID          int
	installer, syncer *actor.PID
	query, admin      *fifo.Listener
	inFlight          int
	refused           int // requests refused while at maxInFlight, logged when it clears
}

// fifoLine is a line (or a read failure) from a request FIFO's reader.
type fifoLine struct {
	admin bool
	line  []byte
	err   error
}

func (a *gatewayActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		ctx.Send(ctx.Parent(), &messages.Ready{Component: Gateway, Err: a.open(ctx)})
	case *actor.Stopping, *actor.Restarting:
		a.close()
	case *messages.RestartFailed:
		restartFailed(Gateway, msg)
	case *fifoLine:
		a.handle(ctx, msg)
	case *actor.Terminated: // a request's actor finished
		a.inFlight--
		if a.refused > 0 && a.inFlight < maxInFlight/2 {
			a.env.log.Warn("refused requests while too many were in flight", "refused", a.refused, "limit", maxInFlight)
			a.refused = 0
		}
	}
}

func (a *gatewayActor) open(ctx actor.Context) error {
	adminPerm, gid := os.FileMode(0o600), -1
	if a.adminGID >= 0 {
		adminPerm, gid = 0o620, a.adminGID
	}
	for _, admin := range []bool{false, true} {
		_, lock := fifo.Paths(a.runDir, admin)
		if err := fifo.MakeLockFile(lock, 0o644); err != nil {
			return err
		}
	}
	queryPath, _ := fifo.Paths(a.runDir, false)
	adminPath, _ := fifo.Paths(a.runDir, true)
	q, err := fifo.Listen(queryPath, 0o622, -1, messages.MaxRequest)
	if err != nil {
		return err
	}
	ad, err := fifo.Listen(adminPath, adminPerm, gid, messages.MaxRequest)
	if err != nil {
		q.Close()
		return err
	}
	a.query, a.admin = q, ad
	self, root := ctx.Self(), ctx.ActorSystem().Root
	for _, l := range []struct {
		l     *fifo.Listener
		admin bool
	}{{q, false}, {ad, true}} {
		a.env.bg.Go(func() {
			for {
				line, err := l.l.ReadLine()
				if errors.Is(err, fifo.ErrTooLong) {
					root.Send(self, &fifoLine{admin: l.admin, err: err})
					continue
				}
				if err != nil {
					return // closed: the actor stops or restarts
				}
				root.Send(self, &fifoLine{admin: l.admin, line: line})
			}
		})
	}
	return nil
}

func (a *gatewayActor) close() {
	for _, l := range []*fifo.Listener{a.query, a.admin} {
		if l != nil {
			l.Close()
		}
	}
	a.query, a.admin = nil, nil
}

func (a *gatewayActor) handle(ctx actor.Context, msg *fifoLine) {
	which, verbs := fifo.QueryFIFO, messages.QueryVerbs
	if msg.admin {
		which, verbs = fifo.AdminFIFO, messages.AdminVerbs
	}
	log := a.env.log
	if msg.err != nil {
		// Nothing of the line was kept, so there is nobody to answer.
		log.Warn("refused a request", "fifo", which, "err", fmt.Sprintf("longer than %d bytes", messages.MaxRequest))
		return
	}
	req, err := messages.ParseRequest(msg.line, verbs)
	if req == nil {
		log.Warn("refused a request", "fifo", which, "err", err)
		return
	}
	if a.inFlight >= maxInFlight {
		a.refused++
		return
	}
	a.inFlight++
	rep := ctx.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return &requestActor{id: req.ID, path: req.Reply, log: log}
	}))
	if err != nil {
		if !msg.admin && slices.Contains(messages.AdminVerbs, req.Verb) {
			err = fmt.Errorf("%s changes the host: it must be sent to %s (as root or the admin group)", req.Verb, fifo.AdminFIFO)
		}
		log.Warn("refused a request", "fifo", which, "id", req.ID, "err", err)
		ctx.Send(rep, messages.Failure(err.Error()))
		return
	}
	log.Debug("request", "fifo", which, "id", req.ID, "verb", req.Verb, "args", req.Args)
	if req.Verb == messages.VerbSync {
		ctx.RequestWithCustomSender(a.syncer, &messages.SyncNow{}, rep)
		return
	}
	ctx.RequestWithCustomSender(a.installer, req, rep)
}

// requestActor writes one request's replies to its reply FIFO, opened on
// the first reply (a request that fails before anything is said costs one
// open). It stops after the final reply, or when the CLI is gone; whoever
// works for the request watches it to know the CLI left.
type requestActor struct {
	id, path string
	log      *slog.Logger
	w        *fifo.ReplyWriter
	finished bool // the final reply was sent, or nothing more can be
	stopping bool
}

// stopWriteTimeout bounds the last word of a request's actor that is
// stopped before its final reply.
const stopWriteTimeout = 500 * time.Millisecond

// replyTimeout bounds one reply write: a CLI that stops reading (but keeps
// its FIFO open) must not hold its request's actor for long.
const replyTimeout = 5 * time.Second

// linger is how long a request's actor stays after its final reply before
// it stops. Stopping at once made the actor's teardown and its parent's
// bookkeeping compete for the CPU with the CLI reading its answer: tpm info
// took 0.59 ms instead of 0.50 (test/bench/client). Lingering actors count
// against maxInFlight, so a flood is still bounded.
const linger = 20 * time.Millisecond

// stopNow ends a request's actor that lingered.
type stopNow struct{}

func (a *requestActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *messages.Reply:
		if a.finished {
			return
		}
		if err := a.write(msg); err != nil {
			a.log.Debug("reply not delivered: the CLI went away", "id", a.id, "err", err)
			a.finished = true
			ctx.Stop(ctx.Self())
			return
		}
		if msg.Final() {
			a.finished = true
			a.w.Close()
			a.w = nil
			scheduler.NewTimerScheduler(ctx.ActorSystem().Root).SendOnce(linger, ctx.Self(), &stopNow{})
		}
	case *stopNow:
		ctx.Stop(ctx.Self())
	case *actor.Stopping:
		if !a.finished {
			// The daemon may be stopping, within its 5 s: a CLI that does
			// not read gets a short chance only.
			a.finished, a.stopping = true, true
			a.write(messages.Failure("tpmd stopped answering this request (it is stopping, or one of its parts restarted): check with tpm status and tpm list, then run the command again"))
		}
		if a.w != nil {
			a.w.Close()
		}
	}
}

func (a *requestActor) write(r *messages.Reply) error {
	if a.w == nil {
		w, err := fifo.OpenReply(a.path, replyTimeout)
		if err != nil {
			return err
		}
		a.w = w
	}
	if a.stopping {
		a.w.SetTimeout(stopWriteTimeout)
	}
	line := *r // the same reply may go to others: stamp a copy
	line.ID = a.id
	b, err := json.Marshal(&line)
	if err != nil {
		return fmt.Errorf("reply: %w", err)
	}
	return a.w.WriteLine(b)
}
