package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"tpm/fifo"
	"tpm/messages"
)

// livenessCheck is how often a CLI waiting for a reply checks that the
// daemon still runs, so a daemon that dies never leaves it waiting forever.
const livenessCheck = time.Second

// daemonCall sends one request to the daemon and passes every reply line
// to each (when not nil) until the final one, which it returns. An error
// reply becomes an error.
func (c *command) daemonCall(ctx context.Context, admin bool, req messages.Request, each func(*messages.Reply) error) (*messages.Reply, error) {
	name := "query"
	if admin {
		name = "admin"
	}
	fifoPath := filepath.Join(c.opts.runDir, name+".fifo")
	reply, err := fifo.NewReply(os.TempDir())
	if err != nil {
		return nil, err
	}
	defer reply.Close()
	id := make([]byte, 8)
	rand.Read(id)
	req.V, req.ID, req.Reply = messages.ProtocolVersion, hex.EncodeToString(id), reply.Path()
	if req.Prefix == "" && c.prefixSet {
		req.Prefix, err = c.prefix()
		if err != nil {
			return nil, err
		}
	}
	line, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	sendCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = fifo.Send(sendCtx, fifoPath, filepath.Join(c.opts.runDir, name+".lock"), line)
	cancel()
	switch {
	case errors.Is(err, fifo.ErrNoDaemon):
		return nil, fmt.Errorf("tpmd is not running (nothing reads %s): start it (systemctl start tpmd, or tpmd client --server URL --trusted-key FILE), or use tpm --offline", fifoPath)
	case errors.Is(err, fs.ErrPermission) && admin:
		return nil, fmt.Errorf("you may not ask tpmd to change this host (%s): run tpm as root", fifoPath)
	case errors.Is(err, fs.ErrPermission):
		return nil, fmt.Errorf("you may not talk to tpmd (%s): ask an administrator", fifoPath)
	case err != nil:
		return nil, err
	}
	queryFIFO := filepath.Join(c.opts.runDir, "query.fifo")
	for {
		wait, cancel := context.WithTimeout(ctx, livenessCheck)
		raw, err := reply.ReadLine(wait)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			if !fifo.Alive(queryFIFO) {
				return nil, fmt.Errorf("tpmd stopped while answering; start it again and check with tpm status")
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		var r messages.Reply
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, fmt.Errorf("tpmd sent a line that is not a reply (%v); are tpm and tpmd from the same release?", err)
		}
		if r.ID != req.ID {
			continue // not ours: someone named our FIFO in their request
		}
		if c.opts.json {
			fmt.Fprintf(c.env.Stdout, "%s\n", raw)
		}
		if r.Type == messages.ReplyError {
			return nil, errors.New(r.Error)
		}
		if r.Final() {
			return &r, nil
		}
		if each != nil {
			if err := each(&r); err != nil {
				return nil, err
			}
		}
	}
}

// query runs a read-only request and decodes its result into out.
func (c *command) query(ctx context.Context, req messages.Request, out any) error {
	r, err := c.daemonCall(ctx, false, req, nil)
	if err != nil {
		return err
	}
	if out == nil || len(r.Data) == 0 {
		return nil
	}
	if err := json.Unmarshal(r.Data, out); err != nil {
		return fmt.Errorf("tpmd's answer to %s is not what this tpm expects (%v)", req.Verb, err)
	}
	return nil
}

