package manifest

import (
	"reflect"
	"runtime"
	"strings"
	"testing"
)

// valid returns a fresh manifest that passes Validate, for tests to spoil.
func valid() *Manifest {
	return &Manifest{
		Name:         "hello",
		Version:      "1:2.12-3",
		Architecture: "x86_64",
		Type:         TypeBinary,
		Maintainer:   "Ann Example <ann@example.org>",
		Description:  "Prints a friendly greeting",
		Dependencies: []Dependency{
			{{Name: "glibc", Op: OpGe, Version: "2.38"}},
			{{Name: "libfoo"}, {Name: "libfoo-ng", Op: OpLt, Version: "3"}},
		},
	}
}

const validDoc = `{
  "Name": "hello",
  "Version": "1:2.12-3",
  "Architecture": "x86_64",
  "Type": "Binary",
  "Maintainer": "Ann Example <ann@example.org>",
  "Description": "Prints a friendly greeting",
  "Dependencies": [
    "glibc >= 2.38",
    [
      "libfoo",
      "libfoo-ng < 3"
    ]
  ]
}
`

func TestParseValid(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want *Manifest
	}{
		{"full", validDoc, valid()},
		{
			"minimal",
			`{"Name":"a","Version":"1","Architecture":"any","Type":"Source"}`,
			&Manifest{Name: "a", Version: "1", Architecture: "any", Type: TypeSource},
		},
		{
			"field order and whitespace do not matter",
			" \n\t{ \"Type\" : \"Binary\", \"Architecture\":\"aarch64\",\"Version\":\"0.1-1\",\"Name\":\"x\" } \n",
			&Manifest{Name: "x", Version: "0.1-1", Architecture: "aarch64", Type: TypeBinary},
		},
		{
			"empty dependencies parse as nil",
			`{"Name":"a","Version":"1","Architecture":"any","Type":"Binary","Dependencies":[]}`,
			&Manifest{Name: "a", Version: "1", Architecture: "any", Type: TypeBinary},
		},
		{
			"dependency grammar",
			`{"Name":"a","Version":"1","Architecture":"any","Type":"Binary","Dependencies":[
				"b", "c=1", "d != 1:2-3", " e<2 ", "f<=2", "g>2", "h>=2", ["i"], ["j", "k >= 1", "l"]]}`,
			&Manifest{Name: "a", Version: "1", Architecture: "any", Type: TypeBinary, Dependencies: []Dependency{
				{{Name: "b"}},
				{{Name: "c", Op: OpEq, Version: "1"}},
				{{Name: "d", Op: OpNe, Version: "1:2-3"}},
				{{Name: "e", Op: OpLt, Version: "2"}},
				{{Name: "f", Op: OpLe, Version: "2"}},
				{{Name: "g", Op: OpGt, Version: "2"}},
				{{Name: "h", Op: OpGe, Version: "2"}},
				{{Name: "i"}},
				{{Name: "j"}, {Name: "k", Op: OpGe, Version: "1"}, {Name: "l"}},
			}},
		},
		{
			"escapes and unicode in free text",
			`{"Name":"a","Version":"1","Architecture":"any","Type":"Binary","Maintainer":"J\u00f6rg <j@x>","Description":"caf\u00e9 \"quoted\" \\ tab-free"}`,
			&Manifest{Name: "a", Version: "1", Architecture: "any", Type: TypeBinary,
				Maintainer: "Jörg <j@x>", Description: `café "quoted" \ tab-free`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.doc))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse =\n%#v\nwant\n%#v", got, tt.want)
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	// doc builds a document from the valid minimal one with field replaced
	// (or added) by the raw JSON value.
	doc := func(field, value string) string {
		fields := []string{
			`"Name":"a"`, `"Version":"1"`, `"Architecture":"any"`, `"Type":"Binary"`,
		}
		out := []string{}
		found := false
		for _, f := range fields {
			if strings.HasPrefix(f, `"`+field+`"`) {
				found = true
				if value == "" {
					continue // drop the field
				}
				f = `"` + field + `":` + value
			}
			out = append(out, f)
		}
		if !found {
			out = append(out, `"`+field+`":`+value)
		}
		return "{" + strings.Join(out, ",") + "}"
	}

	tests := []struct {
		name, doc, want string
	}{
		// the document
		{"empty", "", "document is empty; want a JSON object"},
		{"blank", " \n", "document is empty"},
		{"array", `[]`, "document is an array; want a JSON object"},
		{"string", `"x"`, "document is a string; want a JSON object"},
		{"number", `12`, "document is a number"},
		{"null", `null`, "document is null; want a JSON object"},
		{"syntax", `{"Name":}`, "invalid JSON at byte"},
		{"unterminated", `{"Name":"a"`, "invalid JSON: the document ends too early"},
		{"unterminated string", `{"Name":"a`, "invalid JSON: the document ends too early"},
		{"trailing object", doc("Name", `"a"`) + `{}`, "trailing data after the JSON object"},
		{"trailing garbage", doc("Name", `"a"`) + ` x`, "trailing data"},
		{"trailing brace", doc("Name", `"a"`) + `}`, "trailing data"},
		{"unknown field", doc("License", `"MIT"`), `unknown field "License"; the fields are Name, Version`},
		{"wrong case", doc("name", `"a"`), `unknown field "name"; field names are case-sensitive, did you mean "Name"?`},
		{"duplicate field", `{"Name":"a","Name":"a","Version":"1","Architecture":"any","Type":"Binary"}`, `field "Name" appears more than once`},
		{"bom", "\ufeff" + doc("Name", `"a"`), "document starts with a byte order mark"},

		// field types
		{"name null", doc("Name", `null`), "Name is null; want a string"},
		{"name number", doc("Name", `1`), "Name is a number; want a string"},
		{"version number", doc("Version", `1.0`), "Version is a number; want a string"},
		{"arch array", doc("Architecture", `["any"]`), "Architecture is an array; want a string"},
		{"type bool", doc("Type", `true`), "Type is a boolean; want a string"},
		{"maintainer object", doc("Maintainer", `{}`), "Maintainer is an object; want a string"},
		{"description null", doc("Description", `null`), "Description is null; want a string"},
		{"deps null", doc("Dependencies", `null`), "Dependencies is null; want an array"},
		{"deps string", doc("Dependencies", `"b"`), "Dependencies is a string; want an array"},
		{"dep number", doc("Dependencies", `["b", 3]`), "Dependencies[1]: dependency is a number; want a string or an array of strings"},
		{"dep object", doc("Dependencies", `[{"Name":"b"}]`), "Dependencies[0]: dependency is an object"},
		{"dep null", doc("Dependencies", `[null]`), "Dependencies[0]: dependency is null"},
		{"nested array", doc("Dependencies", `[["b", ["c"]]]`), "Dependencies[0]: alternative 1 is an array; want a string"},

		// required fields
		{"no name", doc("Name", ""), "package.json: Name is required"},
		{"empty name", doc("Name", `""`), "package.json: Name is required"},
		{"no version", doc("Version", ""), "Version is required; want [epoch:]version[-release]"},
		{"no arch", doc("Architecture", ""), "Architecture is required; want one of x86_64, i686"},
		{"no type", doc("Type", ""), "Type is required; want Binary or Source"},

		// field values
		{"name upper", doc("Name", `"Hello"`), `Name "Hello" has character 'H'; allowed are a-z, 0-9 and + . _ -`},
		{"name dash first", doc("Name", `"-a"`), `Name "-a" starts with character '-'; it must start with a-z or 0-9`},
		{"name slash", doc("Name", `"a/b"`), `Name "a/b" has character '/'`},
		{"name unicode", doc("Name", `"é"`), `Name "é" has byte 0xc3`},
		{"name long", doc("Name", `"`+strings.Repeat("a", 129)+`"`), "is 129 bytes long; at most 128 are allowed"},
		{"version bad", doc("Version", `"1..0-"`), `package.json: Version "1..0-": release after "-" is empty`},
		{"version space", doc("Version", `"1 0"`), `Version "1 0": version part has character ' '`},
		{"arch bad", doc("Architecture", `"x86-64"`), `package.json: Architecture "x86-64" is not one of x86_64, i686, aarch64, armv7h, armv6h, riscv64, ppc64le, s390x, loong64 or any`},
		{"arch case", doc("Architecture", `"X86_64"`), `Architecture "X86_64" is not one of`},
		{"type case", doc("Type", `"binary"`), `Type "binary" is not Binary or Source (the case matters)`},
		{"type other", doc("Type", `"Meta"`), `Type "Meta" is not Binary or Source`},
		{"maintainer newline", doc("Maintainer", `"a\nb"`), "Maintainer has control character U+000A at byte 1; it must be a single line of text"},
		{"description nul", doc("Description", `"a\u0000"`), "Description has control character U+0000"},
		{"description del", doc("Description", `"a\u007f"`), "Description has control character U+007F"},
		{"description line separator", doc("Description", `"a\u2028b"`), "Description has control character U+2028"},
		{"description long", doc("Description", `"`+strings.Repeat("x", 1025)+`"`), "Description is 1025 bytes long; at most 1024 are allowed"},

		// dependencies
		{"dep empty list", doc("Dependencies", `[[]]`), "Dependencies[0] is an empty list; want at least one alternative"},
		{"dep empty string", doc("Dependencies", `[""]`), `Dependencies[0]: dependency "": name is empty`},
		{"dep bad name", doc("Dependencies", `["B"]`), `Dependencies[0]: dependency "B": name "B" has character 'B'`},
		{"dep bad op", doc("Dependencies", `["b == 1"]`), `dependency "b == 1": operator "==" is not one of =, !=, <, <=, >, >=`},
		{"dep op =>", doc("Dependencies", `["b => 1"]`), `operator "=>" is not one of`},
		{"dep no op", doc("Dependencies", `["b 1"]`), `dependency "b 1": want "name" or "name OP version"`},
		{"dep no version", doc("Dependencies", `["b >="]`), `dependency "b >=": version after ">=" is missing`},
		{"dep no name", doc("Dependencies", `[">= 1"]`), `dependency ">= 1": name is empty`},
		{"dep bad version", doc("Dependencies", `["b >= 1..0-"]`), `version "1..0-": release after "-" is empty`},
		{"dep pipe", doc("Dependencies", `["b | c"]`), `alternatives are written as a JSON array of strings, not with "|"`},
		{"dep bad alternative", doc("Dependencies", `[["b", "C"]]`), `Dependencies[0]: dependency "C": name "C"`},
		{"dep self", doc("Dependencies", `["b", "a >= 1"]`), `Dependencies[1]: dependency "a >= 1" names the package itself`},
		{"dep self alternative", doc("Dependencies", `[["b", "a"]]`), `Dependencies[0]: dependency "a" names the package itself`},
		{"too many deps", doc("Dependencies", "["+strings.Repeat(`"b",`, 1000)+`"b"]`), "Dependencies has 1001 entries; at most 1000 are allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse([]byte(tt.doc))
			if err == nil {
				t.Fatalf("Parse(%q) = %+v, want an error containing %q", tt.doc, m, tt.want)
			}
			checkError(t, err, tt.want)
		})
	}
}

