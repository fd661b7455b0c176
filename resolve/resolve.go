package resolve

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"tpm/manifest"
	"tpm/version"
)

// Index is what a resolution may choose from. A host's index is read
// from its file as the resolver asks (index.Snapshot), not held as a map of
// every package, so the resolver asks for one name at a time.
type Index interface {
	// Versions returns every version of name that may be chosen (those
	// that run on this host), newest first (NewestFirst); none when the
	// index has no such package. The manifests are shared: read only.
	Versions(name string) []*manifest.Manifest
	// Providers returns every version that may be chosen of every package
	// that provides name (at any version): by package name (bytewise),
	// each newest first. The order is the documented one a choice among
	// providers takes the first of.
	Providers(name string) []*manifest.Manifest
}

// Map is an Index held in memory: every version of every package, newest
// first. NewIndex makes one.
type Map map[string][]*manifest.Manifest

// Versions implements Index.
func (m Map) Versions(name string) []*manifest.Manifest { return m[name] }

// Providers implements Index, reading every package: a Map is for tests
// and small sets.
func (m Map) Providers(name string) []*manifest.Manifest {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []*manifest.Manifest
	for _, n := range names {
		for _, v := range m[n] {
			if v.ProvidesName(name) {
				out = append(out, v)
			}
		}
	}
	return out
}

// NewestFirst orders two versions as an Index lists them, newest first
// (pacman's vercmp), for slices.SortStableFunc: an Index sorts its
// versions of a name with it, stably, so equal versions keep their order.
func NewestFirst(a, b string) int { return version.Compare(b, a) }

// NewIndex groups manifests by name, newest first, keeping only those that
// run on arch.
func NewIndex(ms []*manifest.Manifest, arch string) Map {
	idx := make(Map)
	for _, m := range ms {
		if m.RunsOn(arch) {
			idx[m.Name] = append(idx[m.Name], m)
		}
	}
	for _, vs := range idx {
		slices.SortStableFunc(vs, func(a, b *manifest.Manifest) int { return NewestFirst(a.Version, b.Version) })
	}
	return idx
}

// best returns the newest version that c allows, or nil.
func (r *resolver) best(c manifest.Constraint) *manifest.Manifest {
	for _, m := range r.versions(c.Name) {
		if c.Allows(m.Version) {
			return m
		}
	}
	return nil
}

// versions is the index's versions of name, asked for once per resolution:
// an index read from a file decodes them at each call, and a resolution
// asks for a name at each dependency on it. The index's answer is the
// same for the whole resolution (it is immutable).
func (r *resolver) versions(name string) []*manifest.Manifest {
	vs, ok := r.seen[name]
	if !ok {
		vs = r.idx.Versions(name)
		r.seen[name] = vs
	}
	return vs
}

// Choice is one package a resolution decided to install.
type Choice struct {
	*manifest.Manifest
	Requested bool // named by the user; the others are pulled in as dependencies
	// For is the name it was chosen for when it is a provider of that name
	// rather than the package of the name; Alternatives are the other
	// providers that could have been, in the order they were considered.
	For          string
	Alternatives []string
}

// UnsatisfiableError explains why nothing can satisfy a dependency: the
// chain of packages that led to it and what the index has instead.
type UnsatisfiableError struct {
	Chain []string // "hello 2.0", "libgreet >= 3"
	Have  []string // versions the index or the host has of the names wanted
}

func (e *UnsatisfiableError) Error() string {
	what := "no package of that name in the index"
	if len(e.Have) > 0 {
		what = "only " + strings.Join(e.Have, ", ")
	}
	return fmt.Sprintf("cannot satisfy %s (%s)", strings.Join(e.Chain, " → "), what)
}

// Resolve picks, for each wanted constraint, the newest version in the
// index that allows it, and recursively whatever those need that the host
// does not have, preferring installed packages and, among alternatives,
// the first that can be had. A name is met by a package of that name or
// by one that provides it: an installed one first, then the package of
// the name, then a provider (those of an installed name first, then by
// name; the Choice says which it chose over which). It returns the
// choices dependencies first; packages already installed at an allowed
// version are not chosen again. Choices that conflict with each other, or
// with an installed package they do not replace, are a ConflictError.
func Resolve(idx Index, installed []*manifest.Manifest, want []manifest.Constraint) ([]Choice, error) {
	r := &resolver{
		idx:        idx,
		installed:  make(map[string]*manifest.Manifest),
		instProv:   make(map[string][]*manifest.Manifest),
		chosen:     make(map[string]*manifest.Manifest),
		chosenProv: make(map[string][]*manifest.Manifest),
		chosenFor:  make(map[string]Choice),
		requested:  make(map[string]bool),
		state:      make(map[string]int),
		seen:       make(map[string][]*manifest.Manifest),
		provSeen:   make(map[string][]*manifest.Manifest),
	}
	for _, m := range installed {
		r.installed[m.Name] = m
		for _, p := range m.Provides {
			r.instProv[p.Name] = append(r.instProv[p.Name], m)
		}
	}
	for _, c := range want {
		if r.installedMeets(c) {
			continue
		}
		m := r.chosenMeets(c)
		if m == nil {
			cands := r.candidates(c)
			if len(cands) == 0 {
				return nil, &UnsatisfiableError{Chain: []string{c.String()}, Have: r.have(c.Name)}
			}
			m = r.prefer(c, cands)
		}
		r.requested[m.Name] = true
		if err := r.visit(m, []string{m.String()}); err != nil {
			return nil, err
		}
	}
	var out []Choice
	var chosen []*manifest.Manifest
	for _, m := range r.order {
		ch := r.chosenFor[m.Name]
		ch.Manifest, ch.Requested = m, r.requested[m.Name]
		out = append(out, ch)
		chosen = append(chosen, m)
	}
	// The choices must not conflict with each other, nor with what stays
	// installed unless they replace it (then it goes: Displaced).
	if _, err := Displaced(installed, chosen); err != nil {
		return nil, err
	}
	return out, nil
}

