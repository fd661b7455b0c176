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

// markOptions are the flags of tpm mark, hold and unhold: none of their
// own. verb says which of them runs.
type markOptions struct{ verb string }

func (o *markOptions) AddFlags(fs *pflag.FlagSet) {}

// run sets a mark on installed packages, through tpmd (an admin request,
// in line with its transactions) or with the engine: all or none.
func (o *markOptions) run(ctx context.Context, c *command, args []string) error {
	req := wire.Request{Verb: o.verb, Args: args}
	m, names, err := query.MarkOf(&req)
	if err != nil {
		return usagef("%v", err)
	}
	if len(names) == 0 {
		return usagef("name at least one installed package")
	}
	var rows []wire.Marked
	if c.g.offline {
		rows, err = markOffline(ctx, c, m, names)
	} else {
		rows, err = daemonQuery(c, func(cl *local.Client) ([]wire.Marked, error) { return cl.Mark(ctx, o.verb, args) })
	}
	if err != nil {
		return err
	}
	return c.view.result(rows, func(w io.Writer) error {
		for _, r := range rows {
			state := markWords(r.Mark)
			if r.Changed {
				fmt.Fprintf(w, "%s %s %s\n", r.Name, r.Version, state[0])
			} else {
				fmt.Fprintf(w, "%s %s %s\n", r.Name, r.Version, state[1])
			}
		}
		return nil
	})
}

// markWords say, for a mark, that it was set and that it was so already.
func markWords(mark string) [2]string {
	switch mark {
	case "auto":
		return [2]string{"marked auto (autoremove takes it once nothing needs it)", "was already auto"}
	case "manual":
		return [2]string{"marked manual", "was already manual"}
	case "hold":
		return [2]string{"held", "was already held"}
	}
	return [2]string{"no longer held", "was not held"}
}

func markOffline(ctx context.Context, c *command, m engine.Mark, names []string) ([]wire.Marked, error) {
	e, err := c.openEngine(ctx, engineOptions{})
	if err != nil {
		return nil, err
	}
	defer e.Close()
	res, err := e.SetMark(c.g.prefix, names, m)
	if err != nil {
		return nil, err
	}
	return query.Marked(res), nil
}
