package cli

import (
	"context"

	"github.com/spf13/pflag"

	"tpm/engine"
	"tpm/messages/wire"
)

// upgradeOptions are the flags of tpm upgrade.
type upgradeOptions struct {
	engine         engineOptions
	allowDowngrade bool
}

func (o *upgradeOptions) AddFlags(fs *pflag.FlagSet) {
	o.engine.AddFlags(fs)
	fs.BoolVar(&o.allowDowngrade, "allow-downgrade", false, "allow replacing a package with an older version")
}

// run is install's way, asking for upgrades only: of the named packages,
// or through tpmd of every installed one when none is named.
func (o *upgradeOptions) run(ctx context.Context, c *command, args []string) error {
	c.view.verbose = o.engine.verbose
	if c.g.offline {
		return installOffline(ctx, c, o.engine, args, engine.Intent{UpgradeOnly: true, AllowDowngrade: o.allowDowngrade})
	}
	return installDaemon(ctx, c, wire.VerbUpgrade, args, wire.Options{AllowDowngrade: o.allowDowngrade})
}
