package cli

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/pflag"

	"tpm/engine"
	"tpm/local"
	"tpm/messages/wire"
	"tpm/query"
)

// ownsOptions are the flags of tpm owns: none of its own.
type ownsOptions struct{}

func (o *ownsOptions) AddFlags(fs *pflag.FlagSet) {}

func (o *ownsOptions) run(ctx context.Context, c *command, paths []string) error {
	if len(paths) == 0 {
		return usagef("name at least one path")
	}
	// Relative to where tpm runs, which the daemon does not know.
	var abs []string
	for _, p := range paths {
		a, err := filepath.Abs(p)
		if err != nil {
			return err
		}
		abs = append(abs, a)
	}
	var rows []wire.Owner
	var err error
	if c.g.offline {
		rows, err = offlineQuery(ctx, c, func(e *engine.Engine, prefix string) ([]wire.Owner, error) {
			return query.Owns(e, prefix, abs)
		})
	} else {
		rows, err = daemonQuery(c, func(cl *local.Client) ([]wire.Owner, error) { return cl.Owns(ctx, abs) })
	}
	if err != nil {
		return err
	}
	return c.view.result(rows, func(w io.Writer) error {
		for _, r := range rows {
			fmt.Fprintf(w, "%s is owned by %s %s\n", r.Path, r.Name, r.Version)
		}
		return nil
	})
}
