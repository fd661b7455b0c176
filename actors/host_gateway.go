package actors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/scheduler"

	"tpm/fifo"
	"tpm/messages"
	"tpm/messages/wire"
)

// Bounds of the requests in flight; each holds an actor and its reply
// FIFO. Beyond them a request is answered at once that tpmd is busy, so a
// flood cannot grow the daemon, and one user's flood leaves room for the
// others. Root is held only to its own bound.
const (
	maxInFlight    = 512
	maxInFlightUID = 16
)

// Bounds of the spool. A request's directory counts against its owner from
// the moment its token arrives until the gateway's cleaner removed it,
// which it does once the request is answered or refused; beyond maxDirsUID
// a uid's new tokens are refused (told so on their reply FIFO, as a
// refusal for requests in flight is) and their directories removed.
// Directories whose token never came are removed by the cleaner's sweep
// once tokenGrace old (a tpm sends its token right after making its
// directory, and gives up within 10 s), and at once beyond maxYoungUID of
// a uid or maxYoung in all: a round every sweepEvery, and one as soon as
// the spool holds sweepPressure directories more than expected (counted
// every checkEvery, one fstat).
const (
	maxDirsUID    = 64
	maxUncounted  = 1024 // removals queued of refused directories that do not count
	tokenGrace    = time.Minute
	sweepEvery    = tokenGrace / 4
	checkEvery    = time.Second
	sweepPressure = 256
	maxYoungUID   = 64
	maxYoung      = 4096
)

// gatewayActor owns the two request FIFOs, the spool and the requests in
// flight, by uid. A goroutine per FIFO reads tokens, accepts from the spool
// the requests they name (package fifo checks who made them and opens their
// reply FIFO) and sends them here a read at a time, waiting until they are
// taken. Each request is checked against its FIFO's verbs, its uid's rights
// and bounds, and given an actor of its own (requestActor, a child) that
// writes its replies, then sent on with that actor as sender: sync to the
// syncer, the rest to the installer. Refusals are answered on the spot
// without waiting for the CLI; what cannot be answered is logged, at a
// bounded rate.
type gatewayActor struct {
	env               *env
	runDir, spool     string
	adminGID          int
	installer, syncer *actor.PID
	query, admin      *fifo.Listener
	inFlight          int
	byUID             map[int]int         // requests in flight by uid
	uidOf             map[string]inFlight // by request actor's id
	book              *fifo.Ledger
	stopCleaner       context.CancelFunc
	warn              warnLimiter
	dirWarn           warnLimiter   // of tokens refused for their uid's directories
	linger            time.Duration // of a request's actor after its final reply
	hooks             gatewayHooks
}

// gatewayHooks let a test hold the spool's removals (nil: none) and
// shorten the grace of directories without a token (0: tokenGrace).
type gatewayHooks struct {
	oldSpools func(context.Context)                   // before the old spools are removed
	remove    func(ctx context.Context, token string) // before each directory the cleaner removes
	grace     time.Duration
}

type inFlight struct {
	uid   int
	token string
}

// arrivals is what a FIFO's reader made of one read.
type arrivals struct {
	admin bool
	junk  int // bytes that were no token
	items []arrival
}

type arrival struct {
	token string
	in    *fifo.Incoming // nil when nobody can be answered
	err   error
}

// taken answers arrivals: the reader may read on.
type taken struct{}

// spoolSwept is what a round of the cleaner's sweep did.
type spoolSwept struct{ report fifo.SweepReport }

// takeWait bounds a reader's wait for the gateway to take a read; past it
// the reader reads on, so a stopping gateway never holds it.
const takeWait = time.Second

func (a *gatewayActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		a.byUID, a.uidOf = map[int]int{}, map[string]inFlight{}
		ctx.Send(ctx.Parent(), &messages.Ready{Component: Gateway, Err: a.open(ctx)})
	case *actor.Stopping, *actor.Restarting:
		a.close()
	case *messages.RestartFailed:
		restartFailed(Gateway, msg)
	case *arrivals:
		a.arrived(ctx, msg)
		ctx.Respond(&taken{})
	case *messages.RequestAnswered: // its final reply is written; it lingers a little
		a.release(msg.ID)
	case *spoolSwept:
		a.swept(msg.report)
	case *actor.Terminated: // a request's actor finished
		a.release(msg.Who.Id)
	}
}

// release frees the slot of the request whose actor is id, once.
func (a *gatewayActor) release(id string) {
	f, ok := a.uidOf[id]
	if !ok {
		return
	}
	delete(a.uidOf, id)
	a.inFlight--
	if a.byUID[f.uid]--; a.byUID[f.uid] <= 0 {
		delete(a.byUID, f.uid)
	}
	// The final reply is written (or nobody is left to read it): the
	// request's directory goes.
	a.book.Remove(f.token)
}

