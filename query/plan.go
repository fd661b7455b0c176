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
	// Remove are the installed packages that packages of the plan conflict
	// with and replace: the engine removes each in the transaction of the
	// package that replaces it (resolve.Displaced, asked by both).
	Remove []resolve.Displacement
	// Held are the installed packages an upgrade leaves as they are
	// because they are held (tpm hold), each at its version.
	Held []wire.Skipped
	// Undo says the plan is an undo's (or a rollback's): its Packages go
	// back to old versions and Removes go, all in one engine transaction
	// once every file is here, so it is applied whole or not at all.
	Undo    bool
	Removes []*store.Receipt
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
	// For and Alternatives: see resolve.Choice.
	For          string
	Alternatives []string
	// Reason is, in an undo, the reason the package had before.
	Reason store.Reason
}

// Items is the plan as the wire protocol shows it.
func (p *InstallPlan) Items() []wire.PlanItem {
	out := []wire.PlanItem{}
	for _, x := range p.Packages {
		out = append(out, wire.PlanItem{Action: string(x.Action), Name: x.Entry.Name, Version: x.Entry.Version,
			OldVersion: x.Old, Requested: x.Requested, Size: x.Entry.Size, For: x.For, Alternatives: x.Alternatives})
	}
	for _, r := range p.Removes {
		out = append(out, wire.PlanItem{Action: string(engine.Remove), Name: r.Name, Version: r.Version,
			OldVersion: r.Version, Requested: true})
	}
	for _, d := range p.Remove {
		out = append(out, wire.PlanItem{Action: string(engine.Remove), Name: d.Package.Name, Version: d.Package.Version,
			OldVersion: d.Package.Version, ReplacedBy: d.By.Name})
	}
	return out
}

// Versions is name → version of every package the plan installs.
func (p *InstallPlan) Versions() map[string]string {
	out := make(map[string]string, len(p.Packages))
	for _, x := range p.Packages {
		out[x.Entry.Name] = x.Entry.Version
	}
	for _, r := range p.Removes {
		out[r.Name] = r.Version
	}
	for _, d := range p.Remove {
		out[d.Package.Name] = d.Package.Version
	}
	return out
}

// Empty says whether the plan does nothing.
func (p *InstallPlan) Empty() bool {
	return len(p.Packages) == 0 && len(p.Removes) == 0 && len(p.Remove) == 0
}

// Intent is what the plan of x asks of the engine, so the engine decides
// the package's action as the plan did.
func (x Planned) Intent() engine.Intent {
	return engine.Intent{Reinstall: x.Action == engine.Reinstall, AllowDowngrade: x.Action == engine.Downgrade}
}

// InstallOptions are the options a request's plan is made with: the one
// place that says whether it upgrades (the upgrade verb, or a plan asked
// for as one), so an install never becomes an upgrade.
func InstallOptions(req *wire.Request) wire.Options {
	opts := req.Options
	opts.Upgrade = req.Verb == wire.VerbUpgrade || (req.Verb == wire.VerbPlan && opts.Upgrade)
	return opts
}

// PlanInstall resolves an install (or, with opts.Upgrade, an upgrade: of
// the named packages, or of every installed one when none is named) against
// the index and the receipts of the prefix.
func PlanInstall(idx *index.Snapshot, installed map[string]*store.Receipt, args []string, opts wire.Options) (*InstallPlan, error) {
	if idx.Expired(time.Now()) {
		return nil, idx.ExpiredError()
	}
	want, err := wanted(idx, installed, args, opts.Upgrade)
	if err != nil {
		return nil, err
	}
	var have []*manifest.Manifest
	for _, r := range installed {
		have = append(have, &r.Manifest)
	}
	var held []wire.Skipped
	if opts.Upgrade {
		// Upgrades ask for exactly the newest version, so the resolver does
		// not settle for the installed one.
		want, held = withoutHeld(upgrades(idx, have, want), installed)
	}
	if opts.Reinstall || opts.AllowDowngrade {
		// The named packages are chosen again from the index even though
		// an installed version satisfies them.
		have = without(have, want)
	}
	choices, err := resolve.Resolve(idx.Resolver(), have, want)
	if err != nil {
		return nil, err
	}
	p, err := planFrom(idx, installed, choices, engine.Intent{Reinstall: opts.Reinstall, AllowDowngrade: opts.AllowDowngrade})
	if err != nil {
		return nil, err
	}
	p.Held = held
	if p.Remove, err = displaced(installed, choices); err != nil {
		return nil, err
	}
	return p, nil
}

