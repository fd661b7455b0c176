package manifest

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

const mtaDoc = `{
  "Name": "postfix",
  "Version": "3.8-1",
  "Architecture": "any",
  "Type": "Binary",
  "Provides": [
    "mail-transport-agent",
    "sendmail-bin = 3.8"
  ],
  "Conflicts": [
    "mail-transport-agent",
    "exim4 < 5"
  ],
  "Replaces": [
    "mail-transport-agent"
  ]
}
`

// TestRelationsRoundTrip: the fields parse, marshal to the same bytes, and
// travel through the JSON an index entry is (plain json.Unmarshal).
func TestRelationsRoundTrip(t *testing.T) {
	m, err := Parse([]byte(mtaDoc))
	if err != nil {
		t.Fatal(err)
	}
	want := Constraints{{Name: "mail-transport-agent"}, {Name: "sendmail-bin", Op: OpEq, Version: "3.8"}}
	if !reflect.DeepEqual(m.Provides, want) {
		t.Fatalf("Provides = %v, want %v", m.Provides, want)
	}
	out, err := Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != mtaDoc {
		t.Errorf("Marshal =\n%s\nwant\n%s", out, mtaDoc)
	}
	var back Manifest
	if err := json.Unmarshal(out, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, m) {
		t.Errorf("json round trip = %#v, want %#v", back, m)
	}
	// An entry of an index made before the fields: none of them.
	var old Manifest
	if err := json.Unmarshal([]byte(`{"Name":"a","Version":"1","Architecture":"any","Type":"Binary"}`), &old); err != nil {
		t.Fatal(err)
	}
	if old.Provides != nil || old.Conflicts != nil || old.Replaces != nil {
		t.Errorf("old entry has relations: %#v", old)
	}
}

func TestRelationsInvalid(t *testing.T) {
	base := `"Name":"postfix","Version":"1","Architecture":"any","Type":"Binary"`
	many := strings.Repeat(`"x",`, MaxRelations) + `"x"`
	tests := []struct{ field, want string }{
		{`"Provides":"awk"`, `Provides is a string; want an array of strings`},
		{`"Provides":[1]`, `Provides[0] is a number; want a string`},
		{`"Provides":[["a","b"]]`, `Provides[0] is an array; want a string`},
		{`"Provides":["postfix"]`, `Provides[0]: "postfix" is the package's own name; a package always provides itself`},
		{`"Provides":["awk >= 1"]`, `Provides[0]: "awk >= 1": a package provides a name at one version`},
		{`"Provides":["Awk"]`, `Provides[0]: dependency "Awk": name "Awk" has character 'A'`},
		{`"Conflicts":["postfix < 2"]`, `Conflicts[0]: "postfix < 2" names the package itself`},
		{`"Replaces":["a | b"]`, `Replaces[0]: dependency "a | b": alternatives are written as a JSON array`},
		{`"Replaces":null`, `Replaces is null; want an array of strings`},
		{`"Conflicts":[` + many + `]`, fmt.Sprintf("Conflicts has %d entries; at most %d are allowed", MaxRelations+1, MaxRelations)},
		{`"provides":["a"]`, `did you mean "Provides"?`},
	}
	for _, tt := range tests {
		_, err := Parse([]byte("{" + base + "," + tt.field + "}"))
		if err == nil {
			t.Errorf("%s: parsed", tt.field[:min(len(tt.field), 40)])
			continue
		}
		checkError(t, err, tt.want)
	}
	// Built in code, the same rules hold.
	m := &Manifest{Name: "a", Version: "1", Architecture: "any", Type: TypeBinary, Replaces: Constraints{{Name: "a"}}}
	checkError(t, m.Validate(), `Replaces[0]: "a" names the package itself`)
}

func rel(t *testing.T, spec string, provides, conflicts, replaces []string) *Manifest {
	t.Helper()
	name, ver, _ := strings.Cut(spec, " ")
	m := &Manifest{Name: name, Version: ver, Architecture: ArchAny, Type: TypeBinary}
	for _, f := range []struct {
		in  []string
		dst *Constraints
	}{{provides, &m.Provides}, {conflicts, &m.Conflicts}, {replaces, &m.Replaces}} {
		for _, s := range f.in {
			c, err := ParseConstraint(s)
			if err != nil {
				t.Fatal(err)
			}
			*f.dst = append(*f.dst, c)
		}
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSatisfies(t *testing.T) {
	m := rel(t, "openssl 3.0.2", []string{"libssl = 3.0", "ssl-tool"}, nil, nil)
	for _, tt := range []struct {
		c    string
		want bool
	}{
		{"openssl", true}, {"openssl >= 3", true}, {"openssl < 3", false},
		{"libssl", true}, {"libssl >= 3", true}, {"libssl = 3.0", true}, {"libssl < 3", false},
		// Unversioned: meets only a dependency without a version.
		{"ssl-tool", true}, {"ssl-tool >= 1", false},
		{"other", false},
	} {
		c, err := ParseConstraint(tt.c)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Satisfies(c); got != tt.want {
			t.Errorf("Satisfies(%s) = %v, want %v", tt.c, got, tt.want)
		}
	}
}

// TestConflictingMTA: the Debian pattern. Each MTA provides, conflicts
// with and replaces the virtual name: it conflicts with the other, never
// with itself or another version of itself.
func TestConflictingMTA(t *testing.T) {
	mta := []string{"mail-transport-agent"}
	postfix := rel(t, "postfix 3.8", mta, mta, mta)
	postfix2 := rel(t, "postfix 3.9", mta, mta, mta)
	exim := rel(t, "exim4 4.96", mta, mta, mta)
	mutt := rel(t, "mutt 2.2", nil, nil, nil)
	if c, ok := Conflicting(postfix, exim); !ok || c.String() != "postfix 3.8 conflicts with exim4 4.96 (which provides mail-transport-agent)" {
		t.Errorf("postfix, exim4: %v %v", ok, c)
	}
	if _, ok := Conflicting(exim, postfix); !ok {
		t.Error("exim4, postfix: no conflict")
	}
	for _, pair := range [][2]*Manifest{{postfix, postfix}, {postfix, postfix2}, {postfix, mutt}, {mutt, exim}} {
		if c, ok := Conflicting(pair[0], pair[1]); ok {
			t.Errorf("%s, %s: %v", pair[0], pair[1], c)
		}
	}
	// One-sided: only the one that names the other has the relation; the
	// conflict holds from both sides.
	old := rel(t, "sendmail 8", nil, []string{"postfix"}, nil)
	if c, ok := Conflicting(postfix, old); !ok || c.Package != old {
		t.Errorf("postfix, sendmail: %v %v", ok, c)
	}
	if !postfix.ReplacesPackage(exim) || postfix.ReplacesPackage(postfix2) || postfix.ReplacesPackage(mutt) {
		t.Error("ReplacesPackage")
	}
}
