package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"tpm/engine"
	"tpm/signing"
	"tpm/store"
	"tpm/tarball"
)

// openEngine opens the state database for --offline use, finishing any
// transaction a crash left behind and saying so.
func (c *command) openEngine(ctx context.Context) (*engine.Engine, error) {
	timeout, err := time.ParseDuration(c.opts.scriptTimeout)
	if c.opts.scriptTimeout == "" {
		timeout, err = 5*time.Minute, nil
	}
	if err != nil || timeout <= 0 {
		return nil, usagef("--script-timeout %q is not a positive duration like 30s or 5m", c.opts.scriptTimeout)
	}
	buildTimeout, err := time.ParseDuration(c.opts.buildTimeout)
	if c.opts.buildTimeout == "" {
		buildTimeout, err = time.Hour, nil
	}
	if err != nil || buildTimeout <= 0 {
		return nil, usagef("--build-timeout %q is not a positive duration like 10m or 1h", c.opts.buildTimeout)
	}
	limits := tarball.DefaultLimits()
	if c.opts.maxEntries > 0 {
		limits.MaxEntries = c.opts.maxEntries
	}
	if c.opts.maxBytes > 0 {
		limits.MaxBytes = c.opts.maxBytes
	}
	e, rec, err := engine.Open(ctx, engine.Options{
		StateDir:      c.opts.stateDir,
		Limits:        limits,
		ScriptTimeout: timeout,
		BuildRoot:     c.opts.buildDir,
		BuildTimeout:  buildTimeout,
		LinkDir:       c.opts.linkDir,
		Output:        c.scriptOutput,
		Applied:       c.applied,
		Step:          c.env.Step,
		Root:          os.Geteuid() == 0,
	})
	if errors.Is(err, store.ErrLocked) {
		return nil, fmt.Errorf("%s/%s is in use by another process (a running tpmd client?): stop it, or use tpm without --offline", c.opts.stateDir, engine.DatabaseFile)
	}
	if err != nil {
		return nil, err
	}
	if rec != nil {
		if c.opts.json {
			c.emit(map[string]any{"event": "recovered", "transaction": rec.ID, "completed": rec.Completed, "rolled_back": rec.RolledBack, "scripts_not_run": rec.ScriptsNotRun})
		} else {
			fmt.Fprintf(c.env.Stderr, "tpm: recovered an interrupted transaction in %s: finished [%s], undid [%s]\n",
				rec.Prefix, strings.Join(rec.Completed, " "), strings.Join(rec.RolledBack, " "))
			if len(rec.ScriptsNotRun) > 0 {
				fmt.Fprintf(c.env.Stderr, "tpm: the interruption skipped these scripts of installed packages; run them by hand if needed: %s\n", strings.Join(rec.ScriptsNotRun, ", "))
			}
		}
	}
	return e, nil
}

func (c *command) scriptOutput(pkg, script, line string) {
	if shown, ok := c.buildLine(pkg + ": " + script + ": " + line); ok && !c.opts.json {
		if shown != "" {
			fmt.Fprintln(c.env.Stdout, shown)
		}
		return
	}
	if c.opts.json {
		c.emit(map[string]any{"event": "script", "package": pkg, "script": script, "line": line})
		return
	}
	fmt.Fprintf(c.env.Stdout, "%s: %s: %s\n", pkg, script, line)
}

func (c *command) prefix() (string, error) { return engine.CleanPrefix(c.opts.prefix) }

func runInstall(ctx context.Context, c *command, args []string) error {
	if !c.opts.offline {
		if len(args) == 0 {
			return usagef("name at least one package")
		}
		return c.daemonInstall(ctx, args, false)
	}
	return c.install(ctx, args, false)
}

func runUpgrade(ctx context.Context, c *command, args []string) error {
	if !c.opts.offline {
		return c.daemonInstall(ctx, args, true)
	}
	return c.install(ctx, args, true)
}