type resolver struct {
	idx        Index
	installed  map[string]*manifest.Manifest
	instProv   map[string][]*manifest.Manifest // installed packages by the names they provide
	chosen     map[string]*manifest.Manifest
	chosenProv map[string][]*manifest.Manifest // chosen packages by the names they provide
	chosenFor  map[string]Choice               // the providers chosen for a name, with their alternatives
	requested  map[string]bool
	state      map[string]int                  // 1 while its dependencies are visited, 2 when done
	seen       map[string][]*manifest.Manifest // the index's versions asked for so far
	provSeen   map[string][]*manifest.Manifest // the index's providers asked for so far
	order      []*manifest.Manifest
	stack      []string
}

func (r *resolver) visit(m *manifest.Manifest, chain []string) error {
	switch r.state[m.Name] {
	case 2:
		return nil
	case 1:
		start := 0
		for i, n := range r.stack {
			if n == m.Name {
				start = i
			}
		}
		return &CycleError{Chain: append(append([]string{}, r.stack[start:]...), m.Name)}
	}
	if prev := r.chosen[m.Name]; prev != nil && prev != m {
		return fmt.Errorf("%s and %s are both needed (%s)", prev, m, strings.Join(chain, " → "))
	}
	r.chosen[m.Name] = m
	for _, p := range m.Provides {
		r.chosenProv[p.Name] = append(r.chosenProv[p.Name], m)
	}
	r.state[m.Name] = 1
	r.stack = append(r.stack, m.Name)
	for _, dep := range m.Dependencies {
		next, err := r.pick(dep, chain)
		if err != nil {
			return err
		}
		if next != nil {
			if err := r.visit(next, append(append([]string{}, chain...), dep.String(), next.String())); err != nil {
				return err
			}
		}
	}
	r.stack = r.stack[:len(r.stack)-1]
	r.state[m.Name] = 2
	r.order = append(r.order, m)
	return nil
}

// pick returns what satisfies dep: nil when something installed or already
// chosen (and not being replaced) does, else the preferred candidate of
// the first alternative the index can satisfy.
func (r *resolver) pick(dep manifest.Dependency, chain []string) (*manifest.Manifest, error) {
	for _, alt := range dep {
		if m := r.chosenMeets(alt); m != nil {
			if r.state[m.Name] == 1 {
				return m, nil // let visit report the cycle
			}
			return nil, nil
		}
		if r.installedMeets(alt) {
			return nil, nil
		}
	}
	for _, alt := range dep {
		if cands := r.candidates(alt); len(cands) > 0 {
			return r.prefer(alt, cands), nil
		}
	}
	var have []string
	for _, n := range dep.Names() {
		have = append(have, r.have(n)...)
	}
	return nil, &UnsatisfiableError{Chain: append(append([]string{}, chain...), dep.String()), Have: have}
}

// have lists what the index and the host have of name, for messages.
func (r *resolver) have(name string) []string {
	var out []string
	if m := r.installed[name]; m != nil {
		out = append(out, m.String()+" (installed)")
	}
	if m := r.chosen[name]; m != nil {
		out = append(out, m.String()+" (chosen)")
	}
	for _, m := range r.versions(name) {
		out = append(out, m.String())
	}
	for _, m := range r.providers(name) {
		out = append(out, m.String()+" (provides "+name+")")
	}
	return out
}

// Upgrades returns the installed packages that the index has a newer
// version of, as constraints that ask for exactly that version.
func Upgrades(idx Index, installed []*manifest.Manifest) []manifest.Constraint {
	var out []manifest.Constraint
	for _, m := range installed {
		if vs := idx.Versions(m.Name); len(vs) > 0 && version.Compare(vs[0].Version, m.Version) > 0 {
			out = append(out, manifest.Constraint{Name: m.Name, Op: manifest.OpEq, Version: vs[0].Version})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
