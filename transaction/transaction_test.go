package transaction

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"tpm/engine"
	"tpm/manifest"
	"tpm/query"
	"tpm/store"
)

func entry(name string) *store.CatalogEntry {
	return &store.CatalogEntry{Manifest: manifest.Manifest{Name: name, Version: "1.0"}, File: name + "-1.0-any.tpkg", Size: 10}
}

// planOf is a plan of c (depends on a), b (alone), a, in an order where a
// comes after c so the batching rule, not the plan's order, decides.
func planOf(actions ...engine.Action) *Plan {
	p := &query.InstallPlan{Packages: []query.Planned{
		{Entry: entry("a"), Action: engine.Install, Requested: false},
		{Entry: entry("b"), Action: engine.Install, Requested: true},
		{Entry: entry("c"), Action: engine.Install, Requested: true, After: []int{0}},
	}}
	for i, a := range actions {
		p.Packages[i].Action = a
	}
	return &Plan{Install: p, Prefix: "/p", Reasons: map[string]store.Reason{}}
}

func names(b Batch) []string {
	var out []string
	for _, e := range b.Entries {
		out = append(out, e.Name)
	}
	return out
}

func TestNextWaitsForDependencies(t *testing.T) {
	tx := New()
	tx.Planned(planOf())
	tx.Downloaded(entry("c").File, "/cache/c")
	if b, ok := tx.Next(); ok {
		t.Fatalf("c went in before a, which it depends on: %v", names(b))
	}
	tx.Downloaded(entry("a").File, "/cache/a")
	b, ok := tx.Next()
	if !ok || !slices.Equal(names(b), []string{"a", "c"}) {
		t.Fatalf("batch %v %v, want a and c together (c's dependency goes in with it)", names(b), ok)
	}
	if _, ok := tx.Next(); ok {
		t.Fatal("a second batch started while one is applied")
	}
	if got := b.Request.Archives[0].Reason; got != store.Dependency {
		t.Fatalf("a, pulled in, has reason %q", got)
	}
	if got := b.Request.Archives[1].Reason; got != store.Explicit {
		t.Fatalf("c, asked for, has reason %q", got)
	}
	in := tx.Applied([]engine.OpResult{{Name: "a"}, {Name: "c"}}, nil)
	if len(in) != 2 || tx.Done() {
		t.Fatalf("applied %d, done %v; want 2 and b still to come", len(in), tx.Done())
	}
	tx.Downloaded(entry("b").File, "/cache/b")
	if b, ok := tx.Next(); !ok || !slices.Equal(names(b), []string{"b"}) {
		t.Fatalf("batch %v, want b", names(b))
	}
	tx.Applied([]engine.OpResult{{Name: "b"}}, nil)
	if !tx.Done() || len(tx.Results()) != 3 {
		t.Fatalf("done %v with %d results, want done with 3", tx.Done(), len(tx.Results()))
	}
}

func TestBatchKeepsOneIntent(t *testing.T) {
	tx := New()
	tx.Planned(planOf(engine.Reinstall, engine.Install))
	tx.Downloaded(entry("a").File, "/cache/a")
	tx.Downloaded(entry("b").File, "/cache/b")
	b, _ := tx.Next()
	if !slices.Equal(names(b), []string{"a"}) || !b.Request.Intent.Reinstall {
		t.Fatalf("batch %v %+v, want a alone, reinstalled", names(b), b.Request.Intent)
	}
}

func TestUpgradeKeepsReasonAndNamesOld(t *testing.T) {
	p := planOf()
	p.Install.Packages[1].Action, p.Install.Packages[1].Old = engine.Upgrade, "0.9"
	p.Reasons["b"] = store.Dependency
	tx := New()
	tx.Planned(p)
	tx.Downloaded(entry("b").File, "/cache/b")
	b, _ := tx.Next()
	if b.Request.Archives[0].Reason != store.Dependency || b.Old["b"] != "0.9" {
		t.Fatalf("upgrade of b: reason %q, old %q; want the installed reason and 0.9", b.Request.Archives[0].Reason, b.Old["b"])
	}
}

func TestStopWaitsForTheWorkThatRuns(t *testing.T) {
	tx := New()
	if tx.Stop(ErrCancelled) {
		t.Fatal("a transaction being planned may end at once")
	}
	tx.Planned(planOf())
	if !tx.Stop(errors.New("later")) || !errors.Is(tx.Stopping(), ErrCancelled) {
		t.Fatalf("stop once planned: %v; the first reason must stay", tx.Stopping())
	}
	tx.Downloaded(entry("a").File, "/cache/a")
	if _, ok := tx.Next(); ok {
		t.Fatal("a stopped transaction started a batch")
	}
}

func TestPartialNamesWhatWentIn(t *testing.T) {
	tx := New()
	tx.Planned(planOf())
	tx.Downloaded(entry("b").File, "/cache/b")
	tx.Next()
	if tx.Placed() != true {
		t.Fatal("a transaction applying a package may still be cancelled")
	}
	tx.Applied([]engine.OpResult{{Name: "b"}}, nil)
	tx.Downloaded(entry("a").File, "/cache/a")
	tx.Next()
	err := tx.Partial(errors.New("boom"))
	tx.Applied(nil, err)
	if !strings.Contains(err.Error(), "already installed: b") || tx.Done() {
		t.Fatalf("partial failure: %v, done %v", err, tx.Done())
	}
}

func TestRemovalIsOneStep(t *testing.T) {
	tx := New()
	tx.Removing("/p")
	if !tx.Busy() || !tx.Placed() || tx.Plan() != nil {
		t.Fatal("a removal being applied must be busy and placed")
	}
	if in := tx.Applied([]engine.OpResult{{Name: "x"}}, nil); in != nil || !tx.Done() {
		t.Fatalf("removal applied: %v, done %v", in, tx.Done())
	}
}