func (c *command) install(ctx context.Context, files []string, upgradeOnly bool) error {
	if len(files) == 0 {
		return usagef("name at least one .tpkg file")
	}
	e, err := c.openEngine(ctx)
	if err != nil {
		return err
	}
	defer e.Close()
	req := engine.InstallRequest{Prefix: c.opts.prefix, UpgradeOnly: upgradeOnly, AllowDowngrade: c.opts.allowDowngrade, Reinstall: c.opts.reinstall}
	for _, f := range files {
		req.Archives = append(req.Archives, engine.Archive{Path: f, Reason: store.Explicit})
	}
	plan, skipped, err := e.PlanInstall(ctx, req)
	if err != nil {
		return err
	}
	for _, s := range skipped {
		if c.opts.json {
			c.emit(map[string]any{"event": "skipped", "name": s.Name, "version": s.Version, "why": s.Why})
		} else {
			fmt.Fprintf(c.env.Stdout, "%s %s is %s; skipping\n", s.Name, s.Version, s.Why)
		}
	}
	return c.apply(ctx, e, plan)
}

func runRemove(ctx context.Context, c *command, names []string) error {
	if len(names) == 0 {
		return usagef("name at least one installed package")
	}
	if !c.opts.offline {
		return c.daemonRemove(ctx, names)
	}
	e, err := c.openEngine(ctx)
	if err != nil {
		return err
	}
	defer e.Close()
	plan, err := e.PlanRemove(ctx, c.opts.prefix, names, c.opts.cascade)
	if err != nil {
		return err
	}
	return c.apply(ctx, e, plan)
}

// apply shows the plan, asks when it does more than was asked for, and runs it.
func (c *command) apply(ctx context.Context, e *engine.Engine, plan *engine.Plan) error {
	if len(plan.Ops) == 0 {
		return nil
	}
	extra := false
	for _, op := range plan.Ops {
		extra = extra || !op.Requested
	}
	if extra && !c.opts.json {
		fmt.Fprintf(c.env.Stdout, "This will, in %s:\n", plan.Prefix)
		for _, op := range plan.Ops {
			fmt.Fprintf(c.env.Stdout, "  %s\n", describe(op.Action, op.Name, op.Version, op.OldVersion))
		}
	}
	if extra {
		if err := c.proceed(); err != nil {
			return err
		}
	}
	_, err := e.Apply(ctx, plan)
	return err
}

func (c *command) applied(r engine.OpResult) {
	if c.opts.json {
		c.emit(map[string]any{"event": "done", "action": r.Action, "name": r.Name, "version": r.Version, "old_version": r.OldVersion, "warnings": r.Warnings})
		return
	}
	fmt.Fprintf(c.env.Stdout, "%s\n", pastTense(describe(r.Action, r.Name, r.Version, r.OldVersion)))
	for _, w := range r.Warnings {
		fmt.Fprintf(c.env.Stderr, "tpm: warning: %s (the package is in place)\n", w)
	}
}

func describe(a engine.Action, name, ver, old string) string {
	switch a {
	case engine.Upgrade, engine.Downgrade:
		return fmt.Sprintf("%s %s %s -> %s", a, name, old, ver)
	}
	return fmt.Sprintf("%s %s %s", a, name, ver)
}

func pastTense(s string) string {
	verb, rest, _ := strings.Cut(s, " ")
	switch verb {
	case "remove":
		verb = "removed"
	case "downgrade", "upgrade":
		verb += "d"
	default:
		verb += "ed"
	}
	return verb + " " + rest
}

func runList(ctx context.Context, c *command, args []string) error {
	if len(args) > 0 {
		return usagef("list takes no arguments")
	}
	if !c.opts.offline {
		return c.daemonList(ctx)
	}
	e, err := c.openEngine(ctx)
	if err != nil {
		return err
	}
	defer e.Close()
	prefix, err := c.prefix()
	if err != nil {
		return err
	}
	var receipts []*store.Receipt
	err = e.DB().View(func(tx *store.Tx) error {
		receipts, err = tx.Receipts(prefix)
		return err
	})
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.env.Stdout, 0, 4, 2, ' ', 0)
	for _, r := range receipts {
		if c.opts.json {
			c.emit(map[string]any{"name": r.Name, "version": r.Version, "architecture": r.Architecture, "reason": r.Reason, "installed_at": r.InstalledAt, "prefix": r.Prefix})
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Name, r.Version, r.Reason)
	}
	return tw.Flush()
}