func (a *gatewayActor) open(ctx actor.Context) error {
	spool, err := fifo.MakeSpool(a.runDir)
	if err != nil {
		return err
	}
	a.spool = spool
	// What a predecessor left in the spool was set aside; it is removed in
	// the background, so that no start waits for what users left there.
	cctx, cancel := context.WithCancel(context.Background())
	a.stopCleaner = cancel
	a.book = fifo.NewLedger(maxDirsUID, maxUncounted)
	book, log, runDir, hooks := a.book, a.env.log, a.runDir, a.hooks
	a.env.bg.Go(func() {
		if hooks.oldSpools != nil {
			hooks.oldSpools(cctx)
		}
		if err := fifo.RemoveOldSpools(cctx, runDir); err != nil && cctx.Err() == nil {
			log.Warn("left what users left in an old spool", "err", err)
		}
	})
	self, root := ctx.Self(), ctx.ActorSystem().Root
	swept := func(r fifo.SweepReport) { root.Send(self, &spoolSwept{report: r}) }
	a.env.bg.Go(func() { book.Clean(cctx, spool, cleanerConfig(log, hooks, swept)) })
	adminPerm, gid := os.FileMode(0o600), -1
	if a.adminGID >= 0 {
		adminPerm, gid = 0o620, a.adminGID
	}
	q, err := fifo.Listen(fifo.Path(a.runDir, false), 0o622, -1)
	if err != nil {
		return err
	}
	ad, err := fifo.Listen(fifo.Path(a.runDir, true), adminPerm, gid)
	if err != nil {
		q.Close()
		return err
	}
	a.query, a.admin = q, ad
	for _, l := range []struct {
		l     *fifo.Listener
		admin bool
	}{{q, false}, {ad, true}} {
		a.env.bg.Go(func() {
			for {
				tokens, junk, err := l.l.Next()
				if err != nil {
					return // closed: the actor stops or restarts
				}
				batch := &arrivals{admin: l.admin, junk: junk}
				for _, tok := range tokens {
					batch.items = append(batch.items, accept(spool, tok, book))
				}
				// One read at a time: a flood fills the FIFO, not the
				// daemon's memory, and its writers wait.
				root.RequestFuture(self, batch, takeWait).Wait()
			}
		})
	}
	return nil
}

// tooManyDirs refuses a token whose uid has its fill of directories in
// the spool; its text is what the CLI is told.
type tooManyDirs struct{ uid, n int }

func (e tooManyDirs) Error() string {
	return fmt.Sprintf("tpmd is busy: uid %d has %d request directories in the spool, the most it may; wait for your requests to finish and try again", e.uid, e.n)
}

// accept takes the request that tok names once its owner may have one
// more directory in the spool; a directory that is refused, or whose
// request nobody can be told of, is removed.
func accept(spool, tok string, book *fifo.Ledger) arrival {
	uid, err := fifo.Owner(spool, tok)
	if err != nil {
		return arrival{token: tok, err: err}
	}
	n, admitted := book.Admit(tok, uid)
	in, err := fifo.Accept(spool, tok, wire.MaxRequest, replyTimeout)
	if !admitted {
		// Refused, but told so when its reply FIFO opens (as a refusal
		// for requests in flight is): a CLI is not left to wait.
		err = tooManyDirs{uid: uid, n: n}
	}
	if in == nil || !admitted {
		book.Remove(tok)
	}
	return arrival{token: tok, in: in, err: err}
}

func (a *gatewayActor) close() {
	if a.stopCleaner != nil {
		a.stopCleaner()
		a.stopCleaner = nil
	}
	for _, l := range []*fifo.Listener{a.query, a.admin} {
		if l != nil {
			l.Close()
		}
	}
	a.query, a.admin = nil, nil
}

