package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/pflag"

	"tpm/messages/wire"
	"tpm/tarball"
)

// packOptions are the flags of tpm pack.
type packOptions struct {
	output string
}

func (o *packOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVarP(&o.output, "output", "o", ".", "folder to write the package to")
}

// run needs no daemon and no state: it works the same with --offline.
func (o *packOptions) run(ctx context.Context, c *command, args []string) error {
	if len(args) != 1 {
		return usagef("name exactly one package folder (with info/ and data/)")
	}
	var opts tarball.PackOptions
	if s := c.env.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		secs, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a number of seconds", s)
		}
		t := time.Unix(secs, 0)
		opts.Clamp = &t
	}
	out, m, err := tarball.PackFile(args[0], o.output, opts)
	if err != nil {
		return err
	}
	packed := wire.Packed{File: out, Name: m.Name, Version: m.Version, Architecture: m.Architecture}
	return c.view.result(packed, func(w io.Writer) error {
		_, err := fmt.Fprintln(w, out)
		return err
	})
}
