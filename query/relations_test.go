package query

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"tpm/engine"
	"tpm/index/indextest"
	"tpm/messages/wire"
	"tpm/repo/repotest"
)

// TestPlanRelations: through a real repository scan and signed index, a
// virtual name is planned as its first provider by name (said, with the
// others), what needs it waits for the provider, and installing postfix
// with exim4 installed plans exim4's removal, shown and confirmed by
// version like the rest; info shows the relations.
func TestPlanRelations(t *testing.T) {
	mta := []string{"mail-transport-agent"}
	r := indextest.New(t,
		repotest.Package{Name: "mawk", Version: "1.3", Provides: []string{"awk"}, Seed: 1},
		repotest.Package{Name: "gawk", Version: "5.2", Provides: []string{"awk"}, Seed: 2},
		repotest.Package{Name: "script", Version: "1", Deps: []string{"awk"}, Seed: 3},
		repotest.Package{Name: "postfix", Version: "3.8", Provides: mta, Conflicts: mta, Replaces: mta, Seed: 4},
		repotest.Package{Name: "exim4", Version: "4.96", Provides: mta, Conflicts: mta, Replaces: mta, Seed: 5},
	)
	e, _, err := engine.Open(context.Background(), engine.Options{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	h := &host{repo: r, engine: e, prefix: t.TempDir()}

	p, err := PlanInstall(r.Snapshot, h.installed(t), []string{"awk"}, wire.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if it := p.Items(); len(it) != 1 || it[0].Name != "gawk" || it[0].For != "awk" || strings.Join(it[0].Alternatives, ",") != "mawk" || !it[0].Requested {
		t.Fatalf("awk: %+v", it)
	}
	p, err = PlanInstall(r.Snapshot, h.installed(t), []string{"script"}, wire.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Packages) != 2 || p.Packages[1].Entry.Name != "script" || len(p.Packages[1].After) != 1 || p.Packages[1].After[0] != 0 {
		t.Fatalf("script waits for %v in %+v", p.Packages[1].After, p.Items())
	}

	h.install(t, "exim4", "4.96")
	p, err = PlanInstall(r.Snapshot, h.installed(t), []string{"postfix"}, wire.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var items []string
	for _, it := range p.Items() {
		items = append(items, it.Action+" "+it.Name+" "+it.Version+" "+it.ReplacedBy)
	}
	if strings.Join(items, "|") != "install postfix 3.8 |remove exim4 4.96 postfix" {
		t.Fatalf("postfix: %q", items)
	}
	if v := p.Versions(); len(v) != 2 || v["exim4"] != "4.96" {
		t.Errorf("versions to confirm: %v", v)
	}
	// The engine, given postfix's file, removes exactly what the plan showed.
	cs, _, err := e.PrepareInstall(context.Background(), engine.InstallRequest{Prefix: h.prefix,
		Archives: []engine.Archive{{Path: filepath.Join(r.Dir, r.Snapshot.Entry("postfix", "3.8").File)}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckExpect(p.Versions(), PlanVersions(cs)); err != nil {
		t.Errorf("engine and plan disagree: %v", err)
	}

	info, err := Info(r.Snapshot, nil, "postfix")
	if err != nil || strings.Join(info.Provides, ",") != "mail-transport-agent" || len(info.Conflicts) != 1 || len(info.Replaces) != 1 {
		t.Errorf("info: %+v %v", info, err)
	}
	if _, err := Info(r.Snapshot, nil, "awk"); err == nil || err.Error() != "awk is a virtual package, provided by gawk, mawk: ask tpm info about one of those" {
		t.Errorf("info awk: %v", err)
	}
}
