package cli

import (
	"context"
	"os"
	"slices"

	"tpm/engine"
	"tpm/messages/wire"
	"tpm/query"
	"tpm/store"
)

// What install, upgrade and remove share once they know what to do.

// daemonTransaction runs an install, upgrade or remove request through
// tpmd, showing its stream as it comes (bars while it runs on a terminal).
func (c *command) daemonTransaction(run func(each func(*wire.Reply) error) ([]wire.OpResult, error)) error {
	c.view.startBars()
	results, err := run(c.view.reply)
	c.view.stopBars()
	if err != nil {
		return err
	}
	return c.view.opResults(results)
}

// historyTag is the history's record of this process's verb and args.
func historyTag(verb string, args []string) store.HistoryTag {
	return store.HistoryTag{UID: os.Getuid(), Verb: verb, Args: args}
}

// confirmMore shows a plan and asks whether to go on when it does more
// than was named (or, with always, whatever it holds), and returns the
// versions it pins. Both modes ask through it, so a verb shows the same
// plan and asks the same question with and without --offline.
func (c *command) confirmMore(items []wire.PlanItem, always bool) (map[string]string, error) {
	if always || slices.ContainsFunc(items, asks) {
		c.showPlan(items)
	}
	return c.askPlan(items, always)
}

// applyOffline asks as confirmMore does about an engine plan and applies
// it as the history's transaction tag, reporting as tpmd's stream does:
// the plan (once confirmed), script and build output, each package done,
// and the result.
func (c *command) applyOffline(ctx context.Context, e *engine.Engine, plan *engine.Changeset, tag store.HistoryTag) error {
	return c.applyOfflineAsking(ctx, e, plan, tag, false)
}

// applyOfflineAsking is applyOffline that, with always, asks whatever
// the plan holds.
func (c *command) applyOfflineAsking(ctx context.Context, e *engine.Engine, plan *engine.Changeset, tag store.HistoryTag, always bool) error {
	if len(plan.Ops) == 0 {
		return c.view.opResults(nil)
	}
	items := query.PlanItems(plan)
	if _, err := c.confirmMore(items, always); err != nil {
		return err
	}
	if err := c.view.reply(&wire.Reply{Type: wire.ReplyPlan, Plan: items}); err != nil {
		return err
	}
	plan.History = &tag
	applied, err := e.Apply(ctx, plan, c.hooks())
	if err != nil {
		return err
	}
	results := make([]wire.OpResult, 0, len(applied))
	for _, r := range applied {
		results = append(results, query.OpResult(r))
	}
	return c.view.opResults(results)
}
