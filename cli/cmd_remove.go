package cli

import (
	"context"

	"github.com/spf13/pflag"

	"tpm/engine"
	"tpm/messages/wire"
)

// removeOptions are the flags of tpm remove.
type removeOptions struct {
	cascade       bool
	autoremove    bool
	scriptTimeout string
}

func (o *removeOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.cascade, "cascade", false, "also remove the packages that need them")
	fs.BoolVar(&o.autoremove, "autoremove", false, "also remove the packages installed as dependencies that nothing left needs")
	fs.StringVar(&o.scriptTimeout, "script-timeout", "5m", "time limit for each package script")
}

func (o *removeOptions) run(ctx context.Context, c *command, names []string) error {
	if len(names) == 0 {
		return usagef("name at least one installed package")
	}
	opts := wire.Options{Cascade: o.cascade, Autoremove: o.autoremove}
	if !c.g.offline {
		return removeDaemon(ctx, c, wire.VerbRemove, names, opts)
	}
	return removeOffline(ctx, c, o.scriptTimeout, wire.VerbRemove, names, engine.RemoveRequest{
		Prefix: c.g.prefix, Names: names, Cascade: o.cascade, Autoremove: o.autoremove})
}

// removeDaemon is remove and autoremove through tpmd. A removal that may
// take away what was not named (--cascade, autoremove) asks tpmd for its
// plan first and, as --offline does, shows it and asks when it does; the
// removal is then pinned to that plan. A plain remove needs no plan: tpmd
// refuses to remove what others need.
func removeDaemon(ctx context.Context, c *command, verb string, names []string, opts wire.Options) error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	auto := opts.Autoremove || verb == wire.VerbAutoremove
	var expect map[string]string
	if auto || opts.Cascade {
		plan, err := cl.Plan(ctx, names, wire.Options{Remove: true, Autoremove: auto, Cascade: opts.Cascade})
		if err != nil {
			return err
		}
		if len(plan.Plan) == 0 {
			return nothingUnneeded(c)
		}
		if expect, err = c.confirmMore(plan.Plan, false); err != nil {
			return err
		}
	}
	return c.daemonTransaction(func(each func(*wire.Reply) error) ([]wire.OpResult, error) {
		if verb == wire.VerbAutoremove {
			return cl.Autoremove(ctx, expect, each)
		}
		return cl.Remove(ctx, names, opts, expect, each)
	})
}

// nothingUnneeded ends an autoremove that finds nothing to remove.
func nothingUnneeded(c *command) error {
	if err := c.view.reply(&wire.Reply{Type: wire.ReplyLog, Text: "nothing to do: no package is unneeded"}); err != nil {
		return err
	}
	return c.view.opResults(nil)
}

// removeOffline is remove and autoremove with the engine.
func removeOffline(ctx context.Context, c *command, scriptTimeout, verb string, args []string, req engine.RemoveRequest) error {
	e, err := c.openEngine(ctx, engineOptions{scriptTimeout: scriptTimeout})
	if err != nil {
		return err
	}
	defer e.Close()
	plan, err := e.PrepareRemoval(ctx, req)
	if err != nil {
		return err
	}
	if len(plan.Ops) == 0 && req.Autoremove {
		return nothingUnneeded(c)
	}
	return c.applyOffline(ctx, e, plan, historyTag(verb, args))
}
