package cli

import (
	"context"

	"github.com/spf13/pflag"

	"tpm/engine"
	"tpm/messages/wire"
)

// autoremoveOptions are the flags of tpm autoremove.
type autoremoveOptions struct {
	scriptTimeout string
}

func (o *autoremoveOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.scriptTimeout, "script-timeout", "5m", "time limit for each package script")
}

// run removes what was installed as a dependency and nothing installed
// needs any more: the plan, a question (-y answers it), the removal.
func (o *autoremoveOptions) run(ctx context.Context, c *command, args []string) error {
	if len(args) > 0 {
		return usagef("autoremove takes no names (tpm remove --autoremove NAME... removes names too)")
	}
	if !c.g.offline {
		return removeDaemon(ctx, c, wire.VerbAutoremove, nil, wire.Options{})
	}
	return removeOffline(ctx, c, o.scriptTimeout, wire.VerbAutoremove, nil, engine.RemoveRequest{Prefix: c.g.prefix, Autoremove: true})
}
