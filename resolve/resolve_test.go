package resolve

import (
	"errors"
	"testing"

	"tpm/manifest"
)

func constraints(t *testing.T, ss ...string) []manifest.Constraint {
	var out []manifest.Constraint
	for _, s := range ss {
		c, err := manifest.ParseConstraint(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

func choices(cs []Choice) string {
	var s string
	for i, c := range cs {
		if i > 0 {
			s += " "
		}
		s += c.Name + "-" + c.Version
		if c.Requested {
			s += "*"
		}
	}
	return s
}

func TestResolve(t *testing.T) {
	repo := []*manifest.Manifest{
		pkg(t, "hello 1.0", "libgreet"),
		pkg(t, "hello 2.0", "libgreet >= 1.2", `["greet-data","greet-mini"]`),
		pkg(t, "libgreet 1.0"), pkg(t, "libgreet 1.2", "greet-data"),
		pkg(t, "greet-data 1.0"),
		pkg(t, "greet-mini 1.0"),
		pkg(t, "needs-new 1.0", "libgreet >= 3"),
		pkg(t, "needs-ghost 1.0", "ghost"),
		pkg(t, "cyc-a 1.0", "cyc-b"), pkg(t, "cyc-b 1.0", "cyc-c"), pkg(t, "cyc-c 1.0", "cyc-a"),
		pkg(t, "alt 1.0", `["nothing-a","greet-mini"]`),
	}
	idx := NewIndex(repo, "x86_64")
	cases := []struct {
		name      string
		installed []*manifest.Manifest
		want      []string
		out       string
	}{
		{"newest with deps, dependencies first", nil, []string{"hello"}, "greet-data-1.0 libgreet-1.2 hello-2.0*"},
		{"installed satisfies", []*manifest.Manifest{pkg(t, "libgreet 1.2"), pkg(t, "greet-mini 0.5")}, []string{"hello"}, "hello-2.0*"},
		{"installed too old is replaced", []*manifest.Manifest{pkg(t, "libgreet 1.0"), pkg(t, "greet-data 1.0")}, []string{"hello"}, "libgreet-1.2 hello-2.0*"},
		{"constraint picks older", nil, []string{"hello < 2"}, "greet-data-1.0 libgreet-1.2 hello-1.0*"},
		{"already installed", []*manifest.Manifest{pkg(t, "greet-data 1.0")}, []string{"greet-data"}, ""},
		{"second alternative", nil, []string{"alt"}, "greet-mini-1.0 alt-1.0*"},
		{"unknown", nil, []string{"nope"}, "cannot satisfy nope (no package of that name in the index)"},
		{"too new", nil, []string{"needs-new"}, "cannot satisfy needs-new 1.0 → libgreet >= 3 (only libgreet 1.2, libgreet 1.0)"},
		{"missing deep", nil, []string{"needs-ghost"}, "cannot satisfy needs-ghost 1.0 → ghost (no package of that name in the index)"},
		{"cycle", nil, []string{"cyc-a"}, "dependency cycle: cyc-a → cyc-b → cyc-c → cyc-a"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Resolve(idx, tc.installed, constraints(t, tc.want...))
			if err != nil {
				if err.Error() != tc.out {
					t.Fatalf("error %q, want %q", err, tc.out)
				}
				return
			}
			if choices(got) != tc.out {
				t.Fatalf("got %q, want %q", choices(got), tc.out)
			}
		})
	}
}

func TestResolveErrorTypes(t *testing.T) {
	idx := NewIndex([]*manifest.Manifest{pkg(t, "a 1", "b"), pkg(t, "b 1", "a"), pkg(t, "c 1", "zz")}, "x86_64")
	_, err := Resolve(idx, nil, constraints(t, "a"))
	var cycle *CycleError
	if !errors.As(err, &cycle) {
		t.Fatalf("got %v", err)
	}
	_, err = Resolve(idx, nil, constraints(t, "c"))
	var unsat *UnsatisfiableError
	if !errors.As(err, &unsat) || len(unsat.Chain) != 2 {
		t.Fatalf("got %v", err)
	}
}

func TestUpgradesAndArch(t *testing.T) {
	arm := pkg(t, "a 9")
	arm.Architecture = "aarch64"
	idx := NewIndex([]*manifest.Manifest{pkg(t, "a 1"), pkg(t, "a 2"), arm, pkg(t, "b 1")}, "x86_64")
	r := &resolver{idx: idx, seen: map[string][]*manifest.Manifest{}}
	if got := r.best(manifest.Constraint{Name: "a"}); got.Version != "2" {
		t.Fatalf("best a = %v: a foreign architecture must not be chosen", got)
	}
	ups := Upgrades(idx, []*manifest.Manifest{pkg(t, "a 1"), pkg(t, "b 1"), pkg(t, "z 1")})
	if len(ups) != 1 || ups[0].String() != "a = 2" {
		t.Fatalf("upgrades = %v", ups)
	}
}

// counting is an Index as one read from a file is: each call decodes the
// manifests anew (copies), and the calls are counted.
type counting struct {
	Map
	calls map[string]int
}

func (c counting) Versions(name string) []*manifest.Manifest {
	c.calls[name]++
	var out []*manifest.Manifest
	for _, m := range c.Map[name] {
		cp := *m
		out = append(out, &cp)
	}
	return out
}

// TestResolveAsksOncePerName: an index that decodes at each call resolves
// as a map does, and is asked for each name once per resolution.
func TestResolveAsksOncePerName(t *testing.T) {
	repo := []*manifest.Manifest{
		pkg(t, "app 1.0", "liba", "libb", `["greet-x","libc"]`),
		pkg(t, "liba 1.0", "libc >= 1"), pkg(t, "libb 1.0", "libc", "liba"),
		pkg(t, "libc 1.0"), pkg(t, "libc 2.0"),
	}
	mem := NewIndex(repo, "x86_64")
	want, err := Resolve(mem, nil, constraints(t, "app", "libc", "app"))
	if err != nil {
		t.Fatal(err)
	}
	idx := counting{Map: mem, calls: map[string]int{}}
	got, err := Resolve(idx, nil, constraints(t, "app", "libc", "app"))
	if err != nil || choices(got) != choices(want) || choices(got) != "libc-2.0* liba-1.0 libb-1.0 app-1.0*" {
		t.Fatalf("got %q %v, want %q", choices(got), err, choices(want))
	}
	for name, n := range idx.calls {
		if n != 1 {
			t.Errorf("asked for %s %d times", name, n)
		}
	}
}
