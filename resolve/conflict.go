package resolve

import (
	"fmt"
	"sort"

	"tpm/manifest"
)

// ConflictError says that two packages may not be installed together. With
// Installed, the conflict is with a package that is installed and that the
// change does not replace.
type ConflictError struct {
	manifest.Conflict
	New       *manifest.Manifest // the package of the change
	Installed *manifest.Manifest // the installed one, nil when both are new
}

func (e *ConflictError) Error() string {
	if e.Installed != nil {
		return fmt.Sprintf("cannot install %s: %s, which is installed and which %s does not replace; remove %s first", e.New, e.Conflict, e.New.Name, e.Installed.Name)
	}
	return fmt.Sprintf("cannot install %s and %s together: %s", e.Conflict.Package, e.Conflict.Other, e.Conflict)
}

// Displacement is an installed package that a change removes: a package
// of the change conflicts with it and replaces it.
type Displacement struct {
	Package *manifest.Manifest // installed, to be removed
	By      *manifest.Manifest // the package of the change that takes its place
}

// Displaced checks the packages a change adds against each other and
// against the installed ones (other than those it installs another version
// of), in both directions, virtual names included. It returns the
// installed packages the change removes, by name: those a package of it
// conflicts with and replaces. Any other conflict refuses the change. The
// host's plan and the engine's changeset both ask it, so they agree.
func Displaced(installed, add []*manifest.Manifest) ([]Displacement, error) {
	adds := newSet(add)
	var kept []*manifest.Manifest
	for _, m := range installed {
		if adds.byName[m.Name] == nil {
			kept = append(kept, m)
		}
	}
	instSet := newSet(kept)
	for _, a := range add {
		for _, c := range a.Conflicts {
			if b := adds.meeting(c, a.Name); b != nil {
				return nil, &ConflictError{Conflict: manifest.Conflict{Package: a, Other: b, Relation: c}, New: a}
			}
		}
	}
	var out []Displacement
	gone := make(map[string]bool)
	consider := func(a, inst *manifest.Manifest, cf manifest.Conflict) error {
		switch {
		case gone[inst.Name]:
		case a.ReplacesPackage(inst):
			gone[inst.Name] = true
			out = append(out, Displacement{Package: inst, By: a})
		default:
			return &ConflictError{Conflict: cf, New: a, Installed: inst}
		}
		return nil
	}
	for _, a := range add {
		for _, c := range a.Conflicts {
			for _, inst := range instSet.allMeeting(c) {
				if err := consider(a, inst, manifest.Conflict{Package: a, Other: inst, Relation: c}); err != nil {
					return nil, err
				}
			}
		}
	}
	for _, inst := range kept {
		for _, c := range inst.Conflicts {
			for _, a := range adds.allMeeting(c) {
				if err := consider(a, inst, manifest.Conflict{Package: inst, Other: a, Relation: c}); err != nil {
					return nil, err
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Package.Name < out[j].Package.Name })
	return out, nil
}

// set is packages, at most one version of each name, found by name and by
// the names they provide.
type set struct {
	byName   map[string]*manifest.Manifest
	provides map[string][]*manifest.Manifest // by name of the provider, for a stable answer
}

func newSet(pkgs []*manifest.Manifest) set {
	s := set{byName: make(map[string]*manifest.Manifest, len(pkgs)), provides: make(map[string][]*manifest.Manifest)}
	for _, m := range pkgs {
		s.byName[m.Name] = m
	}
	for _, m := range sortedByName(s.byName) {
		for _, p := range m.Provides {
			if ps := s.provides[p.Name]; len(ps) == 0 || ps[len(ps)-1] != m {
				s.provides[p.Name] = append(ps, m)
			}
		}
	}
	return s
}

// allMeeting lists the packages of s that meet c, by name or by what they
// provide.
func (s set) allMeeting(c manifest.Constraint) []*manifest.Manifest {
	var out []*manifest.Manifest
	if m := s.byName[c.Name]; m != nil && c.Allows(m.Version) {
		out = append(out, m)
	}
	for _, m := range s.provides[c.Name] {
		if m.Satisfies(c) {
			out = append(out, m)
		}
	}
	return out
}

// meeting is the first package of s other than the one named self that
// meets c, or nil.
func (s set) meeting(c manifest.Constraint, self string) *manifest.Manifest {
	for _, m := range s.allMeeting(c) {
		if m.Name != self {
			return m
		}
	}
	return nil
}

// satisfier returns the first package that meets dep: the first
// alternative's package of that name, else its first provider, and so on.
func (s set) satisfier(dep manifest.Dependency) *manifest.Manifest {
	for _, alt := range dep {
		if ms := s.allMeeting(alt); len(ms) > 0 {
			return ms[0]
		}
	}
	return nil
}
