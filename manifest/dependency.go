package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"tpm/human"
	"tpm/version"
)

// Op is a version comparison in a dependency.
type Op string

// The comparisons a dependency may use. OpAny means any version will do.
const (
	OpAny Op = ""
	OpEq  Op = "="
	OpNe  Op = "!="
	OpLt  Op = "<"
	OpLe  Op = "<="
	OpGt  Op = ">"
	OpGe  Op = ">="
)

const opList = "=, !=, <, <=, >, >="

func (o Op) valid() bool {
	switch o {
	case OpAny, OpEq, OpNe, OpLt, OpLe, OpGt, OpGe:
		return true
	}
	return false
}

// Constraint asks for a package by name and, unless Op is OpAny, for a version
// that compares to Version as Op says.
type Constraint struct {
	Name    string
	Op      Op
	Version string
}

// ParseConstraint parses "name", "name OP version" or "name OPversion" (the
// spaces around OP are optional), with OP one of = != < <= > >=.
func ParseConstraint(s string) (Constraint, error) {
	fail := func(format string, args ...any) (Constraint, error) {
		return Constraint{}, fmt.Errorf("dependency %s: %s", human.Quote(s), fmt.Sprintf(format, args...))
	}
	if strings.Contains(s, "|") {
		return fail(`alternatives are written as a JSON array of strings, not with "|"`)
	}
	i := strings.IndexAny(s, "<>=!")
	if i < 0 {
		c := Constraint{Name: strings.TrimSpace(s)}
		if strings.ContainsAny(c.Name, " \t") {
			return fail(`want "name" or "name OP version" with OP one of %s`, opList)
		}
		if err := c.validate(); err != nil {
			return fail("%v", err)
		}
		return c, nil
	}
	j := i
	for j < len(s) && strings.IndexByte("<>=!", s[j]) >= 0 {
		j++
	}
	c := Constraint{
		Name:    strings.TrimSpace(s[:i]),
		Op:      Op(s[i:j]),
		Version: strings.TrimSpace(s[j:]),
	}
	if !c.Op.valid() {
		return fail("operator %s is not one of %s", human.Quote(string(c.Op)), opList)
	}
	if err := c.validate(); err != nil {
		return fail("%v", err)
	}
	return c, nil
}

// validate checks a constraint however it was made, so that one built in code
// is held to the same grammar as one parsed from package.json.
func (c Constraint) validate() error {
	if err := checkName(c.Name); err != nil {
		return fmt.Errorf("name %s", err)
	}
	if !c.Op.valid() {
		return fmt.Errorf("operator %s is not one of %s", human.Quote(string(c.Op)), opList)
	}
	if c.Op == OpAny {
		if c.Version != "" {
			return fmt.Errorf("version %s is given without an operator (%s)", human.Quote(c.Version), opList)
		}
		return nil
	}
	if c.Version == "" {
		return fmt.Errorf("version after %q is missing", c.Op)
	}
	return version.Valid(c.Version)
}

// String gives the canonical form, which ParseConstraint reads back unchanged.
func (c Constraint) String() string {
	if c.Op == OpAny {
		return c.Name
	}
	return c.Name + " " + string(c.Op) + " " + c.Version
}

// Allows reports whether version v of the named package satisfies c. The
// caller matches the name; an unknown Op allows nothing.
func (c Constraint) Allows(v string) bool {
	if c.Op == OpAny {
		return true
	}
	cmp := version.Compare(v, c.Version)
	switch c.Op {
	case OpEq:
		return cmp == 0
	case OpNe:
		return cmp != 0
	case OpLt:
		return cmp < 0
	case OpLe:
		return cmp <= 0
	case OpGt:
		return cmp > 0
	case OpGe:
		return cmp >= 0
	}
	return false
}

// Dependency is satisfied by any one of its alternatives. In JSON it is either a
// string ("name", "name OP version") or an array of such strings meaning any one of.
type Dependency []Constraint

// String joins the alternatives with " | ", for people; JSON uses arrays.
func (d Dependency) String() string {
	parts := make([]string, len(d))
	for i, c := range d {
		parts[i] = c.String()
	}
	return strings.Join(parts, " | ")
}

// Names lists the package names of the alternatives, in order.
func (d Dependency) Names() []string {
	names := make([]string, len(d))
	for i, c := range d {
		names[i] = c.Name
	}
	return names
}

// MarshalJSON writes a single alternative as a string and anything else as an
// array of strings.
func (d Dependency) MarshalJSON() ([]byte, error) {
	if len(d) == 1 {
		return marshalNoEscape(d[0].String())
	}
	parts := make([]string, len(d))
	for i, c := range d {
		parts[i] = c.String()
	}
	return marshalNoEscape(parts)
}

// UnmarshalJSON reads a string or an array of strings, each parsed with
// ParseConstraint. An empty array is accepted here and rejected by Validate,
// which can say which dependency it was.
func (d *Dependency) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	switch kind(data) {
	case "string":
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		c, err := ParseConstraint(s)
		if err != nil {
			return err
		}
		*d = Dependency{c}
		return nil
	case "array":
		var items []json.RawMessage
		if err := json.Unmarshal(data, &items); err != nil {
			return err
		}
		alts := make(Dependency, 0, len(items))
		for i, item := range items {
			if k := kind(item); k != "string" {
				return fmt.Errorf("alternative %d is %s; want a string", i, withArticle(k))
			}
			var s string
			if err := json.Unmarshal(item, &s); err != nil {
				return err
			}
			c, err := ParseConstraint(s)
			if err != nil {
				return err
			}
			alts = append(alts, c)
		}
		*d = alts
		return nil
	}
	return fmt.Errorf("dependency is %s; want a string or an array of strings", withArticle(kind(data)))
}

// marshalNoEscape is json.Marshal without HTML escaping, so that "a >= 1"
// stays readable instead of becoming "a \u003e= 1".
func marshalNoEscape(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// kind names the JSON type of a value from its first byte; the value is
// assumed to be well-formed, as the decoder has already checked it.
func kind(data []byte) string {
	data = bytes.TrimLeft(data, " \t\r\n")
	if len(data) == 0 {
		return "nothing"
	}
	switch data[0] {
	case '"':
		return "string"
	case '[':
		return "array"
	case '{':
		return "object"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

func withArticle(k string) string {
	switch k {
	case "array", "object":
		return "an " + k
	case "null", "nothing":
		return k
	}
	return "a " + k
}
