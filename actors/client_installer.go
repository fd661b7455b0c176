package actors

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"

	"tpm/engine"
	"tpm/messages"
	"tpm/store"
)

// installerActor takes install, upgrade and remove requests. Each runs on a
// goroutine of its own; the goroutines take the daemon's transaction lock,
// so transactions run one at a time (in the order the lock grants) while
// the actor stays free. The actor remembers the requests in flight: if it
// fails and its supervisor restarts it, each waiting CLI is told so.
type installerActor struct {
	c        *Client
	inFlight map[string]inFlight
}

type inFlight struct {
	reply  messages.Replier
	cancel context.CancelFunc
}

func (a *installerActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		a.inFlight = make(map[string]inFlight)
	case *actor.Restarting:
		// Downloads stop; a package being placed is finished by the engine
		// (never half-installed) but nothing after it starts.
		// The reply goes first: the cancelled transaction then finds it
		// sent and cannot answer with its own reason.
		for id, f := range a.inFlight {
			sendResult(f.reply, nil, errors.New("the daemon's installer failed and was restarted; what had not "+
				"started installing was cancelled: check with tpm list, then run the command again"))
			f.cancel()
			delete(a.inFlight, id)
		}
	case *messages.AdminRequest:
		key := fmt.Sprintf("%s/%p", msg.Req.ID, msg.Reply)
		tctx, cancel := context.WithCancel(a.c.stopCtx)
		a.inFlight[key] = inFlight{reply: msg.Reply, cancel: cancel}
		self, root := ctx.Self(), ctx.ActorSystem().Root
		a.c.goBG(func() {
			defer cancel()
			defer root.Send(self, &messages.TransactionDone{ID: key})
			defer func() {
				if p := recover(); p != nil {
					a.c.log.Error("transaction failed", "id", msg.Req.ID, "panic", fmt.Sprint(p))
					sendResult(msg.Reply, nil, fmt.Errorf("the daemon failed during %s (%v); check with tpm verify and run the command again", msg.Req.Verb, p))
				}
			}()
			data, err := a.c.transaction(tctx, msg.Req, msg.Reply)
			sendResult(msg.Reply, data, err)
		})
	case *messages.TransactionDone:
		if f, ok := a.inFlight[msg.ID]; ok {
			f.cancel()
			delete(a.inFlight, msg.ID)
		}
	case *messages.Crash:
		panic("installer: " + msg.Reason)
	}
}

func toResult(r engine.OpResult) messages.OpResult {
	w := r.Warnings
	if w == nil {
		w = []string{}
	}
	return messages.OpResult{Action: string(r.Action), Name: r.Name, Version: r.Version, OldVersion: r.OldVersion, Warnings: w}
}

// transaction runs one admin request under the transaction lock.
func (c *Client) transaction(ctx context.Context, req *messages.Request, rep messages.Replier) (any, error) {
	if !c.txMu.TryLock() {
		sendLog(rep, "waiting for another transaction to finish")
		locked := make(chan struct{})
		go func() { c.txMu.Lock(); close(locked) }()
		select {
		case <-locked:
		case <-ctx.Done():
			go func() { <-locked; c.txMu.Unlock() }()
			return nil, errors.New("the daemon is stopping; run the command again when it is back")
		}
	}
	defer c.txMu.Unlock()
	prefix, err := c.prefixOf(req)
	if err != nil {
		return nil, err
	}
	if req.Verb == "remove" {
		return c.remove(ctx, prefix, req, rep)
	}
	return c.install(ctx, prefix, req, rep)
}

func (c *Client) setInstalling(s string) { c.installing.Store(&s) }

func checkExpect(req *messages.Request, got map[string]string) error {
	if req.Expect == nil {
		return nil
	}
	if len(got) != len(req.Expect) {
		return errors.New("the index changed since the plan was shown; run the command again")
	}
	for n, v := range req.Expect {
		if got[n] != v {
			return errors.New("the index changed since the plan was shown; run the command again")
		}
	}
	return nil
}

