package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/pflag"

	"tpm/human"
	"tpm/local"
	"tpm/messages/wire"
)

// statusOptions are the flags of tpm status: none of its own.
type statusOptions struct{}

func (o *statusOptions) AddFlags(fs *pflag.FlagSet) {}

// run asks tpmd about itself, so there is no --offline path.
func (o *statusOptions) run(ctx context.Context, c *command, args []string) error {
	if len(args) > 0 {
		return usagef("status takes no arguments")
	}
	if err := c.needDaemon("status"); err != nil {
		return err
	}
	s, err := daemonQuery(c, func(cl *local.Client) (wire.Status, error) { return cl.Status(ctx) })
	if err != nil {
		return err
	}
	seconds := func(f float64) time.Duration { return time.Duration(f * float64(time.Second)).Round(time.Second) }
	return c.view.result(s, func(w io.Writer) error {
		tw := table(w)
		fmt.Fprintf(tw, "tpmd\tpid %d, up %s\n", s.PID, seconds(s.UptimeSeconds))
		if len(s.Servers) == 0 { // an older daemon
			fmt.Fprintf(tw, "server\t%s\n", s.Server)
		}
		for _, sv := range s.Servers {
			state := sv.State
			switch {
			case sv.State == "down":
				state += ": " + sv.Error
			case sv.Generation > 0:
				state += fmt.Sprintf(", generation %d", sv.Generation)
			}
			fmt.Fprintf(tw, "server\t%s  %s\n", sv.URL, state)
		}
		fmt.Fprintf(tw, "index\tgeneration %d, %d packages, %s old\n", s.IndexGeneration, s.IndexPackages, seconds(s.IndexAgeSeconds))
		switch {
		case s.IndexExpired:
			fmt.Fprintf(tw, "\tEXPIRED at %s: nothing is installed from it until tpm sync gets a fresh one\n", s.IndexValidUntil.Format(time.RFC3339))
		case !s.IndexValidUntil.IsZero():
			fmt.Fprintf(tw, "\tvalid until %s\n", s.IndexValidUntil.Format(time.RFC3339))
		}
		fmt.Fprintf(tw, "seeding\t%d packages to %d peers\n", s.Seeding, s.Peers)
		fmt.Fprintf(tw, "traffic\t%s up, %s down\n", human.Bytes(s.BytesUp), human.Bytes(s.BytesDown))
		if s.Downloading+s.DownloadsWaiting > 0 {
			fmt.Fprintf(tw, "downloading\t%d packages, %d waiting their turn\n", s.Downloading, s.DownloadsWaiting)
		}
		if s.Installing != "" {
			fmt.Fprintf(tw, "installing\t%s\n", s.Installing)
		}
		return tw.Flush()
	})
}
