package manifest

//lint:file-ignore ST1005 errors start with a field name (Provides, Conflicts...), which is capitalized

import (
	"encoding/json"
	"fmt"

	"tpm/human"
)

// The relations of a package to others besides what it needs, as dpkg and
// pacman have them:
//
//   - Provides: virtual names the package answers to ("awk", "libssl = 3.0"),
//     so a dependency on the name is met by it as by a package of that name.
//     An unversioned Provides meets only a dependency without a version
//     (Debian's rule: nothing can say which version it would be).
//   - Conflicts: packages that may not be installed beside it, matched
//     by name or by what they provide. A package never conflicts with
//     itself, so one that provides and conflicts with a name (the "only
//     one mail transport agent" pattern) conflicts only with the others.
//   - Replaces: packages whose files it may take over; one it conflicts
//     with and replaces is removed when it is installed.

// Constraints is a list of constraints, each a string in JSON ("name",
// "name OP version"): the grammar of a Dependencies entry without
// alternatives.
type Constraints []Constraint

// MarshalJSON writes the constraints as an array of strings.
func (cs Constraints) MarshalJSON() ([]byte, error) {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = c.String()
	}
	return marshalNoEscape(parts)
}

// UnmarshalJSON reads an array of strings, each parsed with
// ParseConstraint. It is how an index's entries are read; package.json
// goes through setRelations, which says which field and entry is wrong.
func (cs *Constraints) UnmarshalJSON(data []byte) error {
	var items []string
	if err := json.Unmarshal(data, &items); err != nil {
		return err
	}
	out := make(Constraints, 0, len(items))
	for _, s := range items {
		c, err := ParseConstraint(s)
		if err != nil {
			return err
		}
		out = append(out, c)
	}
	*cs = out
	if len(out) == 0 {
		*cs = nil
	}
	return nil
}

// setRelations reads the relation field key of package.json into dst.
func setRelations(key string, raw json.RawMessage, dst *Constraints) error {
	if k := kind(raw); k != "array" {
		return fmt.Errorf("%s is %s; want an array of strings", key, withArticle(k))
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return err
	}
	if len(items) > MaxRelations {
		return fmt.Errorf("%s has %d entries; at most %d are allowed", key, len(items), MaxRelations)
	}
	*dst = nil // so that [] and a missing field parse the same
	for i, item := range items {
		if k := kind(item); k != "string" {
			return fmt.Errorf("%s[%d] is %s; want a string", key, i, withArticle(k))
		}
		var s string
		if err := json.Unmarshal(item, &s); err != nil {
			return err
		}
		c, err := ParseConstraint(s)
		if err != nil {
			return fmt.Errorf("%s[%d]: %v", key, i, err)
		}
		*dst = append(*dst, c)
	}
	return nil
}

// validateRelations holds the relations to the rules, however the
// manifest was made.
func (m *Manifest) validateRelations() error {
	for _, f := range []struct {
		key string
		cs  Constraints
	}{{"Provides", m.Provides}, {"Conflicts", m.Conflicts}, {"Replaces", m.Replaces}} {
		if len(f.cs) > MaxRelations {
			return fmt.Errorf("%s has %d entries; at most %d are allowed", f.key, len(f.cs), MaxRelations)
		}
		for i, c := range f.cs {
			if err := c.validate(); err != nil {
				return fmt.Errorf("%s[%d]: %s: %v", f.key, i, human.Quote(c.String()), err)
			}
			if err := m.checkRelation(f.key, c); err != nil {
				return fmt.Errorf("%s[%d]: %v", f.key, i, err)
			}
		}
	}
	return nil
}

func (m *Manifest) checkRelation(key string, c Constraint) error {
	switch {
	case key == "Provides" && c.Name == m.Name:
		// Refused rather than ignored: the package is already known by its
		// name, and "name = other version" would make it two versions at once.
		return fmt.Errorf("%s is the package's own name; a package always provides itself, remove the entry", human.Quote(c.String()))
	case key == "Provides" && c.Op != OpAny && c.Op != OpEq:
		return fmt.Errorf(`%s: a package provides a name at one version; want "name" or "name = version"`, human.Quote(c.String()))
	case c.Name == m.Name:
		return fmt.Errorf("%s names the package itself", human.Quote(c.String()))
	}
	return nil
}

// Satisfies says whether m meets c: by its own name at a version c
// allows, or by a name it provides (an unversioned one only when c asks
// for no version).
func (m *Manifest) Satisfies(c Constraint) bool {
	if m.Name == c.Name {
		return c.Allows(m.Version)
	}
	for _, p := range m.Provides {
		if p.Name != c.Name {
			continue
		}
		if c.Op == OpAny || (p.Op == OpEq && c.Allows(p.Version)) {
			return true
		}
	}
	return false
}

// ProvidesName says whether m provides name, at any version.
func (m *Manifest) ProvidesName(name string) bool {
	for _, p := range m.Provides {
		if p.Name == name {
			return true
		}
	}
	return false
}

// Conflict is why two packages may not be installed together: Package
// has Relation in its Conflicts, and Other meets it.
type Conflict struct {
	Package, Other *Manifest
	Relation       Constraint
}

// String says it for people: "postfix 3.0 conflicts with exim4 4.9
// (which provides mail-transport-agent)".
func (c Conflict) String() string {
	s := fmt.Sprintf("%s conflicts with %s", c.Package, c.Other)
	if c.Relation.Name != c.Other.Name {
		s += fmt.Sprintf(" (which provides %s)", c.Relation.Name)
	}
	return s
}

// Conflicting says whether a and b conflict, in either direction. Two
// versions of one package never do: one replaces the other.
func Conflicting(a, b *Manifest) (Conflict, bool) {
	if a.Name == b.Name {
		return Conflict{}, false
	}
	for _, c := range a.Conflicts {
		if b.Satisfies(c) {
			return Conflict{Package: a, Other: b, Relation: c}, true
		}
	}
	for _, c := range b.Conflicts {
		if a.Satisfies(c) {
			return Conflict{Package: b, Other: a, Relation: c}, true
		}
	}
	return Conflict{}, false
}

// ReplacesPackage says whether m may take over files of o: o meets one
// of m's Replaces.
func (m *Manifest) ReplacesPackage(o *Manifest) bool {
	if m.Name == o.Name {
		return false
	}
	for _, c := range m.Replaces {
		if o.Satisfies(c) {
			return true
		}
	}
	return false
}
