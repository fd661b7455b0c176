package query

import (
	"errors"
	"fmt"

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
			OldVersion: op.OldVersion, Requested: op.Requested, ReplacedBy: op.ReplacedBy, Unneeded: op.Unneeded})
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

// MarkOf is the mark a mark, hold or unhold request asks for, and the
// names it asks it for.
func MarkOf(req *wire.Request) (engine.Mark, []string, error) {
	switch req.Verb {
	case wire.VerbHold:
		return engine.MarkHold, req.Args, nil
	case wire.VerbUnhold:
		return engine.MarkUnhold, req.Args, nil
	case wire.VerbMark:
		if len(req.Args) == 0 || (req.Args[0] != string(engine.MarkAuto) && req.Args[0] != string(engine.MarkManual)) {
			return "", nil, errors.New("mark takes auto or manual, then names (tpm mark auto|manual NAME...)")
		}
		return engine.Mark(req.Args[0]), req.Args[1:], nil
	}
	return "", nil, fmt.Errorf("%q is not a mark", req.Verb)
}

// Marked is what SetMark did, as the wire protocol shows it.
func Marked(ms []engine.Marked) []wire.Marked {
	out := make([]wire.Marked, 0, len(ms))
	for _, m := range ms {
		out = append(out, wire.Marked{Name: m.Name, Version: m.Version, Mark: string(m.Mark), Changed: m.Changed})
	}
	return out
}
