package cli

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"tpm/engine"
	"tpm/human"
	"tpm/messages/wire"
	"tpm/query"
	"tpm/store"
)

// installOptions are the flags of tpm install.
type installOptions struct {
	engine         engineOptions
	reinstall      bool
	allowDowngrade bool
}

func (o *installOptions) AddFlags(fs *pflag.FlagSet) {
	o.engine.AddFlags(fs)
	fs.BoolVar(&o.allowDowngrade, "allow-downgrade", false, "allow replacing a package with an older version")
	fs.BoolVar(&o.reinstall, "reinstall", false, "install again a version that is already installed")
}

func (o *installOptions) run(ctx context.Context, c *command, args []string) error {
	c.view.verbose = o.engine.verbose
	if c.g.offline {
		return installOffline(ctx, c, o.engine, args, engine.Intent{Reinstall: o.reinstall, AllowDowngrade: o.allowDowngrade})
	}
	if len(args) == 0 {
		return usagef("name at least one package")
	}
	return installDaemon(ctx, c, wire.VerbInstall, args, wire.Options{Reinstall: o.reinstall, AllowDowngrade: o.allowDowngrade})
}

// installDaemon is install and upgrade through tpmd: ask for the plan,
// show it, ask unless nothing beyond what was named is needed (or -y),
// then install exactly that plan, showing its progress.
func installDaemon(ctx context.Context, c *command, verb string, args []string, opts wire.Options) error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	planOpts := opts
	planOpts.Upgrade = verb == wire.VerbUpgrade
	plan, err := cl.Plan(ctx, args, planOpts)
	if err != nil {
		return err
	}

	for i := range plan.Skipped {
		if err := c.view.reply(&wire.Reply{Type: wire.ReplySkipped, Skipped: &plan.Skipped[i]}); err != nil {
			return err
		}
	}
	if len(plan.Plan) == 0 {
		nothing := "everything is up to date"
		if len(args) > 0 {
			nothing = strings.Join(args, ", ") + " already installed"
		}
		if err := c.view.reply(&wire.Reply{Type: wire.ReplyLog, Text: "nothing to do: " + nothing}); err != nil {
			return err
		}
		return c.view.opResults(nil)
	}
	// A virtual name several packages provide: the plan holds the
	// documented first choice; the user may pick another, which is then
	// asked for by name and the plan made (and shown) again.
	for asked := map[string]bool{}; ; {
		c.showPlan(plan.Plan)
		pick, err := c.choose(plan.Plan, asked)
		if err != nil {
			return err
		}
		if pick == "" {
			break
		}
		args = append(args, pick)
		if plan, err = cl.Plan(ctx, args, planOpts); err != nil {
			return err
		}
	}
	expect, err := c.askPlan(plan.Plan, false)
	if err != nil {
		return err
	}
	send := cl.Install
	if verb == wire.VerbUpgrade {
		send = cl.Upgrade
	}
	return c.daemonTransaction(func(each func(*wire.Reply) error) ([]wire.OpResult, error) {
		return send(ctx, args, opts, expect, each)
	})
}

// askPlan asks, unless nothing beyond what was named is in items (or -y;
// with always, whatever they hold), and returns the versions confirmed.
func (c *command) askPlan(items []wire.PlanItem, always bool) (map[string]string, error) {
	if always || slices.ContainsFunc(items, asks) {
		if err := c.proceed(); err != nil {
			return nil, err
		}
	}
	return planVersions(items), nil
}

// planVersions is what a confirmed plan pins: name → version.
func planVersions(items []wire.PlanItem) map[string]string {
	expect := make(map[string]string, len(items))
	for _, it := range items {
		expect[it.Name] = it.Version
	}
	return expect
}

// showPlan prints what a plan will do (not with --json), in the prefix
// when --prefix names one (otherwise tpmd's own, or /, applies).
func (c *command) showPlan(items []wire.PlanItem) {
	if c.g.json {
		return
	}
	header := "This will:"
	if p, err := c.prefix(); err == nil && c.prefixSet {
		header = "This will, in " + p + ":"
	}
	var b strings.Builder
	tw := table(&b)
	var total int64
	for _, it := range items {
		// Local files (--offline) and removals download nothing.
		size := ""
		if it.Size > 0 && it.Action != string(engine.Remove) {
			size = human.Bytes(it.Size)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", describeItem(it), size, itemNote(it))
		total += it.Size
	}
	tw.Flush()
	fmt.Fprintln(c.env.Stdout, header)
	// The table pads empty columns (a removal's size, no note).
	for _, line := range strings.SplitAfter(b.String(), "\n") {
		if line != "" {
			fmt.Fprintln(c.env.Stdout, strings.TrimRight(line, " \n"))
		}
	}
	if total > 0 {
		fmt.Fprintf(c.env.Stdout, "  %d package(s), %s to download\n", len(items), human.Bytes(total))
	} else {
		fmt.Fprintf(c.env.Stdout, "  %d package(s)\n", len(items))
	}
}

// installOffline is install and upgrade of local .tpkg files with the
// engine: files the intent leaves nothing to do for are skipped (and
// said so), the rest is one transaction.
func installOffline(ctx context.Context, c *command, eo engineOptions, files []string, intent engine.Intent) error {
	if len(files) == 0 {
		return usagef("name at least one .tpkg file")
	}
	e, err := c.openEngine(ctx, eo)
	if err != nil {
		return err
	}
	defer e.Close()
	req := engine.InstallRequest{Prefix: c.g.prefix, Intent: intent}
	for _, f := range files {
		req.Archives = append(req.Archives, engine.Archive{Path: f, Reason: store.Explicit})
	}
	plan, skipped, err := e.PrepareInstall(ctx, req)
	if err != nil {
		return err
	}
	for _, s := range skipped {
		r := query.Skipped(s)
		if err := c.view.reply(&wire.Reply{Type: wire.ReplySkipped, Skipped: &r}); err != nil {
			return err
		}
	}
	verb := wire.VerbInstall
	if intent.UpgradeOnly {
		verb = wire.VerbUpgrade
	}
	return c.applyOffline(ctx, e, plan, historyTag(verb, files))
}

// choose asks, for the first provider in items chosen for a virtual name
// among others and not asked about yet (asked), which one to install;
// it returns the name of another one picked, "" to keep the plan's.
// With -y, --json or no answer, the plan's choice stands.
func (c *command) choose(items []wire.PlanItem, asked map[string]bool) (string, error) {
	if c.g.yes || c.g.json {
		return "", nil
	}
	for _, it := range items {
		if it.For == "" || len(it.Alternatives) == 0 || asked[it.For] {
			continue
		}
		asked[it.For] = true
		options := append([]string{it.Name}, it.Alternatives...)
		fmt.Fprintf(c.env.Stderr, "%s is provided by:\n", it.For)
		for i, name := range options {
			fmt.Fprintf(c.env.Stderr, "  %d) %s\n", i+1, name)
		}
		fmt.Fprintf(c.env.Stderr, "Which one? [1] ")
		line, err := c.in.ReadString('\n')
		if !isTerminal(c.env.Stdin) {
			fmt.Fprintln(c.env.Stderr, strings.TrimSpace(line))
		}
		answer := strings.TrimSpace(line)
		if answer == "" || (err != nil && line == "") {
			return "", nil
		}
		k, convErr := strconv.Atoi(answer)
		if convErr != nil || k < 1 || k > len(options) {
			return "", fmt.Errorf("nothing done: %q is not one of 1 to %d (or name the package: tpm install %s)", answer, len(options), options[len(options)-1])
		}
		if k > 1 {
			return options[k-1], nil
		}
	}
	return "", nil
}
