package query

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tpm/engine"
	"tpm/index/indextest"
	"tpm/messages/wire"
	"tpm/repo/repotest"
	"tpm/store"
)

// TestPlanKeepsHeldPackages: an upgrade leaves a held package as it is
// and says so; another version of it is refused naming the hold.
func TestPlanKeepsHeldPackages(t *testing.T) {
	h := newHost(t)
	if _, err := h.engine.SetMark(h.prefix, []string{"b"}, engine.MarkHold); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{nil, {"b"}} {
		p, err := PlanInstall(h.repo.Snapshot, h.installed(t), args, wire.Options{Upgrade: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Packages) != 0 || len(p.Held) != 1 || p.Held[0] != (wire.Skipped{Name: "b", Version: "1.0", Why: "held"}) {
			t.Errorf("upgrade %v of held b: %+v, held %+v", args, p.Items(), p.Held)
		}
	}
	var held *engine.HeldError
	if _, err := PlanInstall(h.repo.Snapshot, h.installed(t), []string{"b=2.0"}, wire.Options{}); !errors.As(err, &held) {
		t.Errorf("install of another version of held b: %v", err)
	}
	if got := strings.Join(planOf(t, h, []string{"a"}, false, wire.Options{}), "|"); got != "install a 1.0" {
		t.Errorf("a held dependency that meets a need: plan %q", got)
	}
	list, err := ask[wire.InstalledPackage](h, wire.VerbList, h.prefix)
	if err != nil || len(list) != 1 || !list[0].Held {
		t.Errorf("list: %+v, %v", list, err)
	}
}

// TestPlanRemoval: the plan of a removal or an autoremove is the engine's,
// with what is no longer needed said so, and needs no index.
func TestPlanRemoval(t *testing.T) {
	h := newHost(t)
	h.install(t, "a", "1.0")
	if _, err := h.engine.SetMark(h.prefix, []string{"b"}, engine.MarkAuto); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		req  wire.Request
		want string
	}{
		{wire.Request{Verb: wire.VerbPlan, Options: wire.Options{Remove: true, Autoremove: true}}, ""},
		{wire.Request{Verb: wire.VerbPlan, Args: []string{"a"}, Options: wire.Options{Remove: true, Autoremove: true}}, "remove a true false|remove b false true"},
		{wire.Request{Verb: wire.VerbPlan, Args: []string{"a"}, Options: wire.Options{Remove: true}}, "remove a true false"},
	} {
		data, err := Answer(h.engine, nil, &c.req, h.prefix, nil)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, it := range data.(*wire.PlanResult).Plan {
			got = append(got, fmt.Sprint(it.Action, " ", it.Name, " ", it.Requested, " ", it.Unneeded))
		}
		if strings.Join(got, "|") != c.want {
			t.Errorf("%+v: plan %q, want %q", c.req, got, c.want)
		}
	}
	if _, err := Answer(h.engine, nil, &wire.Request{Verb: wire.VerbPlan, Options: wire.Options{Remove: true}}, h.prefix, nil); err == nil {
		t.Error("a removal of nothing was planned")
	}
}

