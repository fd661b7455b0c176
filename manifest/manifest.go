// Package manifest models info/package.json, the identity of a tpm package:
// strict parsing, validation, and the canonical encoding that tpm pack and the
// repository index write.
//
// Parsing is strict because package.json comes from packages that anyone may
// publish: a field that tpm does not understand is more likely a mistake (or a
// trick) than something to ignore, so it is rejected with a one-line error
// that names the field, what is wrong and what is allowed.
package manifest

// The errors name package.json's fields first, and their case matters.
//lint:file-ignore ST1005 errors start with a field name (Name, Version...), which is capitalized

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"unicode"
	"unicode/utf8"

	"tpm/human"
	"tpm/version"
)

// The package types.
const (
	TypeBinary = "Binary" // scripts run, data/ goes to the prefix
	TypeSource = "Source" // data/ is built with configure, make, make install
)

// ArchAny marks a package that runs on every architecture.
const ArchAny = "any"

// Limits on what a package.json may hold.
const (
	MaxNameLen      = 128  // bytes in a package name
	MaxTextLen      = 1024 // bytes in Maintainer or Description
	MaxDependencies = 1000 // entries in Dependencies
	MaxRelations    = 1000 // entries in each of Provides, Conflicts and Replaces
)

const (
	archList  = "x86_64, i686, aarch64, armv7h, armv6h, riscv64, ppc64le, s390x, loong64 or any"
	fieldList = "Name, Version, Architecture, Type, Maintainer, Description, Dependencies, Provides, Conflicts, Replaces"
)

// Manifest is the content of info/package.json.
type Manifest struct {
	Name         string       `json:"Name"`
	Version      string       `json:"Version"`
	Architecture string       `json:"Architecture"`
	Type         string       `json:"Type"`
	Maintainer   string       `json:"Maintainer,omitempty"`
	Description  string       `json:"Description,omitempty"`
	Dependencies []Dependency `json:"Dependencies,omitempty"`
	// The relations (relations.go). Absent in older packages and indexes,
	// which read as none.
	Provides  Constraints `json:"Provides,omitempty"`
	Conflicts Constraints `json:"Conflicts,omitempty"`
	Replaces  Constraints `json:"Replaces,omitempty"`
}

// Parse reads and validates a package.json. Beyond what encoding/json checks,
// it rejects anything but a single JSON object, unknown fields (names are
// case-sensitive), repeated fields, and fields of the wrong JSON type, null
// included. A Manifest without dependencies has nil Dependencies.
func Parse(data []byte) (*Manifest, error) {
	m, err := decode(data)
	if err != nil {
		return nil, fmt.Errorf("package.json: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// decode walks the top-level object token by token instead of unmarshalling
// it, because encoding/json would silently accept "name" for "Name", take the
// last of repeated keys, and read null as "".
func decode(data []byte) (*Manifest, error) {
	if bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) {
		return nil, errors.New("document starts with a byte order mark; want plain UTF-8 JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err == io.EOF {
		return nil, errors.New("document is empty; want a JSON object")
	}
	if err != nil {
		return nil, syntaxError(err)
	}
	if tok != json.Delim('{') {
		return nil, fmt.Errorf("document is %s; want a JSON object", withArticle(kind(data)))
	}

	m := &Manifest{}
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, syntaxError(err)
		}
		key, _ := tok.(string) // the decoder only allows strings as keys
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, syntaxError(err)
		}
		if seen[key] {
			return nil, fmt.Errorf("field %s appears more than once", human.Quote(key))
		}
		seen[key] = true
		if err := m.setField(key, raw); err != nil {
			return nil, err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, syntaxError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON object; want exactly one object")
	}
	return m, nil
}

func syntaxError(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return errors.New("invalid JSON: the document ends too early")
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("invalid JSON at byte %d: %v", se.Offset, se)
	}
	return fmt.Errorf("invalid JSON: %v", err)
}

func (m *Manifest) setField(key string, raw json.RawMessage) error {
	switch key {
	case "Name":
		return stringField(key, raw, &m.Name)
	case "Version":
		return stringField(key, raw, &m.Version)
	case "Architecture":
		return stringField(key, raw, &m.Architecture)
	case "Type":
		return stringField(key, raw, &m.Type)
	case "Maintainer":
		return stringField(key, raw, &m.Maintainer)
	case "Description":
		return stringField(key, raw, &m.Description)
	case "Dependencies":
		return m.setDependencies(raw)
	case "Provides":
		return setRelations(key, raw, &m.Provides)
	case "Conflicts":
		return setRelations(key, raw, &m.Conflicts)
	case "Replaces":
		return setRelations(key, raw, &m.Replaces)
	}
	for _, f := range strings.Split(fieldList, ", ") {
		if strings.EqualFold(key, f) {
			return fmt.Errorf("unknown field %s; field names are case-sensitive, did you mean %q?", human.Quote(key), f)
		}
	}
	return fmt.Errorf("unknown field %s; the fields are %s", human.Quote(key), fieldList)
}

func stringField(name string, raw json.RawMessage, dst *string) error {
	if k := kind(raw); k != "string" {
		return fmt.Errorf("%s is %s; want a string", name, withArticle(k))
	}
	return json.Unmarshal(raw, dst)
}

func (m *Manifest) setDependencies(raw json.RawMessage) error {
	if k := kind(raw); k != "array" {
		return fmt.Errorf("Dependencies is %s; want an array", withArticle(k))
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return err
	}
	if len(items) > MaxDependencies {
		return fmt.Errorf("Dependencies has %d entries; at most %d are allowed", len(items), MaxDependencies)
	}
	m.Dependencies = nil // so that [] and a missing field parse the same
	for i, item := range items {
		var d Dependency
		if err := d.UnmarshalJSON(item); err != nil {
			return fmt.Errorf("Dependencies[%d]: %v", i, err)
		}
		m.Dependencies = append(m.Dependencies, d)
	}
	return nil
}

