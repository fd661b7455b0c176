package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"tpm/local"
	"tpm/messages/wire"
)

// filesOptions are the flags of tpm files: none of its own.
type filesOptions struct{}

func (o *filesOptions) AddFlags(fs *pflag.FlagSet) {}

func (o *filesOptions) run(ctx context.Context, c *command, names []string) error {
	if len(names) == 0 {
		return usagef("name at least one installed package")
	}
	rows, err := ask(ctx, c, wire.Request{Verb: wire.VerbFiles, Args: names}, func(cl *local.Client) ([]wire.PackageFile, error) { return cl.Files(ctx, names) })
	if err != nil {
		return err
	}
	return c.view.result(rows, func(w io.Writer) error {
		for _, r := range rows {
			if r.Type == "dir" {
				r.Path += "/"
			}
			fmt.Fprintln(w, r.Path)
		}
		return nil
	})
}