func runFiles(ctx context.Context, c *command, names []string) error {
	if len(names) == 0 {
		return usagef("name at least one installed package")
	}
	if !c.opts.offline {
		return c.daemonFiles(ctx, names)
	}
	e, err := c.openEngine(ctx)
	if err != nil {
		return err
	}
	defer e.Close()
	prefix, err := c.prefix()
	if err != nil {
		return err
	}
	return e.DB().View(func(tx *store.Tx) error {
		for _, n := range names {
			r, err := tx.Receipt(prefix, n)
			if err != nil {
				return err
			}
			if r == nil {
				return fmt.Errorf("%s is not installed in %s", n, prefix)
			}
			for _, f := range r.Files {
				abs := filepath.Join(prefix, f.Path)
				if c.opts.json {
					c.emit(map[string]any{"package": n, "path": abs, "type": f.Type, "mode": fmt.Sprintf("%#o", uint32(f.Mode.Perm())), "sha256": f.SHA256, "link": f.Link})
					continue
				}
				if f.Type == store.Dir {
					abs += "/"
				}
				fmt.Fprintln(c.env.Stdout, abs)
			}
		}
		return nil
	})
}

func runOwns(ctx context.Context, c *command, paths []string) error {
	if len(paths) == 0 {
		return usagef("name at least one path")
	}
	if !c.opts.offline {
		return c.daemonOwns(ctx, paths)
	}
	e, err := c.openEngine(ctx)
	if err != nil {
		return err
	}
	defer e.Close()
	prefix, err := c.prefix()
	if err != nil {
		return err
	}
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return err
		}
		receipts, err := e.Owners(prefix, abs)
		if err != nil {
			return err
		}
		for _, r := range receipts {
			if c.opts.json {
				c.emit(map[string]any{"path": abs, "name": r.Name, "version": r.Version})
			} else {
				fmt.Fprintf(c.env.Stdout, "%s is owned by %s %s\n", abs, r.Name, r.Version)
			}
		}
	}
	return nil
}

func runVerify(ctx context.Context, c *command, names []string) error {
	if !c.opts.offline {
		return c.daemonVerify(ctx, names)
	}
	e, err := c.openEngine(ctx)
	if err != nil {
		return err
	}
	defer e.Close()
	problems, err := e.Verify(c.opts.prefix, names)
	if err != nil {
		return err
	}
	for _, p := range problems {
		if c.opts.json {
			c.emit(map[string]any{"event": "problem", "package": p.Package, "path": p.Path, "kind": p.Kind, "detail": p.Detail})
		} else {
			fmt.Fprintln(c.env.Stdout, p.String())
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%d problem(s) found: reinstall the packages named above (tpm install --reinstall)", len(problems))
	}
	if c.opts.json {
		c.emit(map[string]any{"event": "verified", "problems": 0})
	}
	c.printf("no problems found\n")
	return nil
}

func runPack(ctx context.Context, c *command, args []string) error {
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
	out, m, err := tarball.PackFile(args[0], c.opts.output, opts)
	if err != nil {
		return err
	}
	if c.opts.json {
		c.emit(map[string]any{"event": "packed", "file": out, "name": m.Name, "version": m.Version, "architecture": m.Architecture})
		return nil
	}
	fmt.Fprintln(c.env.Stdout, out)
	return nil
}

func runKeygen(ctx context.Context, c *command, args []string) error {
	if len(args) > 0 {
		return usagef("keygen takes no arguments; use -o DIR")
	}
	key, pub, err := signing.Keygen(c.opts.output, c.opts.force)
	if err != nil {
		return err
	}
	if c.opts.json {
		c.emit(map[string]any{"event": "keygen", "key": key, "public": pub})
		return nil
	}
	fmt.Fprintf(c.env.Stdout, "wrote %s (keep it secret) and %s (give it to clients)\n", key, pub)
	return nil
}