// Validate checks every field against the rules of package.json and returns
// the first problem it finds.
func (m *Manifest) Validate() error {
	if err := m.validate(); err != nil {
		return fmt.Errorf("package.json: %w", err)
	}
	return nil
}

func (m *Manifest) validate() error {
	if m.Name == "" {
		return errors.New("Name is required")
	}
	if err := checkName(m.Name); err != nil {
		return fmt.Errorf("Name %v", err)
	}

	if m.Version == "" {
		return errors.New("Version is required; want [epoch:]version[-release]")
	}
	if err := version.Valid(m.Version); err != nil {
		var se *version.SyntaxError
		if errors.As(err, &se) {
			return fmt.Errorf("Version %s: %s", human.Quote(m.Version), se.Reason)
		}
		return fmt.Errorf("Version: %v", err)
	}

	if m.Architecture == "" {
		return fmt.Errorf("Architecture is required; want one of %s", archList)
	}
	if !knownArch(m.Architecture) {
		return fmt.Errorf("Architecture %s is not one of %s", human.Quote(m.Architecture), archList)
	}

	switch m.Type {
	case TypeBinary, TypeSource:
	case "":
		return errors.New("Type is required; want Binary or Source")
	default:
		return fmt.Errorf("Type %s is not Binary or Source (the case matters)", human.Quote(m.Type))
	}

	if err := checkText("Maintainer", m.Maintainer); err != nil {
		return err
	}
	if err := checkText("Description", m.Description); err != nil {
		return err
	}

	if len(m.Dependencies) > MaxDependencies {
		return fmt.Errorf("Dependencies has %d entries; at most %d are allowed", len(m.Dependencies), MaxDependencies)
	}
	for i, d := range m.Dependencies {
		if len(d) == 0 {
			return fmt.Errorf("Dependencies[%d] is an empty list; want at least one alternative", i)
		}
		for _, c := range d {
			if err := c.validate(); err != nil {
				return fmt.Errorf("Dependencies[%d]: dependency %s: %v", i, human.Quote(c.String()), err)
			}
			if c.Name == m.Name {
				return fmt.Errorf("Dependencies[%d]: dependency %s names the package itself", i, human.Quote(c.String()))
			}
		}
	}
	return m.validateRelations()
}

// checkName explains what is wrong with a package name, in words that follow
// the name of the field it came from.
func checkName(name string) error {
	if name == "" {
		return errors.New("is empty")
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("%s is %d bytes long; at most %d are allowed", human.Quote(name), len(name), MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case strings.IndexByte("+._-", c) >= 0:
			if i == 0 {
				return fmt.Errorf("%s starts with %s; it must start with a-z or 0-9", human.Quote(name), human.Byte(c))
			}
		default:
			return fmt.Errorf("%s has %s; allowed are a-z, 0-9 and + . _ -", human.Quote(name), human.Byte(c))
		}
	}
	return nil
}

// ValidName checks a package name: [a-z0-9][a-z0-9+._-]*, at most MaxNameLen
// bytes. Such a name is safe as part of a file name.
func ValidName(name string) error {
	if err := checkName(name); err != nil {
		return fmt.Errorf("name %v", err)
	}
	return nil
}

// checkText keeps free-text fields to one line of printable UTF-8, since they
// are shown in terminals and written into line-oriented output.
func checkText(field, s string) error {
	if len(s) > MaxTextLen {
		return fmt.Errorf("%s is %d bytes long; at most %d are allowed", field, len(s), MaxTextLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not valid UTF-8", field)
	}
	for i, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return fmt.Errorf("%s has control character %U at byte %d; it must be a single line of text", field, r, i)
		}
	}
	return nil
}

func knownArch(a string) bool {
	switch a {
	case "x86_64", "i686", "aarch64", "armv7h", "armv6h", "riscv64", "ppc64le", "s390x", "loong64", ArchAny:
		return true
	}
	return false
}

// HostArchitecture names the architecture tpm runs on the way packages name
// theirs (pacman's names). A GOARCH without a package name is returned as is,
// so only packages for "any" run there.
func HostArchitecture() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	case "386":
		return "i686"
	case "arm":
		// GOARM is not consulted: armv7h is what current ARM distributions run.
		return "armv7h"
	}
	return runtime.GOARCH // riscv64, ppc64le, s390x, loong64 are spelled alike
}

// RunsOn reports whether the package can be installed on hostArch.
func (m *Manifest) RunsOn(hostArch string) bool {
	return m.Architecture == ArchAny || m.Architecture == hostArch
}

// FileName is the package's canonical file name, NAME-VERSION-ARCH.tpkg. It is
// a plain file name (no "/") when m is valid.
func (m *Manifest) FileName() string {
	return m.Name + "-" + m.Version + "-" + m.Architecture + ".tpkg"
}

// String is "NAME VERSION", for messages.
func (m *Manifest) String() string {
	return m.Name + " " + m.Version
}

// Marshal validates m and encodes it as indented JSON with the fields in a
// fixed order, so the same manifest always gives the same bytes. Parse reads
// the result back to an equal Manifest.
func Marshal(m *Manifest) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep "a >= 1" readable
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		return nil, fmt.Errorf("package.json: %w", err)
	}
	return buf.Bytes(), nil
}

// Matches is tpm search's test: the word, case aside, in the name or the
// description; "" matches every package.
func (m *Manifest) Matches(word string) bool {
	word = strings.ToLower(word)
	return strings.Contains(m.Name, word) || strings.Contains(strings.ToLower(m.Description), word)
}