func (c *Client) install(ctx context.Context, prefix string, req *messages.Request, rep messages.Replier) (_ any, err error) {
	idx := c.Index()
	p, err := c.plan(prefix, req, idx)
	if err != nil {
		return nil, err
	}
	got := map[string]string{}
	for _, x := range p.pkgs {
		got[x.entry.Name] = x.entry.Version
	}
	if err := checkExpect(req, got); err != nil {
		return nil, err
	}
	results := []messages.OpResult{}
	if len(p.pkgs) == 0 {
		sendLog(rep, "nothing to do: everything asked for is installed")
		return results, nil
	}
	if err := rep.Send(&messages.Reply{Type: messages.ReplyPlan, Plan: p.items()}); errors.Is(err, messages.ErrReplyGone) {
		return nil, err // nothing started: the CLI that asked is gone
	}
	installed, err := c.receipts(prefix)
	if err != nil {
		return nil, err
	}
	// Record every file before it arrives: a crash leaves records that the
	// next start reconciles with the receipts; a failure cleans up here.
	defer func() {
		if err != nil {
			for _, x := range p.pkgs {
				c.dropCache(x.entry.Name, x.entry.Version)
			}
		}
	}()
	for _, x := range p.pkgs {
		e := x.entry
		if err := c.records.Put(&store.CacheRecord{Name: e.Name, Version: e.Version, File: e.File, SHA256: e.SHA256,
			Size: e.Size, InfoHash: e.InfoHash, InfoBytes: e.InfoBytes}); err != nil {
			return nil, err
		}
	}

	// Downloads stop when the daemon stops, or when the CLI goes away
	// before anything was installed; once a package is in, the rest of the
	// transaction finishes whoever is listening.
	dlCtx, cancelDl := context.WithCancel(ctx)
	defer cancelDl()
	var started atomic.Bool
	go func() {
		select {
		case <-rep.Gone():
			if !started.Load() {
				cancelDl()
			}
		case <-dlCtx.Done():
		}
	}()
	done := make([]chan messages.DownloadResult, len(p.pkgs))
	for i, x := range p.pkgs {
		e := x.entry
		done[i] = make(chan messages.DownloadResult, 1)
		sf := seedFileOfEntry(e)
		name := e.Name
		c.system.Root.Send(c.child(Swarm), &messages.Download{
			Ctx: dlCtx, File: e.File, InfoHash: sf.InfoHash, InfoBytes: e.InfoBytes, SHA256: e.SHA256, Size: e.Size,
			Progress: func(b, total int64, rate float64, peers int) {
				rep.Send(&messages.Reply{Type: messages.ReplyProgress, Progress: &messages.Progress{
					Package: name, Stage: "download", Bytes: b, Total: total, Rate: rate, Peers: peers}})
			},
			Done: done[i],
		})
	}

	sink := &txSink{
		output: func(pkg, script, line string) {
			sendLog(rep, pkg+": "+script+": "+line)
		},
		applied: func(engine.OpResult) {},
	}
	c.setSink(sink)
	defer c.setSink(nil)
	defer c.setInstalling("")

	var installedNames []string
	partial := func(err error) error {
		if len(installedNames) == 0 {
			return err
		}
		return fmt.Errorf("%w (already installed: %s)", err, strings.Join(installedNames, ", "))
	}
	// Dependencies come first in the plan, so a package installs as soon as
	// it and everything before it are in.
	for i, x := range p.pkgs {
		e := x.entry
		var res messages.DownloadResult
		select {
		case res = <-done[i]:
		case <-dlCtx.Done():
			if rerr := ctx.Err(); rerr != nil {
				return nil, partial(errors.New("the daemon is stopping; nothing more was installed"))
			}
			return nil, partial(errors.New("cancelled: the CLI went away"))
		}
		if res.Err != nil {
			if dlCtx.Err() != nil && ctx.Err() == nil && !started.Load() {
				return nil, errors.New("cancelled: the CLI went away; nothing was installed")
			}
			return nil, partial(fmt.Errorf("download of %s failed: %v", e.Name, res.Err))
		}
		rep.Send(&messages.Reply{Type: messages.ReplyProgress, Progress: &messages.Progress{
			Package: e.Name, Stage: "verify", Bytes: e.Size, Total: e.Size}})
		reason := store.Dependency
		if x.requested {
			reason = store.Explicit
		}
		if r := installed[e.Name]; r != nil {
			reason = r.Reason // an upgrade keeps why the package is here
		}
		started.Store(true)
		c.setInstalling(e.Name)
		rep.Send(&messages.Reply{Type: messages.ReplyProgress, Progress: &messages.Progress{
			Package: e.Name, Stage: "install", Bytes: e.Size, Total: e.Size}})
		applyCtx := context.WithoutCancel(ctx) // never half-installed
		plan, skipped, err := c.engine.PlanInstall(applyCtx, engine.InstallRequest{
			Prefix: prefix, Archives: []engine.Archive{{Path: res.Path, Reason: reason}},
			UpgradeOnly: req.Verb == "upgrade", AllowDowngrade: req.Options["allow_downgrade"], Reinstall: req.Options["reinstall"],
		})
		if err != nil {
			return nil, partial(err)
		}
		for _, s := range skipped {
			sendLog(rep, fmt.Sprintf("%s %s: %s", s.Name, s.Version, s.Why))
		}
		ops, err := c.engine.Apply(applyCtx, plan)
		for _, r := range ops {
			results = append(results, toResult(r))
			installedNames = append(installedNames, r.Name)
		}
		if err != nil {
			if _, rerr := c.engine.Recover(applyCtx); rerr != nil {
				c.log.Error("recovering after a failed transaction", "err", rerr)
			}
			return nil, partial(err)
		}
		rep.Send(&messages.Reply{Type: messages.ReplyProgress, Progress: &messages.Progress{
			Package: e.Name, Stage: "done", Bytes: e.Size, Total: e.Size}})
		// The old version's file, if this was an upgrade, is no longer
		// needed by this prefix.
		if r := installed[e.Name]; r != nil && r.Version != e.Version {
			c.dropCache(r.Name, r.Version)
		}
	}
	return results, nil
}

