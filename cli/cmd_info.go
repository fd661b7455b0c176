package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"tpm/human"
	"tpm/local"
	"tpm/messages/wire"
)

// infoOptions are the flags of tpm info: none of its own.
type infoOptions struct{}

func (o *infoOptions) AddFlags(fs *pflag.FlagSet) {}

// run asks tpmd: only it has the index, so there is no --offline path.
func (o *infoOptions) run(ctx context.Context, c *command, args []string) error {
	if len(args) != 1 {
		return usagef("name one package")
	}
	if err := c.needDaemon("info"); err != nil {
		return err
	}
	info, err := daemonQuery(c, func(cl *local.Client) (wire.PackageInfo, error) { return cl.Info(ctx, args[0]) })
	if err != nil {
		return err
	}
	return c.view.result(info, func(w io.Writer) error {
		tw := table(w)
		row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
		row("Name", info.Name)
		row("Version", info.Version)
		row("Architecture", info.Architecture)
		row("Type", info.Type)
		row("Maintainer", info.Maintainer)
		row("Description", info.Description)
		row("Depends on", strings.Join(info.Dependencies, ", "))
		// The relations only when the package has them: most have none.
		for _, r := range []struct {
			k  string
			vs []string
		}{{"Provides", info.Provides}, {"Conflicts with", info.Conflicts}, {"Replaces", info.Replaces}} {
			if len(r.vs) > 0 {
				row(r.k, strings.Join(r.vs, ", "))
			}
		}
		row("File", fmt.Sprintf("%s (%s)", info.File, human.Bytes(info.Size)))
		row("SHA-256", info.SHA256)
		row("Infohash", info.InfoHash)
		if in := info.Installed; in != nil {
			row("Installed", fmt.Sprintf("%s (%s, %s)", in.Version, in.Reason, in.InstalledAt.Local().Format(time.DateTime)))
		} else {
			row("Installed", "no")
		}
		return tw.Flush()
	})
}
