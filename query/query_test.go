package query

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"tpm/engine"
	"tpm/index/indextest"
	"tpm/messages/wire"
	"tpm/repo/repotest"
	"tpm/store"
)

// host is an index of a small repository and an engine whose prefix has
// b 1.0 installed from it.
type host struct {
	repo   *indextest.Repo
	engine *engine.Engine
	prefix string
}

func newHost(t *testing.T) *host {
	t.Helper()
	r := indextest.New(t,
		repotest.Package{Name: "a", Version: "1.0", Deps: []string{"b"}, PayloadBytes: 64, Seed: 1},
		repotest.Package{Name: "b", Version: "1.0", PayloadBytes: 64, Seed: 2},
		repotest.Package{Name: "b", Version: "2.0", PayloadBytes: 64, Seed: 3},
		repotest.Package{Name: "zlib-dev", Version: "1.3", PayloadBytes: 64, Seed: 4},
	)
	state := t.TempDir()
	e, _, err := engine.Open(context.Background(), engine.Options{StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	h := &host{repo: r, engine: e, prefix: t.TempDir()}
	h.install(t, "b", "1.0")
	// Every transaction leaves a copy of the state database to restore.
	if _, err := os.Stat(filepath.Join(state, engine.DatabaseFile+store.BackupSuffix)); err != nil {
		t.Fatalf("no backup after a transaction: %v", err)
	}
	return h
}

func (h *host) install(t *testing.T, name, version string) {
	t.Helper()
	entry := h.repo.Snapshot.Entry(name, version)
	if entry == nil {
		t.Fatalf("%s %s is not in the index", name, version)
	}
	p, _, err := h.engine.PrepareInstall(context.Background(), engine.InstallRequest{Prefix: h.prefix,
		Archives: []engine.Archive{{Path: filepath.Join(h.repo.Dir, entry.File), Reason: store.Explicit}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.engine.Apply(context.Background(), p, engine.Hooks{}); err != nil {
		t.Fatal(err)
	}
}

func (h *host) installed(t *testing.T) map[string]*store.Receipt {
	t.Helper()
	rs, err := Receipts(h.engine, h.prefix)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func TestSearchFindsNewestOfEachNameAndMarksInstalled(t *testing.T) {
	h := newHost(t)
	all := Search(h.repo.Snapshot, h.installed(t), "")
	var got []string
	for _, r := range all {
		got = append(got, r.Name+" "+r.Version+" installed="+r.Installed)
	}
	want := []string{"a 1.0 installed=", "b 2.0 installed=1.0", "zlib-dev 1.3 installed="}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("search \"\" = %q, want %q", got, want)
	}
	// The description says "test package NAME": a word of it matches
	// every package, case aside.
	if n := len(Search(h.repo.Snapshot, nil, "TEST PACKAGE")); n != 3 {
		t.Fatalf("search by description found %d packages, want 3", n)
	}
	if r := Search(h.repo.Snapshot, nil, "ZLIB"); len(r) != 1 || r[0].Name != "zlib-dev" {
		t.Fatalf("search ZLIB = %+v", r)
	}
	if r := Search(h.repo.Snapshot, nil, "nothing-like-it"); r == nil || len(r) != 0 {
		t.Fatalf("search with no match = %#v, want an empty list (JSON [])", r)
	}
}

func TestInfo(t *testing.T) {
	h := newHost(t)
	d, err := Info(h.repo.Snapshot, h.installed(t), "b")
	if err != nil {
		t.Fatal(err)
	}
	if d.Version != "2.0" || d.Installed == nil || d.Installed.Version != "1.0" || d.SHA256 == "" || d.InfoHash == "" {
		t.Fatalf("info b = %+v", d)
	}
	a, err := Info(h.repo.Snapshot, h.installed(t), "a")
	if err != nil {
		t.Fatal(err)
	}
	if a.Installed != nil || len(a.Dependencies) != 1 || a.Dependencies[0] != "b" {
		t.Fatalf("info a = %+v", a)
	}
	if _, err := Info(h.repo.Snapshot, nil, "nope"); err == nil || !strings.Contains(err.Error(), "tpm sync") {
		t.Fatalf("info of an unknown package: %v, want the hint to sync", err)
	}
}

func TestListFilesOwns(t *testing.T) {
	h := newHost(t)
	list, err := ask[wire.InstalledPackage](h, wire.VerbList, h.prefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != "b" || list[0].Version != "1.0" || list[0].Prefix != h.prefix {
		t.Fatalf("list = %+v", list)
	}
	if other, err := ask[wire.InstalledPackage](h, wire.VerbList, t.TempDir()); err != nil || len(other) != 0 {
		t.Fatalf("list of another prefix = %+v, %v; want nothing", other, err)
	}

	payload := filepath.Join(h.prefix, "usr", "share", "b", "payload")
	files, err := ask[wire.PackageFile](h, wire.VerbFiles, h.prefix, "b")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range files {
		if f.Package != "b" {
			t.Fatalf("files b lists %+v", f)
		}
		if f.Path == payload && f.Type == "file" && f.SHA256 != "" {
			found = true
		}
	}
	if !found {
		t.Fatalf("files b = %+v, want %s among them", files, payload)
	}
	if _, err := ask[wire.PackageFile](h, wire.VerbFiles, h.prefix, "a"); err == nil || !strings.Contains(err.Error(), "not installed") {
		t.Fatalf("files of a package not installed: %v", err)
	}
	if _, err := ask[wire.PackageFile](h, wire.VerbFiles, h.prefix); err == nil {
		t.Fatal("files with no name was answered")
	}

	owners, err := Owns(h.engine, h.prefix, []string{payload + "/../payload"})
	if err != nil {
		t.Fatal(err)
	}
	if len(owners) != 1 || owners[0].Name != "b" || owners[0].Path != payload {
		t.Fatalf("owns payload = %+v", owners)
	}
	if _, err := Owns(h.engine, h.prefix, []string{filepath.Join(h.prefix, "etc", "passwd")}); err == nil || !strings.Contains(err.Error(), "not owned") {
		t.Fatalf("owns of an unowned path: %v, want \"not owned\"", err)
	}
	if _, err := Owns(h.engine, h.prefix, []string{"usr/share/b/payload"}); err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Fatalf("owns of a relative path: %v", err)
	}
}

// ask answers a streamed verb through Answer, its parts gathered.
func ask[T any](h *host, verb, prefix string, args ...string) ([]T, error) {
	out := []T{}
	_, err := Answer(h.engine, nil, &wire.Request{Verb: verb, Args: args}, prefix, func(part any) error {
		out = append(out, part.([]T)...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func TestVerifyReportsAChangedFile(t *testing.T) {
	h := newHost(t)
	if problems, err := ask[wire.Problem](h, wire.VerbVerify, h.prefix); err != nil || len(problems) != 0 {
		t.Fatalf("verify after install = %+v, %v; want no problem", problems, err)
	}
	payload := filepath.Join(h.prefix, "usr", "share", "b", "payload")
	if err := os.WriteFile(payload, []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	problems, err := ask[wire.Problem](h, wire.VerbVerify, h.prefix, "b")
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 1 || problems[0].Path != payload || problems[0].Kind != "content" {
		t.Fatalf("verify after a change = %+v", problems)
	}
}

func planOf(t *testing.T, h *host, args []string, upgrade bool, opts wire.Options) []string {
	t.Helper()
	opts.Upgrade = upgrade
	p, err := PlanInstall(h.repo.Snapshot, h.installed(t), args, opts)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, it := range p.Items() {
		out = append(out, it.Action+" "+it.Name+" "+it.Version)
	}
	return out
}

func TestPlanInstall(t *testing.T) {
	h := newHost(t)
	cases := []struct {
		name    string
		args    []string
		upgrade bool
		opts    wire.Options
		want    string
	}{
		{"installed dependency kept", []string{"a"}, false, wire.Options{}, "install a 1.0"},
		{"upgrade of everything", nil, true, wire.Options{}, "upgrade b 2.0"},
		{"upgrade of one", []string{"b"}, true, wire.Options{}, "upgrade b 2.0"},
		{"reinstall", []string{"b=1.0"}, false, wire.Options{Reinstall: true}, "reinstall b 1.0"},
		{"already installed", []string{"b"}, false, wire.Options{}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := strings.Join(planOf(t, h, c.args, c.upgrade, c.opts), "|"); got != c.want {
				t.Fatalf("plan = %q, want %q", got, c.want)
			}
		})
	}

	h.install(t, "b", "2.0")
	if got := planOf(t, h, []string{"b=1.0"}, false, wire.Options{AllowDowngrade: true}); strings.Join(got, "|") != "downgrade b 1.0" {
		t.Fatalf("downgrade plan = %q", got)
	}
	if _, err := PlanInstall(h.repo.Snapshot, h.installed(t), []string{"b=1.0"}, wire.Options{}); err == nil {
		t.Fatal("a downgrade without --allow-downgrade was planned")
	}
}

// A package waits for the packages of the plan it depends on, and only
// for them.
func TestPlanInstallOrdersByDependencies(t *testing.T) {
	r := indextest.New(t,
		repotest.Package{Name: "x", Version: "1", Deps: []string{"y"}, PayloadBytes: 64, Seed: 1},
		repotest.Package{Name: "y", Version: "1", PayloadBytes: 64, Seed: 2},
		repotest.Package{Name: "z", Version: "1", PayloadBytes: 64, Seed: 3},
	)
	p, err := PlanInstall(r.Snapshot, nil, []string{"x", "z"}, wire.Options{})
	if err != nil {
		t.Fatal(err)
	}
	after := map[string][]string{}
	for _, x := range p.Packages {
		var names []string
		for _, i := range x.After {
			names = append(names, p.Packages[i].Entry.Name)
		}
		after[x.Entry.Name] = names
	}
	if len(p.Packages) != 3 || !slices.Equal(after["x"], []string{"y"}) || len(after["y"]) != 0 || len(after["z"]) != 0 {
		t.Fatalf("waits: %v (plan %v)", after, p.Items())
	}
}

func TestPlanInstallRefusals(t *testing.T) {
	h := newHost(t)
	for _, c := range []struct {
		args    []string
		upgrade bool
		want    string
	}{
		{[]string{"nope"}, false, "no package named nope"},
		{[]string{"a"}, true, "not installed, so it cannot be upgraded"},
		{[]string{"b>=9"}, false, ""},
		{[]string{"b=="}, false, ""},
	} {
		_, err := PlanInstall(h.repo.Snapshot, h.installed(t), c.args, wire.Options{Upgrade: c.upgrade})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("plan %q (upgrade %v): %v, want an error containing %q", c.args, c.upgrade, err, c.want)
		}
	}
}

func TestCheckExpect(t *testing.T) {
	got := map[string]string{"a": "1.0", "b": "1.0"}
	if err := CheckExpect(nil, got); err != nil {
		t.Fatalf("nothing expected: %v", err)
	}
	if err := CheckExpect(map[string]string{"a": "1.0", "b": "1.0"}, got); err != nil {
		t.Fatalf("same plan: %v", err)
	}
	for _, expect := range []map[string]string{{"a": "1.0"}, {"a": "1.0", "b": "2.0"}, {"a": "1.0", "c": "1.0"}} {
		if err := CheckExpect(expect, got); !errors.Is(err, ErrPlanChanged) {
			t.Errorf("expect %v against %v: %v, want ErrPlanChanged", expect, got, err)
		}
	}
}

func TestAnswerChecksArguments(t *testing.T) {
	h := newHost(t)
	for _, req := range []wire.Request{
		{Verb: wire.VerbSearch, Args: []string{"a", "b"}},
		{Verb: wire.VerbInfo},
		{Verb: wire.VerbInfo, Args: []string{"a", "b"}},
		{Verb: wire.VerbInstall, Args: []string{"a"}},
	} {
		if _, err := Answer(h.engine, h.repo.Snapshot, &req, h.prefix, nil); err == nil {
			t.Errorf("%s %q was answered", req.Verb, req.Args)
		}
	}
	res, err := Answer(h.engine, h.repo.Snapshot, &wire.Request{Verb: wire.VerbPlan, Args: []string{"a"}}, h.prefix, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p := res.(*wire.PlanResult).Plan; len(p) != 1 || p[0].Name != "a" {
		t.Fatalf("plan a = %+v", p)
	}
	if _, err := Prefix(&wire.Request{Prefix: "relative/dir"}, "/"); err == nil {
		t.Fatal("a relative prefix was accepted")
	}
	if p, err := Prefix(&wire.Request{}, h.prefix+"/"); err != nil || p != h.prefix {
		t.Fatalf("default prefix = %q, %v", p, err)
	}
}

// TestReplyStreamsInParts: the daemon's answer to a streamed verb is its
// parts as items, then a result without data; a part that cannot be sent
// (the CLI left) ends the answer with no final reply.
func TestReplyStreamsInParts(t *testing.T) {
	h := newHost(t)
	var got []*wire.Reply
	send := func(r *wire.Reply) error { got = append(got, r); return nil }
	final := Reply(h.engine, nil, &wire.Request{Verb: wire.VerbFiles, Args: []string{"b"}}, h.prefix, send)
	if final == nil || final.Type != wire.ReplyResult || final.Data != nil {
		t.Fatalf("final reply %+v, want a result without data", final)
	}
	if len(got) == 0 || got[0].Type != wire.ReplyItems {
		t.Fatalf("parts %+v, want items", got)
	}
	gone := errors.New("gone")
	if final := Reply(h.engine, nil, &wire.Request{Verb: wire.VerbList}, h.prefix, func(*wire.Reply) error { return gone }); final != nil {
		t.Fatalf("the CLI left and the answer went on: %+v", final)
	}
	if final := Reply(h.engine, nil, &wire.Request{Verb: wire.VerbInfo, Args: []string{"b"}}, h.prefix, send); final.Type != wire.ReplyError || !strings.Contains(final.Error, "only tpmd has") {
		t.Fatalf("info without an index: %+v", final)
	}
	got = nil
	final = Reply(h.engine, h.repo.Snapshot, &wire.Request{Verb: wire.VerbPlan, Args: []string{"a"}}, h.prefix, send)
	if final.Type != wire.ReplyResult || len(got) != 1 || got[0].Type != wire.ReplyPlan {
		t.Fatalf("plan: final %+v after %+v, want the plan then its result", final, got)
	}
}

// TestOnlyTheUpgradeVerbUpgrades: an install request that carries the
// plan's upgrade option is still an install.
func TestOnlyTheUpgradeVerbUpgrades(t *testing.T) {
	for verb, want := range map[string]bool{wire.VerbInstall: false, wire.VerbUpgrade: true, wire.VerbPlan: true} {
		if got := InstallOptions(&wire.Request{Verb: verb, Options: wire.Options{Upgrade: true}}).Upgrade; got != want {
			t.Errorf("%s with the upgrade option: upgrade %v, want %v", verb, got, want)
		}
	}
	if InstallOptions(&wire.Request{Verb: wire.VerbUpgrade}).Upgrade != true {
		t.Error("the upgrade verb without the option does not upgrade")
	}
}
