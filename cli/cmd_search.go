package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"tpm/local"
	"tpm/messages/wire"
)

// searchOptions are the flags of tpm search: none of its own.
type searchOptions struct{}

func (o *searchOptions) AddFlags(fs *pflag.FlagSet) {}

// run asks tpmd: only it has the index, so there is no --offline path.
func (o *searchOptions) run(ctx context.Context, c *command, args []string) error {
	if len(args) != 1 {
		return usagef("give one word to search for")
	}
	if err := c.needDaemon("search"); err != nil {
		return err
	}
	rows, err := daemonQuery(c, func(cl *local.Client) ([]wire.SearchResult, error) { return cl.Search(ctx, args[0]) })
	if err != nil {
		return err
	}
	return c.view.result(rows, func(w io.Writer) error {
		if len(rows) == 0 {
			return fmt.Errorf("no package matches %q", args[0])
		}
		tw := table(w)
		for _, r := range rows {
			mark := ""
			if r.Installed != "" {
				mark = "[installed " + r.Installed + "]"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, r.Version, r.Description, mark)
		}
		return tw.Flush()
	})
}
