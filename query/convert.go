package query

import (
	"tpm/engine"
	"tpm/messages/wire"
)

// The engine's results in the wire protocol's form, for the daemon's
// replies and tpm --offline's output alike.

// OpResult is what one applied op reports.
func OpResult(r engine.OpResult) wire.OpResult {
	w := r.Warnings
	if w == nil {
		w = []string{}
	}
	return wire.OpResult{Action: string(r.Action), Name: r.Name, Version: r.Version, OldVersion: r.OldVersion, Warnings: w}
}

// PlanItems is an engine plan (a removal, or an install of local files) as
// the wire protocol shows it.
func PlanItems(p *engine.Changeset) []wire.PlanItem {
	out := []wire.PlanItem{}
	for _, op := range p.Ops {
		out = append(out, wire.PlanItem{Action: string(op.Action), Name: op.Name, Version: op.Version,
			OldVersion: op.OldVersion, Requested: op.Requested, ReplacedBy: op.ReplacedBy})
	}
	return out
}

// PlanVersions is name → version of every op of an engine plan.
func PlanVersions(p *engine.Changeset) map[string]string {
	out := make(map[string]string, len(p.Ops))
	for _, op := range p.Ops {
		out[op.Name] = op.Version
	}
	return out
}

// Skipped is a package an engine plan left out.
func Skipped(s engine.Skipped) wire.Skipped {
	return wire.Skipped{Name: s.Name, Version: s.Version, Why: s.Why}
}

// Recovered is what recovery at open did.
func Recovered(r *engine.Recovery) wire.Recovered {
	nonNil := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	return wire.Recovered{Transaction: r.ID, Prefix: r.Prefix, Completed: nonNil(r.Completed),
		RolledBack: nonNil(r.RolledBack), ScriptsNotRun: nonNil(r.ScriptsNotRun)}
}
