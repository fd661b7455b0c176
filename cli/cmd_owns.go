package cli

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/pflag"

	"tpm/local"
	"tpm/messages/wire"
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
	rows, err := ask(ctx, c, wire.Request{Verb: wire.VerbOwns, Args: abs}, func(cl *local.Client) ([]wire.Owner, error) { return cl.Owns(ctx, abs) })
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
