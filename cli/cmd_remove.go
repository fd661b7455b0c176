package cli

import (
	"context"

	"github.com/spf13/pflag"

	"tpm/messages/wire"
)

// removeOptions are the flags of tpm remove.
type removeOptions struct {
	cascade       bool
	scriptTimeout string
}

func (o *removeOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.cascade, "cascade", false, "also remove the packages that need them")
	fs.StringVar(&o.scriptTimeout, "script-timeout", "5m", "time limit for each package script")
}

func (o *removeOptions) run(ctx context.Context, c *command, names []string) error {
	if len(names) == 0 {
		return usagef("name at least one installed package")
	}
	if !c.g.offline {
		// No question here, unlike --offline: tpmd refuses to remove what
		// others need, and --cascade is the consent to remove them too.
		cl, err := c.client()
		if err != nil {
			return err
		}
		return c.daemonTransaction(func(each func(*wire.Reply) error) ([]wire.OpResult, error) {
			return cl.Remove(ctx, names, wire.Options{Cascade: o.cascade}, each)
		})
	}
	e, err := c.openEngine(ctx, engineOptions{scriptTimeout: o.scriptTimeout})
	if err != nil {
		return err
	}
	defer e.Close()
	plan, err := e.PrepareRemove(ctx, c.g.prefix, names, o.cascade)
	if err != nil {
		return err
	}
	return c.applyOffline(ctx, e, plan)
}