func (c *Client) remove(ctx context.Context, prefix string, req *messages.Request, rep messages.Replier) (any, error) {
	if len(req.Args) == 0 {
		return nil, errors.New("remove takes package names: tpm remove NAME...")
	}
	plan, err := c.engine.PlanRemove(ctx, prefix, req.Args, req.Options["cascade"])
	if err != nil {
		return nil, err
	}
	got := map[string]string{}
	var items []messages.PlanItem
	for _, op := range plan.Ops {
		got[op.Name] = op.Version
		items = append(items, messages.PlanItem{Action: string(op.Action), Name: op.Name, Version: op.Version, OldVersion: op.OldVersion, Requested: op.Requested})
	}
	if err := checkExpect(req, got); err != nil {
		return nil, err
	}
	if err := rep.Send(&messages.Reply{Type: messages.ReplyPlan, Plan: items}); errors.Is(err, messages.ErrReplyGone) {
		return nil, err
	}
	c.setSink(&txSink{output: func(pkg, script, line string) { sendLog(rep, pkg+": "+script+": "+line) }, applied: func(engine.OpResult) {}})
	defer c.setSink(nil)
	c.setInstalling(strings.Join(req.Args, ", "))
	defer c.setInstalling("")
	applyCtx := context.WithoutCancel(ctx)
	ops, err := c.engine.Apply(applyCtx, plan)
	results := []messages.OpResult{}
	for _, r := range ops {
		results = append(results, toResult(r))
		c.dropCache(r.Name, r.Version)
	}
	if err != nil {
		if _, rerr := c.engine.Recover(applyCtx); rerr != nil {
			c.log.Error("recovering after a failed transaction", "err", rerr)
		}
		return nil, err
	}
	return results, nil
}

// dropCache stops seeding name's version and deletes its cache file,
// unless another prefix still has that version installed.
func (c *Client) dropCache(name, version string) {
	var still bool
	c.engine.DB().View(func(tx *store.Tx) error {
		rs, err := tx.AllReceipts()
		for _, r := range rs {
			still = still || (r.Name == name && r.Version == version)
		}
		return err
	})
	if still {
		return
	}
	recs, _ := c.records.All()
	var drop []messages.SeedFile
	for _, r := range recs {
		if r.Name == name && r.Version == version {
			if f, err := seedFileOf(r); err == nil {
				drop = append(drop, f)
			}
			c.records.Delete(r.File)
		}
	}
	sort.Slice(drop, func(i, j int) bool { return drop[i].File < drop[j].File })
	if len(drop) > 0 {
		c.system.Root.Send(c.child(Swarm), &messages.SeedFiles{Remove: drop})
	}
}
