package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"tpm/engine"
	"tpm/local"
	"tpm/messages/wire"
	"tpm/query"
)

// listOptions are the flags of tpm list: none of its own.
type listOptions struct{}

func (o *listOptions) AddFlags(fs *pflag.FlagSet) {}

func (o *listOptions) run(ctx context.Context, c *command, args []string) error {
	if len(args) > 0 {
		return usagef("list takes no arguments")
	}
	var rows []wire.InstalledPackage
	var err error
	if c.g.offline {
		rows, err = offlineQuery(ctx, c, func(e *engine.Engine, prefix string) ([]wire.InstalledPackage, error) {
			return query.List(e, prefix)
		})
	} else {
		rows, err = daemonQuery(c, func(cl *local.Client) ([]wire.InstalledPackage, error) { return cl.List(ctx) })
	}
	if err != nil {
		return err
	}
	return c.view.result(rows, func(w io.Writer) error {
		tw := table(w)
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Name, r.Version, r.Reason)
		}
		return tw.Flush()
	})
}