// checkError checks that err has the shape every error of this package has:
// one line, starting "package.json: ", containing want.
func checkError(t *testing.T, err error, want string) {
	t.Helper()
	msg := err.Error()
	if !strings.HasPrefix(msg, "package.json: ") {
		t.Errorf("error %q does not start with %q", msg, "package.json: ")
	}
	if !strings.Contains(msg, want) {
		t.Errorf("error %q does not contain %q", msg, want)
	}
	if strings.ContainsAny(msg, "\n\r") {
		t.Errorf("error is not one line: %q", msg)
	}
	if len(msg) > 300 {
		t.Errorf("error is %d bytes long: %q", len(msg), msg)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		spoil  func(m *Manifest)
		want   string
		passes bool
	}{
		{"valid", func(m *Manifest) {}, "", true},
		{"every architecture", nil, "", true},
		{"source", func(m *Manifest) { m.Type = TypeSource }, "", true},
		{"no text fields", func(m *Manifest) { m.Maintainer, m.Description = "", "" }, "", true},
		{"1000 deps", func(m *Manifest) {
			m.Dependencies = make([]Dependency, MaxDependencies)
			for i := range m.Dependencies {
				m.Dependencies[i] = Dependency{{Name: "b"}}
			}
		}, "", true},
		{"1024-byte description", func(m *Manifest) { m.Description = strings.Repeat("é", 512) }, "", true},
		{"name +._-", func(m *Manifest) { m.Name = "0lib+x.y_z-2" }, "", true},

		{"no name", func(m *Manifest) { m.Name = "" }, "Name is required", false},
		{"bad name", func(m *Manifest) { m.Name = "a b" }, `Name "a b" has character ' '`, false},
		{"no version", func(m *Manifest) { m.Version = "" }, "Version is required", false},
		{"bad version", func(m *Manifest) { m.Version = "1:2:3" }, `Version "1:2:3": has more than one ":"`, false},
		{"bad arch", func(m *Manifest) { m.Architecture = "amd64" }, `Architecture "amd64" is not one of`, false},
		{"bad type", func(m *Manifest) { m.Type = "source" }, `Type "source" is not Binary or Source`, false},
		{"invalid UTF-8", func(m *Manifest) { m.Maintainer = "a\xffb" }, "Maintainer is not valid UTF-8", false},
		{"C1 control", func(m *Manifest) { m.Description = "a\u0085b" }, "Description has control character U+0085", false},
		{"tab", func(m *Manifest) { m.Description = "a\tb" }, "Description has control character U+0009", false},
		{"long maintainer", func(m *Manifest) { m.Maintainer = strings.Repeat("m", 1025) }, "Maintainer is 1025 bytes long", false},
		{"nil alternative list", func(m *Manifest) { m.Dependencies = []Dependency{nil} }, "Dependencies[0] is an empty list", false},
		{"too many deps", func(m *Manifest) {
			m.Dependencies = make([]Dependency, MaxDependencies+1)
		}, "Dependencies has 1001 entries", false},
		{"unknown op", func(m *Manifest) {
			m.Dependencies[1][1].Op = "~="
		}, `Dependencies[1]: dependency "libfoo-ng ~= 3": operator "~=" is not one of`, false},
		{"version without op", func(m *Manifest) {
			m.Dependencies[0][0].Op = OpAny
		}, `Dependencies[0]: dependency "glibc": version "2.38" is given without an operator`, false},
		{"op without version", func(m *Manifest) {
			m.Dependencies[0][0].Version = ""
		}, `Dependencies[0]: dependency "glibc >= ": version after ">=" is missing`, false},
		{"self", func(m *Manifest) {
			m.Dependencies = append(m.Dependencies, Dependency{{Name: "hello", Op: OpLt, Version: "1"}})
		}, `Dependencies[2]: dependency "hello < 1" names the package itself`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.spoil == nil { // every architecture
				for _, a := range strings.Fields("x86_64 i686 aarch64 armv7h armv6h riscv64 ppc64le s390x loong64 any") {
					m := valid()
					m.Architecture = a
					if err := m.Validate(); err != nil {
						t.Errorf("Architecture %q: %v", a, err)
					}
				}
				return
			}
			m := valid()
			tt.spoil(m)
			err := m.Validate()
			if tt.passes {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate passed, want an error containing %q", tt.want)
			}
			checkError(t, err, tt.want)
			if _, err := Marshal(m); err == nil {
				t.Errorf("Marshal of an invalid manifest succeeded")
			}
		})
	}
}

