package resolve

import (
	"slices"

	"tpm/manifest"
)

// How the resolver meets a constraint by what a package provides, and
// chooses among the packages that may.

// providers is the index's providers of name, asked for once per
// resolution (see versions).
func (r *resolver) providers(name string) []*manifest.Manifest {
	ps, ok := r.provSeen[name]
	if !ok {
		ps = r.idx.Providers(name)
		r.provSeen[name] = ps
	}
	return ps
}

// chosenMeets returns the package chosen in this resolution that meets c,
// by its name or by what it provides, or nil.
func (r *resolver) chosenMeets(c manifest.Constraint) *manifest.Manifest {
	if m := r.chosen[c.Name]; m != nil && c.Allows(m.Version) {
		return m
	}
	for _, m := range r.chosenProv[c.Name] {
		if m.Satisfies(c) {
			return m
		}
	}
	return nil
}

// installedMeets says whether an installed package that this resolution
// does not replace with another version meets c.
func (r *resolver) installedMeets(c manifest.Constraint) bool {
	if m := r.installed[c.Name]; m != nil && r.chosen[c.Name] == nil && c.Allows(m.Version) {
		return true
	}
	for _, m := range r.instProv[c.Name] {
		if r.chosen[m.Name] == nil && m.Satisfies(c) {
			return true
		}
	}
	return false
}

// candidates lists what may be chosen for c, in the order of preference:
// the newest allowed version of the package of that name (unless it is
// chosen at a version c does not allow), then one version of each
// provider that meets c, those of an installed name first, then by name.
func (r *resolver) candidates(c manifest.Constraint) []*manifest.Manifest {
	var real, inst, others []*manifest.Manifest
	if r.chosen[c.Name] == nil {
		if m := r.best(c); m != nil {
			real = append(real, m)
		}
	}
	seen := make(map[string]bool)
	for _, p := range r.providers(c.Name) {
		if seen[p.Name] || !p.Satisfies(c) {
			continue
		}
		if ch := r.chosen[p.Name]; ch != nil && ch != p {
			continue // chosen at a version that does not meet c
		}
		seen[p.Name] = true
		if r.installed[p.Name] != nil {
			inst = append(inst, p)
		} else {
			others = append(others, p)
		}
	}
	return slices.Concat(real, inst, others)
}

// prefer takes, among the candidates for c, the package of that name, else
// the first provider that conflicts with nothing chosen or installed (else
// the first: the conflict is reported once the resolution ends). A
// provider is recorded with the name it was chosen for and the others.
func (r *resolver) prefer(c manifest.Constraint, cands []*manifest.Manifest) *manifest.Manifest {
	pick := cands[0]
	if pick.Name == c.Name {
		return pick
	}
	for _, m := range cands {
		if !r.clashes(m) {
			pick = m
			break
		}
	}
	if _, ok := r.chosenFor[pick.Name]; !ok {
		var alts []string
		for _, m := range cands {
			if m != pick {
				alts = append(alts, m.Name)
			}
		}
		r.chosenFor[pick.Name] = Choice{For: c.Name, Alternatives: alts}
	}
	return pick
}

// clashes says whether m conflicts with a package chosen so far or with an
// installed one it would not replace.
func (r *resolver) clashes(m *manifest.Manifest) bool {
	for _, o := range r.chosen {
		if _, ok := manifest.Conflicting(m, o); ok {
			return true
		}
	}
	for _, o := range r.installed {
		if r.chosen[o.Name] != nil || m.ReplacesPackage(o) {
			continue
		}
		if _, ok := manifest.Conflicting(m, o); ok {
			return true
		}
	}
	return false
}
