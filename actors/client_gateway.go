package actors

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/asynkron/protoactor-go/actor"

	"tpm/fifo"
	"tpm/messages"
)

// FIFO names in the run directory.
const (
	QueryFIFO = "query.fifo"
	AdminFIFO = "admin.fifo"
	QueryLock = "query.lock"
	AdminLock = "admin.lock"
)

// gatewayActor owns the two request FIFOs. A goroutine per FIFO reads lines
// and sends them here; each is parsed with its FIFO's verb list and routed:
// queries are answered on goroutines of their own (so they are answered
// while a transaction runs), sync goes to the syncer, the rest to the
// installer. Bad lines get an error reply when they name a reply FIFO, and
// are logged; the gateway keeps serving.
type gatewayActor struct {
	c            *Client
	query, admin *fifo.Listener
}

func (a *gatewayActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		err := a.open(ctx)
		if a.c.markStarted(Gateway) {
			a.c.ready <- readyMsg{Gateway, err}
		} else if err != nil {
			panic(fmt.Errorf("gateway: %w", err))
		}
	case *actor.Stopping, *actor.Restarting:
		a.close()
	case *messages.FifoLine:
		a.handle(ctx, msg)
	case *messages.Crash:
		panic("gateway: " + msg.Reason)
	}
}

func (a *gatewayActor) open(ctx actor.Context) error {
	cfg := a.c.cfg
	adminPerm, gid := os.FileMode(0o600), -1
	if cfg.AdminGID >= 0 {
		adminPerm, gid = 0o620, cfg.AdminGID
	}
	for _, l := range []struct {
		name string
		perm os.FileMode
	}{{QueryLock, 0o644}, {AdminLock, 0o644}} {
		if err := fifo.MakeLockFile(filepath.Join(cfg.RunDir, l.name), l.perm); err != nil {
			return err
		}
	}
	q, err := fifo.Listen(filepath.Join(cfg.RunDir, QueryFIFO), 0o622, -1, messages.MaxRequest)
	if err != nil {
		return err
	}
	ad, err := fifo.Listen(filepath.Join(cfg.RunDir, AdminFIFO), adminPerm, gid, messages.MaxRequest)
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
		a.c.goBG(func() {
			for {
				line, err := l.l.ReadLine()
				if errors.Is(err, fifo.ErrTooLong) {
					root.Send(self, &messages.FifoLine{Admin: l.admin, Err: err})
					continue
				}
				if err != nil {
					return // closed: the actor stops or restarts
				}
				root.Send(self, &messages.FifoLine{Admin: l.admin, Line: line})
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

func (a *gatewayActor) handle(ctx actor.Context, msg *messages.FifoLine) {
	which, verbs := QueryFIFO, messages.QueryVerbs
	if msg.Admin {
		which, verbs = AdminFIFO, messages.AdminVerbs
	}
	if msg.Err != nil {
		// Nothing of the line was kept, so there is nobody to answer.
		a.c.log.Warn("refused a request", "fifo", which, "err", fmt.Sprintf("longer than %d bytes", messages.MaxRequest))
		return
	}
	req, err := messages.ParseRequest(msg.Line, verbs)
	if req == nil {
		a.c.log.Warn("refused a request", "fifo", which, "err", err)
		return
	}
	rep := newReplier(req.ID, req.Reply, a.c.log)
	if err != nil {
		if !msg.Admin && contains(messages.AdminVerbs, req.Verb) {
			err = fmt.Errorf("%s changes the host: it must be sent to %s (as root or the admin group)", req.Verb, AdminFIFO)
		}
		a.c.log.Warn("refused a request", "fifo", which, "id", req.ID, "err", err)
		a.c.goBG(func() { sendResult(rep, nil, err) })
		return
	}
	a.c.log.Debug("request", "fifo", which, "id", req.ID, "verb", req.Verb, "args", req.Args)
	switch req.Verb {
	case "sync":
		ctx.Send(a.c.child(Syncer), &messages.SyncNow{Reply: rep})
	case "install", "upgrade", "remove":
		ctx.Send(a.c.child(Installer), &messages.AdminRequest{Req: req, Reply: rep})
	default:
		a.c.goBG(func() {
			defer func() {
				if p := recover(); p != nil {
					a.c.log.Error("query failed", "verb", req.Verb, "panic", fmt.Sprint(p))
					sendResult(rep, nil, fmt.Errorf("the daemon failed answering %s (%v); it keeps running — try again", req.Verb, p))
				}
			}()
			data, err := a.c.query(a.c.stopCtx, req, rep)
			sendResult(rep, data, err)
		})
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