func (a *gatewayActor) arrived(ctx actor.Context, msg *arrivals) {
	which, verbs := fifo.QueryFIFO, wire.QueryVerbs
	if msg.admin {
		which, verbs = fifo.AdminFIFO, wire.AdminVerbs
	}
	if msg.junk > 0 {
		a.warning("ignored bytes that name no request", "fifo", which, "bytes", msg.junk)
	}
	for _, it := range msg.items {
		if it.in == nil && errors.As(it.err, new(tooManyDirs)) {
			// Nobody can be told (its reply FIFO did not open); logged
			// apart, so a flood of other warnings does not hide it.
			if dropped, ok := a.dirWarn.allow(time.Now()); ok {
				a.env.log.Warn("refused a token: its uid has too many request directories in the spool", "fifo", which, "err", it.err, "warnings_dropped", dropped)
			}
			continue
		}
		if it.in == nil {
			a.warning("refused a request nobody can be told of", "fifo", which, "err", it.err)
			continue
		}
		in := it.in
		if errors.As(it.err, new(tooManyDirs)) {
			// Logged apart too, so a flood of other warnings does not hide
			// why.
			if dropped, ok := a.dirWarn.allow(time.Now()); ok {
				a.env.log.Warn("refused a token: its uid has too many request directories in the spool", "fifo", which, "uid", in.UID, "warnings_dropped", dropped)
			}
		}
		if it.err != nil {
			a.refuse(in, which, it.err.Error())
			continue
		}
		req, err := wire.ParseRequest(in.Request, verbs)
		if err != nil {
			a.refuse(in, which, err.Error())
			continue
		}
		if msg.admin && in.UID != 0 && (a.adminGID < 0 || in.GID != a.adminGID) {
			a.refuse(in, which, "you may not ask tpmd to change this host: run tpm as root or as a member of tpmd's --admin-group")
			continue
		}
		if a.byUID[in.UID] >= maxInFlightUID || (a.inFlight >= maxInFlight && in.UID != 0) {
			a.refuse(in, which, fmt.Sprintf("tpmd is busy: uid %d has %d requests in flight and all users %d; wait for them to finish and try again", in.UID, a.byUID[in.UID], a.inFlight))
			continue
		}
		req.ID, req.UID = in.Token, in.UID
		a.dispatch(ctx, which, req, in.Reply)
	}
}

func (a *gatewayActor) dispatch(ctx actor.Context, which string, req *wire.Request, w *fifo.ReplyWriter) {
	log := a.env.log
	a.inFlight++
	a.byUID[req.UID]++
	rep := ctx.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return &requestActor{id: req.ID, w: w, log: log, aliveEvery: wire.AliveEvery, linger: a.linger}
	}))
	a.uidOf[rep.Id] = inFlight{uid: req.UID, token: req.ID}
	if wire.IsAdmin(req.Verb) {
		// Every change to the host says who asked for it.
		log.Info("request", "fifo", which, "uid", req.UID, "verb", req.Verb, "args", req.Args, "prefix", req.Prefix)
	} else {
		log.Debug("request", "fifo", which, "uid", req.UID, "verb", req.Verb, "args", req.Args)
	}
	if req.Verb == wire.VerbSync {
		ctx.RequestWithCustomSender(a.syncer, &messages.SyncNow{}, rep)
		return
	}
	ctx.RequestWithCustomSender(a.installer, req, rep)
}

// refuse answers a request with an error, if its CLI has room to take it
// now, and closes its reply FIFO: the gateway never waits for a CLI.
func (a *gatewayActor) refuse(in *fifo.Incoming, which, why string) {
	a.warning("refused a request", "fifo", which, "uid", in.UID, "err", why)
	r := wire.Failure(why)
	r.ID = in.Token
	if b, err := json.Marshal(r); err == nil {
		in.Reply.TryLine(b)
	}
	in.Reply.Close()
	a.book.Remove(in.Token)
}

// cleanerConfig is how the gateway's cleaner runs: the spool's bounds,
// its warnings at the gateway's bounded rate, and each round of its sweep
// told to the gateway.
func cleanerConfig(log *slog.Logger, hooks gatewayHooks, swept func(fifo.SweepReport)) fifo.CleanConfig {
	var warn warnLimiter // the cleaner's goroutine alone uses it
	grace := tokenGrace
	if hooks.grace > 0 {
		grace = hooks.grace
	}
	return fifo.CleanConfig{
		Sweep:      fifo.SweepConfig{Grace: grace, MaxYoungUID: maxYoungUID, MaxYoung: maxYoung},
		SweepEvery: grace / 4, CheckEvery: checkEvery, Pressure: sweepPressure,
		BeforeRemove: hooks.remove, Swept: swept,
		Warn: func(msg string, args ...any) {
			if dropped, ok := warn.allow(time.Now()); ok {
				if dropped > 0 {
					args = append(args, "warnings_dropped", dropped)
				}
				log.Warn(msg, args...)
			}
		},
	}
}

// swept logs what a round of the sweep removed: a flood (directories over
// the bounds) as a warning, at the rate of the spool's, naming its uids.
func (a *gatewayActor) swept(r fifo.SweepReport) {
	args := []any{"removed", r.Removed, "over_bounds", r.OverBound, "by_uid", r.ByUID, "examined", r.Examined, "took", r.Took}
	switch {
	case r.OverBound > 0:
		if dropped, ok := a.dirWarn.allow(time.Now()); ok {
			a.env.log.Warn("removed request directories that no token named: a user makes more than tpm does", append(args, "warnings_dropped", dropped)...)
		}
	case r.Removed > 0:
		a.env.log.Info("removed request directories whose token never came", args...)
	}
	if r.Err != nil {
		a.warning("left request directories that no token named in the spool", "failed", r.Failed, "err", r.Err)
	}
}