// daemonInstall is install and upgrade through the daemon: ask for the
// plan, show it, ask unless nothing beyond what was named is needed (or
// -y), then install exactly that plan, showing progress.
func (c *command) daemonInstall(ctx context.Context, args []string, upgrade bool) error {
	opts := map[string]bool{"upgrade": upgrade, "reinstall": c.opts.reinstall, "allow_downgrade": c.opts.allowDowngrade}
	var plan struct {
		Plan []messages.PlanItem `json:"plan"`
	}
	if err := c.query(ctx, messages.Request{Verb: "plan", Args: args, Options: opts}, &plan); err != nil {
		return err
	}
	if len(plan.Plan) == 0 {
		c.printf("nothing to do: %s\n", orAll(args, "everything is up to date"))
		return nil
	}
	extra := false
	expect := make(map[string]string)
	for _, it := range plan.Plan {
		extra = extra || !it.Requested
		expect[it.Name] = it.Version
	}
	if !c.opts.json {
		fmt.Fprintln(c.env.Stdout, "This will:")
		tw := tabwriter.NewWriter(c.env.Stdout, 0, 4, 2, ' ', 0)
		var total int64
		for _, it := range plan.Plan {
			note := ""
			if !it.Requested {
				note = "(needed)"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", describeItem(it), humanBytes(it.Size), note)
			total += it.Size
		}
		tw.Flush()
		fmt.Fprintf(c.env.Stdout, "  %d package(s), %s to download\n", len(plan.Plan), humanBytes(total))
	}
	if extra {
		if err := c.proceed(); err != nil {
			return err
		}
	}
	verb := "install"
	if upgrade {
		verb = "upgrade"
	}
	show := newProgressView(c)
	defer show.close()
	r, err := c.daemonCall(ctx, true, messages.Request{Verb: verb, Args: args, Options: opts, Expect: expect}, show.reply)
	show.close()
	if err != nil {
		return err
	}
	return c.showResults(r)
}

func (c *command) daemonRemove(ctx context.Context, names []string) error {
	opts := map[string]bool{"cascade": c.opts.cascade}
	show := newProgressView(c)
	defer show.close()
	r, err := c.daemonCall(ctx, true, messages.Request{Verb: "remove", Args: names, Options: opts}, show.reply)
	show.close()
	if err != nil {
		return err
	}
	return c.showResults(r)
}

func (c *command) showResults(r *messages.Reply) error {
	var results []messages.OpResult
	if len(r.Data) > 0 {
		if err := json.Unmarshal(r.Data, &results); err != nil {
			return fmt.Errorf("tpmd's result is not what this tpm expects (%v)", err)
		}
	}
	if c.opts.json {
		return nil
	}
	for _, res := range results {
		item := messages.PlanItem{Action: res.Action, Name: res.Name, Version: res.Version, OldVersion: res.OldVersion}
		fmt.Fprintln(c.env.Stdout, pastTense(describeItem(item)))
		for _, w := range res.Warnings {
			fmt.Fprintf(c.env.Stderr, "tpm: warning: %s (the package is in place)\n", w)
		}
	}
	return nil
}

func describeItem(it messages.PlanItem) string {
	if it.OldVersion != "" && it.OldVersion != it.Version {
		return fmt.Sprintf("%s %s %s -> %s", it.Action, it.Name, it.OldVersion, it.Version)
	}
	return fmt.Sprintf("%s %s %s", it.Action, it.Name, it.Version)
}

func orAll(args []string, none string) string {
	if len(args) == 0 {
		return none
	}
	return strings.Join(args, ", ") + " already installed"
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// The read-only verbs through the daemon.

func (c *command) daemonList(ctx context.Context) error {
	var rows []struct {
		Name, Version, Reason string
	}
	if err := c.query(ctx, messages.Request{Verb: "list"}, &rows); err != nil || c.opts.json {
		return err
	}
	tw := tabwriter.NewWriter(c.env.Stdout, 0, 4, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Name, r.Version, r.Reason)
	}
	return tw.Flush()
}

func (c *command) daemonFiles(ctx context.Context, names []string) error {
	var rows []struct{ Package, Path, Type string }
	if err := c.query(ctx, messages.Request{Verb: "files", Args: names}, &rows); err != nil || c.opts.json {
		return err
	}
	for _, r := range rows {
		if r.Type == "dir" {
			r.Path += "/"
		}
		fmt.Fprintln(c.env.Stdout, r.Path)
	}
	return nil
}

func (c *command) daemonOwns(ctx context.Context, paths []string) error {
	var abs []string
	for _, p := range paths {
		a, err := filepath.Abs(p)
		if err != nil {
			return err
		}
		abs = append(abs, a)
	}
	var rows []struct{ Path, Name, Version string }
	if err := c.query(ctx, messages.Request{Verb: "owns", Args: abs}, &rows); err != nil || c.opts.json {
		return err
	}
	for _, r := range rows {
		fmt.Fprintf(c.env.Stdout, "%s is owned by %s %s\n", r.Path, r.Name, r.Version)
	}
	return nil
}

func (c *command) daemonVerify(ctx context.Context, names []string) error {
	var rows []struct{ Package, Path, Kind, Detail string }
	if err := c.query(ctx, messages.Request{Verb: "verify", Args: names}, &rows); err != nil {
		return err
	}
	if !c.opts.json {
		for _, r := range rows {
			fmt.Fprintf(c.env.Stdout, "%s: %s %s (%s)\n", r.Package, r.Kind, r.Path, r.Detail)
		}
	}
	if len(rows) > 0 {
		return fmt.Errorf("%d problem(s) found: reinstall the packages named above (tpm install --reinstall)", len(rows))
	}
	c.printf("no problems found\n")
	return nil
}

func runSearch(ctx context.Context, c *command, args []string) error {
	if len(args) != 1 {
		return usagef("give one word to search for")
	}
	var rows []struct{ Name, Version, Description, Installed string }
	if err := c.needDaemon("search"); err != nil {
		return err
	}
	if err := c.query(ctx, messages.Request{Verb: "search", Args: args}, &rows); err != nil || c.opts.json {
		return err
	}
	if len(rows) == 0 {
		return fmt.Errorf("no package matches %q", args[0])
	}
	tw := tabwriter.NewWriter(c.env.Stdout, 0, 4, 2, ' ', 0)
	for _, r := range rows {
		mark := ""
		if r.Installed != "" {
			mark = "[installed " + r.Installed + "]"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, r.Version, r.Description, mark)
	}
	return tw.Flush()
}

func runInfo(ctx context.Context, c *command, args []string) error {
	if len(args) != 1 {
		return usagef("name one package")
	}
	if err := c.needDaemon("info"); err != nil {
		return err
	}
	var info struct {
		Name, Version, Architecture, Type, Maintainer, Description string
		Dependencies                                               []string
		File, SHA256, Infohash                                     string
		Size                                                       int64
		Installed                                                  *struct {
			Version, Reason string
			InstalledAt     time.Time `json:"installed_at"`
		}
	}
	if err := c.query(ctx, messages.Request{Verb: "info", Args: args}, &info); err != nil || c.opts.json {
		return err
	}
	tw := tabwriter.NewWriter(c.env.Stdout, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("Name", info.Name)
	row("Version", info.Version)
	row("Architecture", info.Architecture)
	row("Type", info.Type)
	row("Maintainer", info.Maintainer)
	row("Description", info.Description)
	row("Depends on", strings.Join(info.Dependencies, ", "))
	row("File", fmt.Sprintf("%s (%s)", info.File, humanBytes(info.Size)))
	row("SHA-256", info.SHA256)
	row("Infohash", info.Infohash)
	if info.Installed != nil {
		row("Installed", fmt.Sprintf("%s (%s, %s)", info.Installed.Version, info.Installed.Reason, info.Installed.InstalledAt.Local().Format(time.DateTime)))
	} else {
		row("Installed", "no")
	}
	return tw.Flush()
}

func runSync(ctx context.Context, c *command, args []string) error {
	if len(args) > 0 {
		return usagef("sync takes no arguments")
	}
	if err := c.needDaemon("sync"); err != nil {
		return err
	}
	r, err := c.daemonCall(ctx, true, messages.Request{Verb: "sync"}, nil)
	if err != nil || c.opts.json {
		return err
	}
	var res struct {
		Generation uint64 `json:"generation"`
		Changed    bool   `json:"changed"`
	}
	json.Unmarshal(r.Data, &res)
	if res.Changed {
		fmt.Fprintf(c.env.Stdout, "index updated to generation %d\n", res.Generation)
	} else {
		fmt.Fprintf(c.env.Stdout, "index is up to date (generation %d)\n", res.Generation)
	}
	return nil
}

func runStatus(ctx context.Context, c *command, args []string) error {
	if len(args) > 0 {
		return usagef("status takes no arguments")
	}
	if err := c.needDaemon("status"); err != nil {
		return err
	}
	var s messages.Status
	if err := c.query(ctx, messages.Request{Verb: "status"}, &s); err != nil || c.opts.json {
		return err
	}
	tw := tabwriter.NewWriter(c.env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "tpmd\tpid %d, up %s\n", s.PID, time.Duration(s.UptimeSeconds*float64(time.Second)).Round(time.Second))
	fmt.Fprintf(tw, "server\t%s\n", s.Server)
	fmt.Fprintf(tw, "index\tgeneration %d, %d packages, %s old\n", s.IndexGeneration, s.IndexPackages, time.Duration(s.IndexAgeSeconds*float64(time.Second)).Round(time.Second))
	fmt.Fprintf(tw, "seeding\t%d packages to %d peers\n", s.Seeding, s.Peers)
	fmt.Fprintf(tw, "traffic\t%s up, %s down\n", humanBytes(s.BytesUp), humanBytes(s.BytesDown))
	if s.Installing != "" {
		fmt.Fprintf(tw, "installing\t%s\n", s.Installing)
	}
	return tw.Flush()
}

// needDaemon refuses --offline for verbs only the daemon can answer.
func (c *command) needDaemon(verb string) error {
	if c.opts.offline {
		return fmt.Errorf("%s needs the repository index, which only tpmd has: run it without --offline", verb)
	}
	return nil
}
