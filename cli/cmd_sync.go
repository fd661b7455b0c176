package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"tpm/local"
	"tpm/messages/wire"
)

// syncOptions are the flags of tpm sync: none of its own.
type syncOptions struct{}

func (o *syncOptions) AddFlags(fs *pflag.FlagSet) {}

// run asks tpmd: the index is its own, so there is no --offline path.
func (o *syncOptions) run(ctx context.Context, c *command, args []string) error {
	if len(args) > 0 {
		return usagef("sync takes no arguments")
	}
	if err := c.needDaemon("sync"); err != nil {
		return err
	}
	res, err := daemonQuery(c, func(cl *local.Client) (wire.SyncResult, error) { return cl.Sync(ctx) })
	if err != nil {
		return err
	}
	return c.view.result(res, func(w io.Writer) error {
		if res.Changed {
			fmt.Fprintf(w, "index updated to generation %d\n", res.Generation)
		} else {
			fmt.Fprintf(w, "index is up to date (generation %d)\n", res.Generation)
		}
		return nil
	})
}
