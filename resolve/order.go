// Package resolve decides whether a set of package changes leaves every
// package's dependencies met, and in which order to apply them. It knows
// manifests only: no archives, no disk, no database.
package resolve

import (
	"fmt"
	"sort"
	"strings"

	"tpm/manifest"
)

// Change is what a transaction does to one prefix: packages it adds or
// replaces (by name) and packages it takes away.
type Change struct {
	Installed []*manifest.Manifest // what the prefix holds now
	Add       []*manifest.Manifest // new packages and new versions of installed ones
	Remove    []string             // names to take away
}

// MissingError says which dependency of which package nothing satisfies.
type MissingError struct {
	Package    *manifest.Manifest
	Dependency manifest.Dependency
	Have       []*manifest.Manifest // versions of the named packages that are there
	Upgrade    bool                 // the package is already installed and the change broke it
}

func (e *MissingError) Error() string {
	var have []string
	for _, m := range e.Have {
		have = append(have, m.String())
	}
	what := "not installed"
	if len(have) > 0 {
		what = "have " + strings.Join(have, ", ")
	}
	if e.Upgrade {
		return fmt.Sprintf("the change breaks %s, which needs %s (%s)", e.Package, e.Dependency, what)
	}
	return fmt.Sprintf("%s needs %s (%s)", e.Package, e.Dependency, what)
}

// CycleError names a dependency cycle among the packages being added.
type CycleError struct{ Chain []string }

func (e *CycleError) Error() string {
	return "dependency cycle: " + strings.Join(e.Chain, " → ")
}

// Order checks that after the change every added package, and every
// installed package that depends on something the change touches, has its
// dependencies met. It returns Add ordered dependencies first.
func Order(c Change) ([]*manifest.Manifest, error) {
	final := make(map[string]*manifest.Manifest)
	installed := make(map[string]*manifest.Manifest)
	for _, m := range c.Installed {
		final[m.Name] = m
		installed[m.Name] = m
	}
	for _, name := range c.Remove {
		delete(final, name)
	}
	touched := make(map[string]bool)
	for _, name := range c.Remove {
		touch(touched, name, installed[name])
	}
	adding := make(map[string]*manifest.Manifest)
	for _, m := range c.Add {
		if _, dup := adding[m.Name]; dup {
			return nil, fmt.Errorf("%s is named twice in one transaction", m.Name)
		}
		adding[m.Name] = m
		final[m.Name] = m
		touch(touched, m.Name, m)
		touch(touched, m.Name, installed[m.Name])
	}
	after := newSet(sortedByName(final))

	// Check the new packages first so their errors come before collateral ones.
	for _, m := range c.Add {
		if err := checkDeps(m, after, false); err != nil {
			return nil, err
		}
	}
	for _, m := range sortedByName(final) {
		if adding[m.Name] != nil || !dependsOnAny(m, touched) {
			continue
		}
		if err := checkDeps(m, after, true); err != nil {
			return nil, err
		}
	}
	return topoSort(c.Add, adding, after)
}

// touch marks name, and every name m (its version, if any) provides, as
// touched by a change: a package that needs a virtual name is checked
// again when a provider of it changes.
func touch(touched map[string]bool, name string, m *manifest.Manifest) {
	touched[name] = true
	if m == nil {
		return
	}
	for _, p := range m.Provides {
		touched[p.Name] = true
	}
}

func checkDeps(m *manifest.Manifest, final set, upgrade bool) error {
	for _, dep := range m.Dependencies {
		if final.satisfier(dep) == nil {
			var have []*manifest.Manifest
			for _, name := range dep.Names() {
				if h := final.byName[name]; h != nil {
					have = append(have, h)
				}
				have = append(have, final.provides[name]...)
			}
			return &MissingError{Package: m, Dependency: dep, Have: have, Upgrade: upgrade}
		}
	}
	return nil
}

func dependsOnAny(m *manifest.Manifest, names map[string]bool) bool {
	for _, dep := range m.Dependencies {
		for _, n := range dep.Names() {
			if names[n] {
				return true
			}
		}
	}
	return false
}

func sortedByName(pkgs map[string]*manifest.Manifest) []*manifest.Manifest {
	out := make([]*manifest.Manifest, 0, len(pkgs))
	for _, m := range pkgs {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// topoSort orders the added packages so that each comes after the added
// packages that satisfy its dependencies; ties keep the caller's order.
func topoSort(add []*manifest.Manifest, adding map[string]*manifest.Manifest, final set) ([]*manifest.Manifest, error) {
	const (
		unvisited = iota
		visiting
		done
	)
	state := make(map[string]int)
	var out []*manifest.Manifest
	var stack []string
	var visit func(m *manifest.Manifest) error
	visit = func(m *manifest.Manifest) error {
		switch state[m.Name] {
		case done:
			return nil
		case visiting:
			start := 0
			for i, n := range stack {
				if n == m.Name {
					start = i
				}
			}
			chain := append(append([]string{}, stack[start:]...), m.Name)
			return &CycleError{Chain: chain}
		}
		state[m.Name] = visiting
		stack = append(stack, m.Name)
		for _, dep := range m.Dependencies {
			if s := final.satisfier(dep); s != nil && adding[s.Name] == s {
				if err := visit(s); err != nil {
					return err
				}
			}
		}
		stack = stack[:len(stack)-1]
		state[m.Name] = done
		out = append(out, m)
		return nil
	}
	for _, m := range add {
		if err := visit(m); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Dependents returns the packages among installed (other than those in
// removing) that would lose a dependency if removing went away, by name.
func Dependents(installed []*manifest.Manifest, removing []string) []*manifest.Manifest {
	final := make(map[string]*manifest.Manifest)
	for _, m := range installed {
		final[m.Name] = m
	}
	gone := make(map[string]bool)
	for _, n := range removing {
		touch(gone, n, final[n])
		delete(final, n)
	}
	after := newSet(sortedByName(final))
	var out []*manifest.Manifest
	for _, m := range sortedByName(final) {
		if !dependsOnAny(m, gone) {
			continue
		}
		for _, dep := range m.Dependencies {
			if after.satisfier(dep) == nil {
				out = append(out, m)
				break
			}
		}
	}
	return out
}

// DependentsFirst orders packages that are all going away so that each goes
// before the packages of the set it depends on: a remove script may still
// use what its package needs. Cycles, which installed packages may have,
// are broken in name order.
func DependentsFirst(set []*manifest.Manifest) []*manifest.Manifest {
	byName := make(map[string]*manifest.Manifest, len(set))
	for _, m := range set {
		byName[m.Name] = m
	}
	all := newSet(set)
	visited := make(map[string]bool, len(set))
	var depsFirst []*manifest.Manifest
	var visit func(m *manifest.Manifest)
	visit = func(m *manifest.Manifest) {
		if visited[m.Name] {
			return
		}
		visited[m.Name] = true
		for _, dep := range m.Dependencies {
			for _, alt := range dep {
				for _, d := range all.allMeeting(alt) {
					visit(d)
				}
			}
		}
		depsFirst = append(depsFirst, m)
	}
	for _, m := range sortedByName(byName) {
		visit(m)
	}
	out := make([]*manifest.Manifest, len(depsFirst))
	for i, m := range depsFirst {
		out[len(out)-1-i] = m
	}
	return out
}
