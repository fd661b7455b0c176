package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"

	"tpm/engine"
	"tpm/local"
	"tpm/messages/wire"
	"tpm/query"
	"tpm/store"
	"tpm/tarball"
)

// engineOptions are the flags of the verbs that run transactions. Except
// --verbose (source builds through tpmd too), they matter with --offline
// only: tpmd has its own.
type engineOptions struct {
	verbose       bool
	maxEntries    int
	maxBytes      int64
	scriptTimeout string
	buildDir      string
	buildTimeout  string
	linkDir       string
}

func (o *engineOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVarP(&o.verbose, "verbose", "v", false, "show every line of source package builds")
	fs.IntVar(&o.maxEntries, "max-entries", 0, "refuse archives with more entries (default 500000)")
	fs.Int64Var(&o.maxBytes, "max-bytes", 0, "refuse archives that decompress to more bytes (default 16 GiB)")
	fs.StringVar(&o.scriptTimeout, "script-timeout", "5m", "time limit for each package script")
	// Like mktemp -d: under $TMPDIR when it is set.
	fs.StringVar(&o.buildDir, "build-dir", filepath.Join(os.TempDir(), "tpm"), "where source packages are built (with --offline)")
	fs.StringVar(&o.buildTimeout, "build-timeout", "1h", "time limit for building one source package (with --offline)")
	fs.StringVar(&o.linkDir, "link-dir", "usr/local", "where source packages are linked, relative to the prefix (with --offline)")
}

// openEngine opens the state database for --offline use. A transaction a
// crash left behind is finished or undone first, and reported as the
// recovered reply.
func (c *command) openEngine(ctx context.Context, o engineOptions) (*engine.Engine, error) {
	if err := c.guardOffline(); err != nil {
		return nil, err
	}
	timeout, err := time.ParseDuration(o.scriptTimeout)
	if o.scriptTimeout == "" {
		timeout, err = 5*time.Minute, nil
	}
	if err != nil || timeout <= 0 {
		return nil, usagef("--script-timeout %q is not a positive duration like 30s or 5m", o.scriptTimeout)
	}
	buildTimeout, err := time.ParseDuration(o.buildTimeout)
	if o.buildTimeout == "" {
		buildTimeout, err = time.Hour, nil
	}
	if err != nil || buildTimeout <= 0 {
		return nil, usagef("--build-timeout %q is not a positive duration like 10m or 1h", o.buildTimeout)
	}
	limits := tarball.DefaultLimits()
	if o.maxEntries > 0 {
		limits.MaxEntries = o.maxEntries
	}
	if o.maxBytes > 0 {
		limits.MaxBytes = o.maxBytes
	}
	e, rec, err := engine.Open(ctx, engine.Options{
		StateDir:      c.g.stateDir,
		Limits:        limits,
		ScriptTimeout: timeout,
		BuildRoot:     o.buildDir,
		BuildTimeout:  buildTimeout,
		LinkDir:       o.linkDir,
		Step:          c.env.Step,
		Root:          os.Geteuid() == 0,
	})
	if errors.Is(err, store.ErrLocked) {
		return nil, fmt.Errorf("%s/%s is in use by another process (a running tpmd client?): stop it, or use tpm without --offline", c.g.stateDir, engine.DatabaseFile)
	}
	if err != nil {
		return nil, err
	}
	if rec != nil {
		r := query.Recovered(rec)
		c.view.reply(&wire.Reply{Type: wire.ReplyRecovered, Recovered: &r})
	}
	return e, nil
}

// hooks report a transaction of the offline engine as the replies tpmd
// sends for its own: output and done.
func (c *command) hooks() engine.Hooks {
	return engine.Hooks{
		Output: func(pkg, step, line string) {
			c.view.reply(&wire.Reply{Type: wire.ReplyOutput, Output: &wire.Output{Package: pkg, Step: step, Line: line}})
		},
		Applied: func(r engine.OpResult) {
			done := query.OpResult(r)
			c.view.reply(&wire.Reply{Type: wire.ReplyDone, Done: &done})
		},
	}
}

// ask answers a read-only verb whose result is a list: through tpmd, or
// with --offline through query's one dispatch on the state database, so
// the verb says the same in both modes.
func ask[E any](ctx context.Context, c *command, req wire.Request, daemon func(*local.Client) ([]E, error)) ([]E, error) {
	if !c.g.offline {
		return daemonQuery(c, daemon)
	}
	e, err := c.openEngine(ctx, engineOptions{})
	if err != nil {
		return nil, err
	}
	defer e.Close()
	prefix, err := c.prefix()
	if err != nil {
		return nil, err
	}
	out := []E{}
	data, err := query.Answer(e, nil, &req, prefix, func(part any) error {
		out = append(out, part.([]E)...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !query.Streamed(req.Verb) {
		return data.([]E), nil
	}
	return out, nil
}