// displaced is what the choices take away: the installed packages they
// conflict with and replace, checked to leave every other installed
// package's dependencies met (by the choices, say, that provide the same).
func displaced(installed map[string]*store.Receipt, choices []resolve.Choice) ([]resolve.Displacement, error) {
	var have, add []*manifest.Manifest
	for _, r := range installed {
		have = append(have, &r.Manifest)
	}
	for _, ch := range choices {
		add = append(add, ch.Manifest)
	}
	gone, err := resolve.Displaced(have, add)
	if err != nil || len(gone) == 0 {
		return nil, err
	}
	for _, d := range gone {
		if r := installed[d.Package.Name]; r.Held {
			return nil, engine.ReplacesHeld(d.By, r)
		}
	}
	change := resolve.Change{Installed: have, Add: add}
	for _, d := range gone {
		change.Remove = append(change.Remove, d.Package.Name)
	}
	if _, err := resolve.Order(change); err != nil {
		return nil, err
	}
	return gone, nil
}

// wanted parses the names (and constraints) asked for, each of which the
// index must have, and for an upgrade the prefix too.
func wanted(idx *index.Snapshot, installed map[string]*store.Receipt, args []string, upgrade bool) ([]manifest.Constraint, error) {
	var want []manifest.Constraint
	for _, a := range args {
		con, err := manifest.ParseConstraint(a)
		if err != nil {
			return nil, fmt.Errorf("%q: %v", a, err)
		}
		if upgrade && installed[con.Name] == nil {
			return nil, fmt.Errorf("%s is not installed, so it cannot be upgraded: use tpm install", con.Name)
		}
		if len(idx.Versions(con.Name)) == 0 && len(idx.Providers(con.Name)) == 0 {
			return nil, NoPackage(con.Name)
		}
		want = append(want, con)
	}
	return want, nil
}

// upgrades asks for the newest version of each installed package, or of
// those named when some are.
func upgrades(idx *index.Snapshot, have []*manifest.Manifest, named []manifest.Constraint) []manifest.Constraint {
	ups := resolve.Upgrades(idx.Resolver(), have)
	if len(named) == 0 {
		return ups
	}
	var sel []manifest.Constraint
	for _, u := range ups {
		if slices.ContainsFunc(named, func(w manifest.Constraint) bool { return w.Name == u.Name }) {
			sel = append(sel, u)
		}
	}
	return sel
}

// withoutHeld takes out of an upgrade's wants the packages that are held,
// and returns them as what it leaves as they are.
func withoutHeld(want []manifest.Constraint, installed map[string]*store.Receipt) ([]manifest.Constraint, []wire.Skipped) {
	var held []wire.Skipped
	kept := want[:0:0]
	for _, w := range want {
		if r := installed[w.Name]; r != nil && r.Held {
			held = append(held, wire.Skipped{Name: r.Name, Version: r.Version, Why: "held"})
			continue
		}
		kept = append(kept, w)
	}
	return kept, held
}

// without is have less the packages named in want.
func without(have []*manifest.Manifest, want []manifest.Constraint) []*manifest.Manifest {
	kept := have[:0:0]
	for _, m := range have {
		if !slices.ContainsFunc(want, func(w manifest.Constraint) bool { return w.Name == m.Name }) {
			kept = append(kept, m)
		}
	}
	return kept
}

// planFrom turns the resolver's choices into the plan: each with its index
// entry and action, those that need nothing left out, and the packages of
// the plan each depends on.
func planFrom(idx *index.Snapshot, installed map[string]*store.Receipt, choices []resolve.Choice, intent engine.Intent) (*InstallPlan, error) {
	p := &InstallPlan{}
	at := make(map[string][]int) // the plan's packages so far, by name and by the names they provide
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
		x := Planned{Entry: e, Action: action, Requested: ch.Requested, For: ch.For, Alternatives: ch.Alternatives}
		if old != nil {
			x.Old = old.Version
		}
		for _, dep := range ch.Dependencies {
			for _, name := range dep.Names() {
				for _, i := range at[name] {
					if !slices.Contains(x.After, i) {
						x.After = append(x.After, i)
					}
				}
			}
		}
		at[ch.Name] = append(at[ch.Name], len(p.Packages))
		for _, pr := range ch.Provides {
			at[pr.Name] = append(at[pr.Name], len(p.Packages))
		}
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