func TestValidName(t *testing.T) {
	for _, n := range []string{"a", "0", "glibc", "lib32-gcc-libs", "python3.12", "gtk+", "a_b", strings.Repeat("z", 128)} {
		if err := ValidName(n); err != nil {
			t.Errorf("ValidName(%q) = %v", n, err)
		}
	}
	bad := map[string]string{
		"":                       "name is empty",
		"A":                      `name "A" has character 'A'`,
		".a":                     `name ".a" starts with character '.'`,
		"+a":                     `starts with character '+'`,
		"_a":                     `starts with character '_'`,
		"a b":                    `has character ' '`,
		"a/b":                    `has character '/'`,
		"a\x00":                  `has byte 0x00`,
		"a:b":                    `has character ':'`,
		strings.Repeat("z", 129): `is 129 bytes long; at most 128 are allowed`,
	}
	for n, want := range bad {
		err := ValidName(n)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidName(%q) = %v, want an error containing %q", n, err, want)
		}
	}
	// A long name is shortened in the message.
	if err := ValidName(strings.Repeat("Z", 5000)); len(err.Error()) > 200 {
		t.Errorf("error for a long name is %d bytes", len(err.Error()))
	}
}

func TestParseConstraint(t *testing.T) {
	good := []struct {
		in     string
		want   Constraint
		String string
	}{
		{"b", Constraint{Name: "b"}, "b"},
		{"  b  ", Constraint{Name: "b"}, "b"},
		{"b = 1", Constraint{"b", OpEq, "1"}, "b = 1"},
		{"b=1", Constraint{"b", OpEq, "1"}, "b = 1"},
		{"b!=1", Constraint{"b", OpNe, "1"}, "b != 1"},
		{"b <1", Constraint{"b", OpLt, "1"}, "b < 1"},
		{"b<= 1", Constraint{"b", OpLe, "1"}, "b <= 1"},
		{"b > 1", Constraint{"b", OpGt, "1"}, "b > 1"},
		{"b >= 2:1.0-3", Constraint{"b", OpGe, "2:1.0-3"}, "b >= 2:1.0-3"},
		{"lib32-b >= 1.0~rc1", Constraint{"lib32-b", OpGe, "1.0~rc1"}, "lib32-b >= 1.0~rc1"},
		{"b\t>=\t1", Constraint{"b", OpGe, "1"}, "b >= 1"},
	}
	for _, tt := range good {
		c, err := ParseConstraint(tt.in)
		if err != nil {
			t.Errorf("ParseConstraint(%q): %v", tt.in, err)
			continue
		}
		if c != tt.want {
			t.Errorf("ParseConstraint(%q) = %#v, want %#v", tt.in, c, tt.want)
		}
		if s := c.String(); s != tt.String {
			t.Errorf("ParseConstraint(%q).String() = %q, want %q", tt.in, s, tt.String)
		}
		if again, err := ParseConstraint(c.String()); err != nil || again != c {
			t.Errorf("ParseConstraint(%q) = %#v, %v; want %#v", c.String(), again, err, c)
		}
	}

	bad := []struct{ in, want string }{
		{"", `dependency "": name is empty`},
		{"B", `dependency "B": name "B" has character 'B'`},
		{"b 1", `want "name" or "name OP version" with OP one of =, !=, <, <=, >, >=`},
		{"b == 1", `operator "==" is not one of =, !=, <, <=, >, >=`},
		{"b ! 1", `operator "!" is not one of`},
		{"b <> 1", `operator "<>" is not one of`},
		{"b >=", `version after ">=" is missing`},
		{"b >= ", `version after ">=" is missing`},
		{"= 1", "name is empty"},
		{"b >= 1 2", `version "1 2": version part has character ' '`},
		{"b >= 1-2-3", `version "1-2-3": has more than one "-"`},
		{"b >= 1 >= 2", `version "1 >= 2"`},
		{"b|c", `alternatives are written as a JSON array of strings, not with "|"`},
		{"b >= 1\n", ""}, // trailing whitespace is trimmed: this one is fine
	}
	for _, tt := range bad {
		_, err := ParseConstraint(tt.in)
		if tt.want == "" {
			if err != nil {
				t.Errorf("ParseConstraint(%q): %v", tt.in, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseConstraint(%q) = %v, want an error containing %q", tt.in, err, tt.want)
			continue
		}
		if !strings.HasPrefix(err.Error(), "dependency ") || strings.ContainsAny(err.Error(), "\n\r") {
			t.Errorf("ParseConstraint(%q) error has the wrong shape: %q", tt.in, err)
		}
	}
}

func TestAllows(t *testing.T) {
	tests := []struct {
		c    string
		v    string
		want bool
	}{
		{"b", "0", true},
		{"b", "anything-at-all", true},
		{"b = 1.0", "1.0", true},
		{"b = 1.0", "1.0-5", true}, // pacman: no release on one side means any release
		{"b = 1.0-1", "1.0-2", false},
		{"b = 1.0", "1.00", true},
		{"b = 1.0", "1.0.0", false},
		{"b != 1.0", "1.0", false},
		{"b != 1.0", "1.1", true},
		{"b < 2", "1.9", true},
		{"b < 2", "2", false},
		{"b < 2", "2rc1", true},
		{"b <= 2", "2", true},
		{"b <= 2", "2.0.1", false},
		{"b > 1.0", "1.0a", false},
		{"b > 1.0", "1.0.1", true},
		{"b >= 1:1.0", "2.0", false}, // an epoch beats any version
		{"b >= 1:1.0", "1:1.0", true},
		{"b >= 1.10", "1.9", false},
	}
	for _, tt := range tests {
		c, err := ParseConstraint(tt.c)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Allows(tt.v); got != tt.want {
			t.Errorf("%q.Allows(%q) = %v, want %v", tt.c, tt.v, got, tt.want)
		}
	}
	if (Constraint{Name: "b", Op: "~", Version: "1"}).Allows("1") {
		t.Error("an unknown operator allows a version")
	}
}

func TestDependencyJSON(t *testing.T) {
	tests := []struct {
		json   string
		dep    Dependency
		canon  string // MarshalJSON output
		str    string
		names  []string
		reread bool // canon differs from json
	}{
		{`"b"`, Dependency{{Name: "b"}}, `"b"`, "b", []string{"b"}, false},
		{`"b>=1"`, Dependency{{"b", OpGe, "1"}}, `"b >= 1"`, "b >= 1", []string{"b"}, true},
		{`["b<1"]`, Dependency{{"b", OpLt, "1"}}, `"b < 1"`, "b < 1", []string{"b"}, true},
		{`["b", "c > 2"]`, Dependency{{Name: "b"}, {"c", OpGt, "2"}}, `["b","c > 2"]`, "b | c > 2", []string{"b", "c"}, true},
		{`[ "b" , "c" , "d" ]`, Dependency{{Name: "b"}, {Name: "c"}, {Name: "d"}}, `["b","c","d"]`, "b | c | d", []string{"b", "c", "d"}, true},
		{`[]`, Dependency{}, `[]`, "", []string{}, false},
	}
	for _, tt := range tests {
		var d Dependency
		if err := d.UnmarshalJSON([]byte(tt.json)); err != nil {
			t.Errorf("UnmarshalJSON(%s): %v", tt.json, err)
			continue
		}
		if !reflect.DeepEqual(d, tt.dep) {
			t.Errorf("UnmarshalJSON(%s) = %#v, want %#v", tt.json, d, tt.dep)
		}
		out, err := d.MarshalJSON()
		if err != nil || string(out) != tt.canon {
			t.Errorf("MarshalJSON(%v) = %s, %v; want %s", d, out, err, tt.canon)
		}
		if s := d.String(); s != tt.str {
			t.Errorf("String() = %q, want %q", s, tt.str)
		}
		if n := d.Names(); !reflect.DeepEqual(n, tt.names) {
			t.Errorf("Names() = %q, want %q", n, tt.names)
		}
		var again Dependency
		if err := again.UnmarshalJSON(out); err != nil || !reflect.DeepEqual(again, d) {
			t.Errorf("UnmarshalJSON(%s) = %#v, %v; want %#v", out, again, err, d)
		}
	}

	for _, bad := range []string{`1`, `null`, `{}`, `true`, `[1]`, `[["b"]]`, `"B"`, `["b", "c d"]`, `"b | c"`} {
		var d Dependency
		if err := d.UnmarshalJSON([]byte(bad)); err == nil {
			t.Errorf("UnmarshalJSON(%s) = %#v, want an error", bad, d)
		}
	}
}

func TestMarshal(t *testing.T) {
	out, err := Marshal(valid())
	if err != nil {
		t.Fatal(err)
	}
	// The canonical form is stable: field order, two-space indent, a final
	// newline, and no HTML escaping of < and >.
	if string(out) != validDoc {
		t.Errorf("Marshal =\n%s\nwant\n%s", out, validDoc)
	}
	m, err := Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m, valid()) {
		t.Errorf("Parse(Marshal(m)) = %#v, want %#v", m, valid())
	}

	min := &Manifest{Name: "a", Version: "1", Architecture: "any", Type: TypeSource}
	out, err = Marshal(min)
	if err != nil {
		t.Fatal(err)
	}
	want := "{\n  \"Name\": \"a\",\n  \"Version\": \"1\",\n  \"Architecture\": \"any\",\n  \"Type\": \"Source\"\n}\n"
	if string(out) != want {
		t.Errorf("Marshal = %q, want %q", out, want)
	}
}

func TestNames(t *testing.T) {
	m := valid()
	if got, want := m.FileName(), "hello-1:2.12-3-x86_64.tpkg"; got != want {
		t.Errorf("FileName = %q, want %q", got, want)
	}
	if got, want := m.String(), "hello 1:2.12-3"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
}

func TestRunsOn(t *testing.T) {
	m := valid()
	if !m.RunsOn("x86_64") || m.RunsOn("aarch64") || m.RunsOn("any") {
		t.Error("an x86_64 package: RunsOn is wrong")
	}
	m.Architecture = ArchAny
	if !m.RunsOn("x86_64") || !m.RunsOn("riscv64") {
		t.Error("an any package: RunsOn is wrong")
	}
}

func TestHostArchitecture(t *testing.T) {
	want := map[string]string{
		"amd64": "x86_64", "arm64": "aarch64", "386": "i686", "arm": "armv7h",
		"riscv64": "riscv64", "ppc64le": "ppc64le", "s390x": "s390x", "loong64": "loong64",
	}[runtime.GOARCH]
	if want == "" {
		want = runtime.GOARCH
	}
	if got := HostArchitecture(); got != want {
		t.Errorf("HostArchitecture() = %q on %s, want %q", got, runtime.GOARCH, want)
	}
	if want != runtime.GOARCH || runtime.GOARCH == "riscv64" {
		if !knownArch(HostArchitecture()) {
			t.Errorf("HostArchitecture() = %q is not a package architecture", HostArchitecture())
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, doc := range []string{
		validDoc,
		`{"Name":"a","Version":"1","Architecture":"any","Type":"Source"}`,
		`{"Name":"a","Version":"1","Architecture":"any","Type":"Binary","Dependencies":[]}`,
		`{"Name":"a","Version":"0:1-1","Architecture":"i686","Type":"Binary","Dependencies":["b=1",["c","d!=2"]]}`,
		`{"Name":"a","Version":"1","Architecture":"any","Type":"Binary","Description":"caf\u00e9 \u2028"}`,
		`{"Name":"a","Version":"1","Architecture":"any","Type":"Binary","Maintainer":"\ud800"}`,
		`{"Name":"a","Name":"b"}`,
		`{"name":"a"}`,
		`{"Name":"a","Version":"1","Architecture":"any","Type":"Binary","Dependencies":[[]]}`,
		`{"Name":"a","Version":"1","Architecture":"any","Type":"Binary","Dependencies":["a"]}`,
		`{"Name":"a","Version":"1","Architecture":"any","Type":"Binary","Dependencies":["b == 1"]}`,
		`{"Name":"a","Version":"1","Architecture":"any","Type":"Binary"}{}`,
		`{"Name":null}`,
		`[]`,
		`""`,
		``,
		`{`,
		`{"Name":"a","Version":"1..0-","Architecture":"any","Type":"Binary"}`,
	} {
		f.Add([]byte(doc))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			msg := err.Error()
			if m != nil {
				t.Fatalf("Parse returned a manifest and an error: %v", err)
			}
			if !strings.HasPrefix(msg, "package.json: ") || strings.ContainsAny(msg, "\n\r") {
				t.Fatalf("malformed error %q", msg)
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("Parse accepted a manifest that Validate rejects: %v", err)
		}
		out, err := Marshal(m)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(Marshal(m)): %v\n%s", err, out)
		}
		if !reflect.DeepEqual(m, again) {
			t.Fatalf("round trip changed the manifest:\n%#v\n%#v", m, again)
		}
		if out2, _ := Marshal(again); string(out2) != string(out) {
			t.Fatalf("Marshal is not stable:\n%s\n%s", out, out2)
		}
	})
}
