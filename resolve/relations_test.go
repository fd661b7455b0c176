package resolve

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"tpm/manifest"
)

// rel is pkg with relations: an argument "P:x" provides x, "C:x"
// conflicts with x, "R:x" replaces x; any other is a dependency.
func rel(t *testing.T, nameVersion string, args ...string) *manifest.Manifest {
	t.Helper()
	var deps []string
	var rels [3][]string
	for _, a := range args {
		if i := strings.Index("PCR", a[:1]); len(a) > 2 && a[1] == ':' && i >= 0 {
			rels[i] = append(rels[i], a[2:])
			continue
		}
		deps = append(deps, a)
	}
	m := pkg(t, nameVersion, deps...)
	for i, dst := range []*manifest.Constraints{&m.Provides, &m.Conflicts, &m.Replaces} {
		for _, s := range rels[i] {
			c, err := manifest.ParseConstraint(s)
			if err != nil {
				t.Fatal(err)
			}
			*dst = append(*dst, c)
		}
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestProvidesAwk: mawk and gawk both provide awk. A dependency on awk,
// or a request for it, takes an installed provider, else the package named
// awk, else the first provider by name, and says so.
func TestProvidesAwk(t *testing.T) {
	mawk, gawk := rel(t, "mawk 1.3", "P:awk"), rel(t, "gawk 5.2", "P:awk")
	script := rel(t, "script 1", "awk")
	idx := NewIndex([]*manifest.Manifest{mawk, gawk, script, rel(t, "old-gawk-user 1", "C:gawk")}, "x86_64")
	cases := []struct {
		name      string
		installed []*manifest.Manifest
		want      string
		out       string
	}{
		{"a virtual name asked for", nil, "awk", "gawk-5.2*"},
		{"a virtual dependency", nil, "script", "gawk-5.2 script-1*"},
		{"an installed provider first", []*manifest.Manifest{mawk}, "script", "script-1*"},
		{"already provided", []*manifest.Manifest{mawk}, "awk", ""},
		{"a provider that conflicts with nothing", []*manifest.Manifest{rel(t, "old-gawk-user 1", "C:gawk")}, "awk", "mawk-1.3*"},
		{"a provider asked for by name", nil, "mawk", "mawk-1.3*"},
	}
	for _, c := range cases {
		got, err := Resolve(idx, c.installed, constraints(t, c.want))
		if err != nil || choices(got) != c.out {
			t.Errorf("%s: got %q %v, want %q", c.name, choices(got), err, c.out)
		}
	}
	got, _ := Resolve(idx, nil, constraints(t, "awk"))
	if got[0].For != "awk" || !slices.Equal(got[0].Alternatives, []string{"mawk"}) {
		t.Errorf("choice for awk: For %q, Alternatives %q", got[0].For, got[0].Alternatives)
	}

	// A package named awk wins over its providers.
	real := NewIndex([]*manifest.Manifest{mawk, gawk, rel(t, "awk 1.0")}, "x86_64")
	if got, err := Resolve(real, nil, constraints(t, "awk")); err != nil || choices(got) != "awk-1.0*" || got[0].For != "" {
		t.Errorf("awk with a real awk: %q %v", choices(got), err)
	}
}

// TestProvidesVersioned: a versioned Provides meets versioned dependencies;
// an unversioned one only unversioned ones.
func TestProvidesVersioned(t *testing.T) {
	idx := NewIndex([]*manifest.Manifest{
		rel(t, "aaa-ssl 3.8", "P:libssl"),
		rel(t, "openssl 3.0.2", "P:libssl = 3.0"),
		rel(t, "app 1", "libssl >= 3"),
		rel(t, "oldapp 1", "libssl < 1"),
	}, "x86_64")
	if got, err := Resolve(idx, nil, constraints(t, "app")); err != nil || choices(got) != "openssl-3.0.2 app-1*" {
		t.Errorf("app: %q %v", choices(got), err)
	}
	_, err := Resolve(idx, nil, constraints(t, "oldapp"))
	var ue *UnsatisfiableError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "openssl 3.0.2 (provides libssl)") {
		t.Errorf("oldapp: %v", err)
	}
}

// TestMTA: postfix and exim4 each provide mail-transport-agent, conflict
// with it and replace it: installing one takes the other away, both at
// once is refused, and what needs the name stays met across the swap.
func TestMTA(t *testing.T) {
	mta := []string{"P:mail-transport-agent", "C:mail-transport-agent", "R:mail-transport-agent"}
	postfix, exim := rel(t, "postfix 3.8", mta...), rel(t, "exim4 4.96", mta...)
	mutt := rel(t, "mutt 2.2", "mail-transport-agent")
	idx := NewIndex([]*manifest.Manifest{postfix, exim, mutt, rel(t, "postfix 3.9", mta...)}, "x86_64")

	got, err := Resolve(idx, []*manifest.Manifest{exim, mutt}, constraints(t, "postfix"))
	if err != nil || choices(got) != "postfix-3.9*" {
		t.Fatalf("postfix over exim4: %q %v", choices(got), err)
	}
	d, err := Displaced([]*manifest.Manifest{exim, mutt}, []*manifest.Manifest{got[0].Manifest})
	if err != nil || len(d) != 1 || d[0].Package != exim || d[0].By != got[0].Manifest {
		t.Fatalf("displaced: %v %v", d, err)
	}
	// The engine's check of the same change: mutt stays met by postfix.
	ch := Change{Installed: []*manifest.Manifest{exim, mutt}, Add: []*manifest.Manifest{got[0].Manifest}, Remove: []string{"exim4"}}
	if _, err := Order(ch); err != nil {
		t.Errorf("order of the swap: %v", err)
	}
	if broken := Dependents([]*manifest.Manifest{exim, mutt}, []string{"exim4"}); names(broken) != "mutt" {
		t.Errorf("dependents of exim4 = %q", names(broken))
	}
	// An upgrade of the MTA in place conflicts with nothing.
	if got, err := Resolve(idx, []*manifest.Manifest{postfix}, constraints(t, "postfix = 3.9")); err != nil || choices(got) != "postfix-3.9*" {
		t.Errorf("postfix upgrade: %q %v", choices(got), err)
	}
	// Both at once is one line naming the pair.
	_, err = Resolve(idx, nil, constraints(t, "postfix", "exim4"))
	var ce *ConflictError
	if !errors.As(err, &ce) || err.Error() != "cannot install postfix 3.9 and exim4 4.96 together: postfix 3.9 conflicts with exim4 4.96 (which provides mail-transport-agent)" {
		t.Errorf("both: %v", err)
	}
	// mutt with exim4 installed needs nothing more.
	if got, err := Resolve(idx, []*manifest.Manifest{exim}, constraints(t, "mutt")); err != nil || choices(got) != "mutt-2.2*" {
		t.Errorf("mutt: %q %v", choices(got), err)
	}
}

// TestConflictsUnsatisfiable: a conflict with an installed package that
// the request does not replace, in either direction, or between two
// packages a request needs, refuses it in one line naming the pair.
func TestConflictsUnsatisfiable(t *testing.T) {
	a, b := rel(t, "a 1", "C:b"), rel(t, "b 1")
	x, y := rel(t, "x 1"), rel(t, "y 1", "C:x >= 1")
	app := rel(t, "app 1", "x", "y")
	idx := NewIndex([]*manifest.Manifest{a, b, x, y, app}, "x86_64")
	for _, c := range []struct {
		installed []*manifest.Manifest
		want, err string
	}{
		{[]*manifest.Manifest{b}, "a", "cannot install a 1: a 1 conflicts with b 1, which is installed and which a does not replace; remove b first"},
		{[]*manifest.Manifest{a}, "b", "cannot install b 1: a 1 conflicts with b 1, which is installed and which b does not replace; remove a first"},
		{nil, "app", "cannot install y 1 and x 1 together: y 1 conflicts with x 1"},
	} {
		_, err := Resolve(idx, c.installed, constraints(t, c.want))
		var ce *ConflictError
		if !errors.As(err, &ce) || err.Error() != c.err {
			t.Errorf("%s: %v, want %s", c.want, err, c.err)
		}
	}
}

// TestLibrarySplit: libfoo2 replaces files of libfoo1 without conflicting
// with it: both stay installed (the engine moves the files).
func TestLibrarySplit(t *testing.T) {
	libfoo1, libfoo2 := rel(t, "libfoo1 1.0"), rel(t, "libfoo2 2.0", "R:libfoo1 < 2")
	idx := NewIndex([]*manifest.Manifest{libfoo1, libfoo2}, "x86_64")
	got, err := Resolve(idx, []*manifest.Manifest{libfoo1}, constraints(t, "libfoo2"))
	if err != nil || choices(got) != "libfoo2-2.0*" {
		t.Fatalf("%q %v", choices(got), err)
	}
	if d, err := Displaced([]*manifest.Manifest{libfoo1}, []*manifest.Manifest{libfoo2}); err != nil || len(d) != 0 {
		t.Errorf("displaced: %v %v", d, err)
	}
	if !libfoo2.ReplacesPackage(libfoo1) {
		t.Error("libfoo2 does not replace libfoo1")
	}
}

// TestCycleThroughVirtual: a needs v, which only b provides, and b needs a.
func TestCycleThroughVirtual(t *testing.T) {
	idx := NewIndex([]*manifest.Manifest{rel(t, "a 1", "v"), rel(t, "b 1", "P:v", "a")}, "x86_64")
	_, err := Resolve(idx, nil, constraints(t, "a"))
	var ce *CycleError
	if !errors.As(err, &ce) || err.Error() != "dependency cycle: a → b → a" {
		t.Errorf("resolve: %v", err)
	}
	// The engine's ordering finds it too.
	_, err = Order(Change{Add: []*manifest.Manifest{rel(t, "a 1", "v"), rel(t, "b 1", "P:v", "a")}})
	if !errors.As(err, &ce) || err.Error() != "dependency cycle: a → b → a" {
		t.Errorf("order: %v", err)
	}
}
