package cli

import (
	"context"
	"fmt"
	"os"
	"strings"

	"tpm/messages/wire"
	"tpm/query"
	"tpm/tarball"

	"github.com/spf13/pflag"
)

// undoOptions are the flags of tpm undo and tpm rollback.
type undoOptions struct {
	verb   string // undo or rollback
	engine engineOptions
}

func (o *undoOptions) AddFlags(fs *pflag.FlagSet) { o.engine.AddFlags(fs) }

// run reverts a transaction (undo) or every one after it (rollback): the
// plan, a question (-y answers it), then one transaction that puts the old
// versions back and removes what was installed.
func (o *undoOptions) run(ctx context.Context, c *command, args []string) error {
	c.view.verbose = o.engine.verbose
	if len(args) == 0 {
		return usagef("name a transaction: tpm %s ID (tpm history lists them)", o.verb)
	}
	if c.g.offline {
		return undoOffline(ctx, c, o.engine, o.verb, args[0], args[1:])
	}
	if len(args) > 1 {
		return usagef("%s takes one transaction number (files only with --offline)", o.verb)
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	plan, err := cl.Plan(ctx, args, wire.Options{Undo: o.verb == wire.VerbUndo, Rollback: o.verb == wire.VerbRollback})
	if err != nil {
		return err
	}
	if len(plan.Plan) == 0 {
		return nothingToUndo(c)
	}
	expect, err := c.confirmMore(plan.Plan, true)
	if err != nil {
		return err
	}
	return c.daemonTransaction(func(each func(*wire.Reply) error) ([]wire.OpResult, error) {
		return cl.Undo(ctx, o.verb, args[0], expect, each)
	})
}

func nothingToUndo(c *command) error {
	if err := c.view.reply(&wire.Reply{Type: wire.ReplyLog, Text: "nothing to do: its changes are undone already"}); err != nil {
		return err
	}
	return c.view.opResults(nil)
}

// undoOffline is undo and rollback with the engine: the old versions come
// from the files given, which must hold every one the undo puts back.
func undoOffline(ctx context.Context, c *command, eo engineOptions, verb, id string, files []string) error {
	e, err := c.openEngine(ctx, eo)
	if err != nil {
		return err
	}
	defer e.Close()
	prefix, err := c.prefix()
	if err != nil {
		return err
	}
	steps, err := query.UndoSteps(e, &wire.Request{Verb: verb, Args: []string{id}}, prefix)
	if err != nil {
		return err
	}
	if len(steps) == 0 {
		return nothingToUndo(c)
	}
	have, err := packageFiles(files)
	if err != nil {
		return err
	}
	req, missing := query.UndoRequest(prefix, steps, have)
	if len(missing) > 0 {
		what := "undo " + id
		if verb == wire.VerbRollback {
			what = "roll back to " + id
		}
		return fmt.Errorf("cannot %s: %s not among the files given: add the .tpkg; nothing was changed", what, strings.Join(missing, ", "))
	}
	plan, _, err := e.PrepareInstall(ctx, req)
	if err != nil {
		return err
	}
	return c.applyOfflineAsking(ctx, e, plan, historyTag(verb, []string{id}), true)
}

// packageFiles maps the name NUL version of each file's package to it.
func packageFiles(files []string) (map[string]string, error) {
	have := make(map[string]string, len(files))
	for _, f := range files {
		m, err := manifestOf(f)
		if err != nil {
			return nil, err
		}
		have[m.Name+"\x00"+m.Version] = f
	}
	return have, nil
}

func manifestOf(file string) (*manifestHead, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("cannot read package %s: %w", file, err)
	}
	defer f.Close()
	m, err := tarball.ReadManifest(f)
	if err != nil {
		return nil, fmt.Errorf("refusing %s: %w", file, err)
	}
	return &manifestHead{Name: m.Name, Version: m.Version}, nil
}

// manifestHead is what undo needs of a file's manifest.
type manifestHead struct{ Name, Version string }