// fillHistory records n transactions of one change each, as quickly as
// one bbolt transaction per 10,000 allows.
func fillHistory(tb testing.TB, e *engine.Engine, n int) {
	tb.Helper()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for done := 0; done < n; {
		err := e.State().Update(func(tx *store.StateTx) error {
			for i := 0; i < 10_000 && done < n; i++ {
				tag := store.HistoryTag{UID: 1000, Verb: "install", Args: []string{"p"}, Prefix: "/"}
				change := store.HistoryChange{Action: "install", Name: fmt.Sprint("p", done), Version: "1.0", Reason: store.Explicit}
				if _, err := tx.AddHistory(tag, change, now.Add(time.Duration(done)*time.Second)); err != nil {
					return err
				}
				if err := tx.ClearJournal(); err != nil {
					return err
				}
				done++
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
}

func TestHistoryStreamsNewestFirst(t *testing.T) {
	h := newHost(t) // b 1.0 installed: transaction 1
	fillHistory(t, h.engine, 600)
	var parts [][]wire.Transaction
	_, err := Answer(h.engine, nil, &wire.Request{Verb: wire.VerbHistory}, h.prefix, func(p any) error {
		parts = append(parts, p.([]wire.Transaction))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 3 || len(parts[0]) != Chunk || len(parts[2]) != 601-2*Chunk {
		t.Fatalf("%d parts", len(parts))
	}
	first, last := parts[0][0], parts[2][len(parts[2])-1]
	if first.ID != 601 || first.Changes[0].Name != "p599" || last.ID != 1 || last.Changes[0].Name != "b" || last.UID != h.uid() {
		t.Errorf("newest %+v, oldest %+v", first, last)
	}
	for i := 1; i < len(parts); i++ {
		if parts[i][0].ID != parts[i-1][len(parts[i-1])-1].ID-1 {
			t.Errorf("part %d starts at %d after %d", i, parts[i][0].ID, parts[i-1][len(parts[i-1])-1].ID)
		}
	}
}

func (h *host) uid() int {
	var uid int
	h.engine.State().View(func(tx *store.StateTx) error {
		e, _ := tx.HistoryEntry(1)
		uid = e.UID
		return nil
	})
	return uid
}

// BenchmarkHistory answers tpm history from a history of 100,000
// transactions: the first part (what a CLI shows first), and the whole
// stream.
func BenchmarkHistory(b *testing.B) {
	e, _, err := engine.Open(context.Background(), engine.Options{StateDir: filepath.Join(b.TempDir(), "state")})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	fillHistory(b, e, store.HistoryBound)
	errStop := errors.New("first part only")
	req := &wire.Request{Verb: wire.VerbHistory}
	b.Run("first-part", func(b *testing.B) {
		for b.Loop() {
			if _, err := Answer(e, nil, req, "/", func(any) error { return errStop }); !errors.Is(err, errStop) {
				b.Fatal(err)
			}
		}
	})
	b.Run("all", func(b *testing.B) {
		for b.Loop() {
			n := 0
			if _, err := Answer(e, nil, req, "/", func(p any) error { n += len(p.([]wire.Transaction)); return nil }); err != nil || n != store.HistoryBound {
				b.Fatal(n, err)
			}
		}
	})
	b.Run("one", func(b *testing.B) {
		for b.Loop() {
			if _, err := Answer(e, nil, &wire.Request{Verb: wire.VerbHistory, Args: []string{"50000"}}, "/", func(any) error { return nil }); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestPlanRefusesReplacingAHeldPackage: the plan refuses, before anything
// downloads, an install that would take a held package away.
func TestPlanRefusesReplacingAHeldPackage(t *testing.T) {
	mta := []string{"mail-transport-agent"}
	r := indextest.New(t,
		repotest.Package{Name: "postfix", Version: "3.8", Provides: mta, Conflicts: mta, Replaces: mta, Seed: 4},
		repotest.Package{Name: "exim4", Version: "4.96", Provides: mta, Conflicts: mta, Replaces: mta, Seed: 5},
	)
	e, _, err := engine.Open(context.Background(), engine.Options{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	h := &host{repo: r, engine: e, prefix: t.TempDir()}
	h.install(t, "exim4", "4.96")
	if _, err := e.SetMark(h.prefix, []string{"exim4"}, engine.MarkHold); err != nil {
		t.Fatal(err)
	}
	_, err = PlanInstall(r.Snapshot, h.installed(t), []string{"postfix"}, wire.Options{})
	if err == nil || err.Error() != "cannot install postfix 3.8: it replaces exim4 4.96, which is held: run tpm unhold exim4 first" {
		t.Fatalf("postfix over held exim4: %v", err)
	}
}
