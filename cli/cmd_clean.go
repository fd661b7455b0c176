package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"tpm/human"
	"tpm/local"
	"tpm/messages/wire"
)

// cleanOptions are the flags of tpm clean (none).
type cleanOptions struct{}

func (o *cleanOptions) AddFlags(*pflag.FlagSet) {}

// run drops from tpmd's cache every version no prefix has installed: those
// kept for undo (and tpm undo then needs the swarm or the repository).
func (o *cleanOptions) run(ctx context.Context, c *command, args []string) error {
	if len(args) > 0 {
		return usagef("clean takes no arguments")
	}
	if c.g.offline {
		return fmt.Errorf("clean works on tpmd's cache, and --offline has none: run it without --offline")
	}
	rows, err := daemonQuery(c, func(cl *local.Client) ([]wire.Cleaned, error) { return cl.Clean(ctx) })
	if err != nil {
		return err
	}
	return c.view.result(rows, func(w io.Writer) error {
		var total int64
		for _, r := range rows {
			fmt.Fprintf(w, "dropped %s %s (%s)\n", r.Name, r.Version, human.Bytes(r.Size))
			total += r.Size
		}
		fmt.Fprintf(w, "%d file(s), %s freed\n", len(rows), human.Bytes(total))
		return nil
	})
}
