package query

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"tpm/engine"
	"tpm/index"
	"tpm/manifest"
	"tpm/messages/wire"
	"tpm/resolve"
	"tpm/store"
)

// InstallPlan is what an install or upgrade takes from the index:
// dependencies first, versions and alternatives as the resolver chooses.
// File conflicts are the engine's to find once the archives are here.
type InstallPlan struct {
	Packages []Planned
}

// Planned is one package of a plan with the index entry it comes from.
type Planned struct {
	Entry     *store.CatalogEntry
	Action    engine.Action
	Old       string // the version it replaces, if any
	Requested bool   // named by the user rather than pulled in
	// After are the packages of the plan (by index, all earlier) that this
	// one depends on: it is applied once they are. The others may go in
	// any order, so a package that is here first is installed first.
	After []int
}

// Items is the plan as the wire protocol shows it.
func (p *InstallPlan) Items() []wire.PlanItem {
	out := []wire.PlanItem{}
	for _, x := range p.Packages {
		out = append(out, wire.PlanItem{Action: string(x.Action), Name: x.Entry.Name, Version: x.Entry.Version,
			OldVersion: x.Old, Requested: x.Requested, Size: x.Entry.Size})
	}
	return out
}

// Versions is name → version of every package the plan installs.
func (p *InstallPlan) Versions() map[string]string {
	out := make(map[string]string, len(p.Packages))
	for _, x := range p.Packages {
		out[x.Entry.Name] = x.Entry.Version
	}
	return out
}

// Intent is what the plan of x asks of the engine, so the engine decides
// the package's action as the plan did.
func (x Planned) Intent() engine.Intent {
	return engine.Intent{Reinstall: x.Action == engine.Reinstall, AllowDowngrade: x.Action == engine.Downgrade}
}

// PlanInstall resolves an install (or, with upgrade, an upgrade: of the
// named packages, or of every installed one when none is named) against the
// index and the receipts of the prefix.
func PlanInstall(idx *index.Snapshot, installed map[string]*store.Receipt, args []string, upgrade bool, opts wire.Options) (*InstallPlan, error) {
	if idx.Expired(time.Now()) {
		return nil, idx.ExpiredError()
	}
	var want []manifest.Constraint
	for _, a := range args {
		con, err := manifest.ParseConstraint(a)
		if err != nil {
			return nil, fmt.Errorf("%q: %v", a, err)
		}
		if upgrade && installed[con.Name] == nil {
			return nil, fmt.Errorf("%s is not installed, so it cannot be upgraded: use tpm install", con.Name)
		}
		if len(idx.Versions(con.Name)) == 0 {
			return nil, NoPackage(con.Name)
		}
		want = append(want, con)
	}
	var have []*manifest.Manifest
	for _, r := range installed {
		have = append(have, &r.Manifest)
	}
	if upgrade {
		// Upgrades ask for exactly the newest version, so the resolver does
		// not settle for the installed one.
		ups := resolve.Upgrades(idx.Resolver(), have)
		if len(want) > 0 {
			named := map[string]bool{}
			for _, w := range want {
				named[w.Name] = true
			}
			var sel []manifest.Constraint
			for _, u := range ups {
				if named[u.Name] {
					sel = append(sel, u)
				}
			}
			ups = sel
		}
		want = ups
	}
	if opts.Reinstall || opts.AllowDowngrade {
		// The named packages are chosen again from the index even though
		// an installed version satisfies them.
		named := map[string]bool{}
		for _, w := range want {
			named[w.Name] = true
		}
		kept := have[:0:0]
		for _, m := range have {
			if !named[m.Name] {
				kept = append(kept, m)
			}
		}
		have = kept
	}
	choices, err := resolve.Resolve(idx.Resolver(), have, want)
	if err != nil {
		return nil, err
	}
	intent := engine.Intent{Reinstall: opts.Reinstall, AllowDowngrade: opts.AllowDowngrade}
	p := &InstallPlan{}
	at := make(map[string]int) // the plan's packages so far, by name
	for _, ch := range choices {
		e := idx.Entry(ch.Name, ch.Version)
		if e == nil {
			return nil, NoPackage(ch.Name)
		}
		old := installed[ch.Name]
		action, skip, err := intent.ActionFor(ch.Manifest, old)
		if err != nil {
			return nil, err
		}
		if skip {
			continue
		}
		x := Planned{Entry: e, Action: action, Requested: ch.Requested}
		if old != nil {
			x.Old = old.Version
		}
		for _, dep := range ch.Dependencies {
			for _, name := range dep.Names() {
				if i, ok := at[name]; ok && !slices.Contains(x.After, i) {
					x.After = append(x.After, i)
				}
			}
		}
		at[ch.Name] = len(p.Packages)
		p.Packages = append(p.Packages, x)
	}
	return p, nil
}

// ErrPlanChanged refuses a transaction whose plan is not the one the user
// confirmed.
var ErrPlanChanged = errors.New("the index changed since the plan was shown; run the command again")

// CheckExpect compares the versions a transaction would install with the
// ones the user confirmed (none: nothing to compare).
func CheckExpect(expect, got map[string]string) error {
	if expect == nil {
		return nil
	}
	if len(got) != len(expect) {
		return ErrPlanChanged
	}
	for n, v := range expect {
		if got[n] != v {
			return ErrPlanChanged
		}
	}
	return nil
}