// warning logs, at most warnBurst times in warnWindow; what is dropped
// is counted in the next one.
func (a *gatewayActor) warning(msg string, args ...any) {
	dropped, ok := a.warn.allow(time.Now())
	if !ok {
		return
	}
	if dropped > 0 {
		args = append(args, "warnings_dropped", dropped)
	}
	a.env.log.Warn(msg, args...)
}

const (
	warnWindow = 10 * time.Second
	warnBurst  = 10
)

// warnLimiter counts warnings in fixed windows.
type warnLimiter struct {
	start   time.Time
	n       int
	dropped int // since the last warning logged
}

// allow says whether a warning at now may be logged, and how many were
// dropped before it.
func (w *warnLimiter) allow(now time.Time) (dropped int, ok bool) {
	if now.Sub(w.start) >= warnWindow {
		w.start, w.n = now, 0
	}
	if w.n >= warnBurst {
		w.dropped++
		return 0, false
	}
	w.n++
	dropped, w.dropped = w.dropped, 0
	return dropped, true
}

// requestActor writes one request's replies to its reply FIFO, which the
// gateway accepted and opened. It says the request is alive when nothing
// else was said for wire.AliveEvery, stops after the final reply, or
// when the CLI is gone; whoever works for the request watches it to know
// the CLI left.
type requestActor struct {
	id         string
	log        *slog.Logger
	w          *fifo.ReplyWriter
	aliveEvery time.Duration
	linger     time.Duration
	lastWrite  time.Time
	stopAlive  scheduler.CancelFunc
	finished   bool // the final reply was sent, or nothing more can be
	stopping   bool
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
// took 0.59 ms instead of 0.50 (test/bench/client). A lingering actor no
// longer counts against the bounds in flight (counted, it made a client
// asking 100 questions in a row hit the limit of 16); it only waits, and
// there are at most as many as requests answered in 20 ms.
const linger = 20 * time.Millisecond

// stopNow ends a request's actor that lingered; aliveTick checks whether
// the CLI heard anything lately.
type (
	stopNow   struct{}
	aliveTick struct{}
)

func (a *requestActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		a.lastWrite = time.Now()
		a.stopAlive = scheduler.NewTimerScheduler(ctx.ActorSystem().Root).SendRepeatedly(a.aliveEvery, a.aliveEvery, ctx.Self(), &aliveTick{})
	case *wire.Reply:
		a.send(ctx, msg)
	case *messages.Part:
		a.send(ctx, msg.Reply)
		ctx.Respond(&messages.PartWritten{Gone: a.finished})
	case *aliveTick:
		if !a.finished && time.Since(a.lastWrite) >= a.aliveEvery {
			a.send(ctx, &wire.Reply{Type: wire.ReplyAlive})
		}
	case *stopNow:
		ctx.Stop(ctx.Self())
	case *actor.Stopping:
		a.stopAlive()
		if !a.finished {
			// The daemon may be stopping, within its 5 s: a CLI that does
			// not read gets a short chance only.
			a.finished, a.stopping = true, true
			a.write(wire.Failure("tpmd stopped answering this request (it is stopping, or one of its parts restarted): check with tpm status and tpm list, then run the command again"))
		}
		a.w.Close()
	}
}

func (a *requestActor) send(ctx actor.Context, r *wire.Reply) {
	if a.finished {
		return
	}
	if err := a.write(r); err != nil {
		a.log.Debug("reply not delivered: the CLI went away", "id", a.id, "err", err)
		a.finished = true
		ctx.Stop(ctx.Self())
		return
	}
	if r.Final() {
		a.finished = true
		a.stopAlive()
		ctx.Send(ctx.Parent(), &messages.RequestAnswered{ID: ctx.Self().Id})
		scheduler.NewTimerScheduler(ctx.ActorSystem().Root).SendOnce(a.linger, ctx.Self(), &stopNow{})
	}
}

func (a *requestActor) write(r *wire.Reply) error {
	if a.stopping {
		a.w.SetTimeout(stopWriteTimeout)
	}
	line := *r // the same reply may go to others: stamp a copy
	line.ID = a.id
	b, err := json.Marshal(&line)
	if err != nil {
		return fmt.Errorf("reply: %w", err)
	}
	a.lastWrite = time.Now()
	return a.w.WriteLine(b)
}

// errGone is what a goroutine sending parts learns when the CLI left.
var errGone = errors.New("the CLI went away")

// sendPart sends one part of a long result to a request's actor and waits
// until it is written.
func sendPart(root *actor.RootContext, to *actor.PID, r *wire.Reply) error {
	res, err := root.RequestFuture(to, &messages.Part{Reply: r}, replyTimeout+time.Second).Result()
	if err != nil {
		return fmt.Errorf("%w: %w", errGone, err)
	}
	if w, ok := res.(*messages.PartWritten); !ok || w.Gone {
		return errGone
	}
	return nil
}
