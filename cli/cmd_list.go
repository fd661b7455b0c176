package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"tpm/local"
	"tpm/messages/wire"
)

// listOptions are the flags of tpm list: none of its own.
type listOptions struct{}

func (o *listOptions) AddFlags(fs *pflag.FlagSet) {}

func (o *listOptions) run(ctx context.Context, c *command, args []string) error {
	if len(args) > 0 {
		return usagef("list takes no arguments")
	}
	rows, err := ask(ctx, c, wire.Request{Verb: wire.VerbList}, func(cl *local.Client) ([]wire.InstalledPackage, error) { return cl.List(ctx) })
	if err != nil {
		return err
	}
	return c.view.result(rows, func(w io.Writer) error {
		tw := table(w)
		for _, r := range rows {
			if r.Held {
				fmt.Fprintf(tw, "%s\t%s\t%s\theld\n", r.Name, r.Version, r.Reason)
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Name, r.Version, r.Reason)
		}
		return tw.Flush()
	})
}
