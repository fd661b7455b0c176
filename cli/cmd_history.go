package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"

	"tpm/local"
	"tpm/messages/wire"
	"tpm/query"
)

// historyOptions are the flags of tpm history: none of its own.
type historyOptions struct{}

func (o *historyOptions) AddFlags(fs *pflag.FlagSet) {}

// run lists the transactions, newest first, one line each, or shows one
// whole. Anyone may ask: it shows who changed what.
func (o *historyOptions) run(ctx context.Context, c *command, args []string) error {
	if len(args) > 1 {
		return usagef("history takes at most one transaction number")
	}
	if len(args) == 0 && !c.g.json {
		return historyLines(ctx, c)
	}
	rows, err := ask(ctx, c, wire.Request{Verb: wire.VerbHistory, Args: args}, func(cl *local.Client) ([]wire.Transaction, error) {
		return cl.History(ctx, args)
	})
	if err != nil {
		return err
	}
	rows = mergeParts(rows)
	// Here a list is JSON only; one transaction (its parts joined) is shown whole.
	return c.view.result(rows, func(w io.Writer) error {
		if len(rows) != 1 {
			return fmt.Errorf("tpmd sent %d transactions for one number; are tpm and tpmd from the same release?", len(rows))
		}
		return showTransaction(w, &rows[0])
	})
}

// historyLines prints the history as its parts come, one line per
// transaction: a long one shows at once, and the CLI holds one part.
func historyLines(ctx context.Context, c *command) error {
	n := 0
	each := func(part []wire.Transaction) error {
		for i := range part {
			if _, err := fmt.Fprintln(c.env.Stdout, historyLine(&part[i])); err != nil {
				return err
			}
		}
		n += len(part)
		return nil
	}
	var err error
	if c.g.offline {
		err = historyOffline(ctx, c, each)
	} else {
		err = func() error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			return cl.HistoryEach(ctx, nil, each)
		}()
	}
	if err == nil && n == 0 {
		fmt.Fprintln(c.env.Stdout, "no transactions yet")
	}
	return err
}

// historyOffline passes the history of the state directory to each, in
// the parts query reads it in.
func historyOffline(ctx context.Context, c *command, each func([]wire.Transaction) error) error {
	e, err := c.openEngine(ctx, engineOptions{})
	if err != nil {
		return err
	}
	defer e.Close()
	_, err = query.Answer(e, nil, &wire.Request{Verb: wire.VerbHistory}, "/", func(p any) error { return each(p.([]wire.Transaction)) })
	return err
}

// mergeParts joins the parts one transaction's changes came in.
func mergeParts(rows []wire.Transaction) []wire.Transaction {
	out := rows[:0:0]
	for _, r := range rows {
		if n := len(out); n > 0 && out[n-1].ID == r.ID {
			out[n-1].Changes = append(out[n-1].Changes, r.Changes...)
			continue
		}
		out = append(out, r)
	}
	return out
}

// historyLine is a transaction in one line: number, time, uid, verb, and
// its first changes.
func historyLine(t *wire.Transaction) string {
	var what []string
	for _, ch := range t.Changes {
		what = append(what, describeChange(ch))
	}
	if more := t.Count - len(t.Changes); more > 0 {
		what = append(what, fmt.Sprintf("and %d more", more))
	}
	return fmt.Sprintf("%-6d %s  uid %-5d %-10s %s", t.ID, t.Time.Local().Format("2006-01-02 15:04:05"), t.UID, t.Verb, strings.Join(what, ", "))
}

func describeChange(ch wire.Change) string {
	return describeItem(wire.PlanItem{Action: ch.Action, Name: ch.Name, Version: ch.Version, OldVersion: ch.OldVersion})
}

// showTransaction shows one transaction whole.
func showTransaction(w io.Writer, t *wire.Transaction) error {
	tw := table(w)
	fmt.Fprintf(tw, "Transaction\t%d\n", t.ID)
	fmt.Fprintf(tw, "Time\t%s\n", t.Time.Local().Format("2006-01-02 15:04:05 MST"))
	fmt.Fprintf(tw, "UID\t%d\n", t.UID)
	fmt.Fprintf(tw, "Command\ttpm %s\n", strings.Join(append([]string{t.Verb}, t.Args...), " "))
	fmt.Fprintf(tw, "Prefix\t%s\n", t.Prefix)
	fmt.Fprintf(tw, "Changed\t%d package(s)\n", t.Count)
	for _, ch := range t.Changes {
		fmt.Fprintf(tw, "  %s\t(%s)\n", describeChange(ch), ch.Reason)
	}
	return tw.Flush()
}
