package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"tpm/messages/wire"
	"tpm/signing"
)

// keygenOptions are the flags of tpm keygen.
type keygenOptions struct {
	output string
	force  bool
}

func (o *keygenOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVarP(&o.output, "output", "o", systemKeyDir, "folder for repo.key and repo.pub")
	fs.BoolVar(&o.force, "force", false, "replace an existing key pair")
}

// run needs no daemon and no state: it works the same with --offline.
func (o *keygenOptions) run(ctx context.Context, c *command, args []string) error {
	if len(args) > 0 {
		return usagef("keygen takes no arguments; use -o DIR")
	}
	if err := c.guard("output", o.output, systemKeyDir); err != nil {
		return err
	}
	key, pub, err := signing.Keygen(o.output, o.force)
	if err != nil {
		return err
	}
	return c.view.result(wire.KeyPair{Key: key, Public: pub}, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "wrote %s (keep it secret) and %s (give it to clients)\n", key, pub)
		return err
	})
}
