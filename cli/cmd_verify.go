package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"tpm/local"
	"tpm/messages/wire"
)

// verifyOptions are the flags of tpm verify: none of its own.
type verifyOptions struct{}

func (o *verifyOptions) AddFlags(fs *pflag.FlagSet) {}

func (o *verifyOptions) run(ctx context.Context, c *command, names []string) error {
	problems, err := ask(ctx, c, wire.Request{Verb: wire.VerbVerify, Args: names}, func(cl *local.Client) ([]wire.Problem, error) { return cl.Verify(ctx, names) })
	if err != nil {
		return err
	}
	err = c.view.result(problems, func(w io.Writer) error {
		for _, p := range problems {
			fmt.Fprintf(w, "%s: %s %s (%s)\n", p.Package, p.Kind, p.Path, p.Detail)
		}
		if len(problems) == 0 {
			fmt.Fprintln(w, "no problems found")
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Problems are the answer, and a failure too: the exit status says so
	// (and with --json an error reply follows the result).
	if len(problems) > 0 {
		return fmt.Errorf("%d problem(s) found: reinstall the packages named above (tpm install --reinstall)", len(problems))
	}
	return nil
}
