package resolve

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"tpm/manifest"
)

// pkg builds a manifest: pkg("a 1.0", "b >= 2", `["c","d"]`).
func pkg(t *testing.T, nameVersion string, deps ...string) *manifest.Manifest {
	t.Helper()
	name, ver, _ := strings.Cut(nameVersion, " ")
	m := &manifest.Manifest{Name: name, Version: ver, Architecture: "any", Type: "Binary"}
	for _, d := range deps {
		raw := []byte(d)
		if !strings.HasPrefix(d, "[") {
			raw, _ = json.Marshal(d)
		}
		var dep manifest.Dependency
		if err := json.Unmarshal(raw, &dep); err != nil {
			t.Fatalf("dependency %s: %v", d, err)
		}
		m.Dependencies = append(m.Dependencies, dep)
	}
	return m
}

func names(ms []*manifest.Manifest) string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return strings.Join(out, " ")
}

func TestOrder(t *testing.T) {
	cases := []struct {
		name      string
		installed []*manifest.Manifest
		add       []*manifest.Manifest
		remove    []string
		want      string // order, or the error text
	}{
		{"chain in reverse", nil, []*manifest.Manifest{pkg(t, "c 1", "b"), pkg(t, "b 1", "a >= 1"), pkg(t, "a 1")}, nil, "a b c"},
		{"installed dependency", []*manifest.Manifest{pkg(t, "a 1")}, []*manifest.Manifest{pkg(t, "b 1", "a")}, nil, "b"},
		{"missing", nil, []*manifest.Manifest{pkg(t, "b 1", "a")}, nil, "b 1 needs a (not installed)"},
		{"too old", []*manifest.Manifest{pkg(t, "a 1.0")}, []*manifest.Manifest{pkg(t, "b 1", "a >= 2")}, nil, "b 1 needs a >= 2 (have a 1.0)"},
		{"alternative second", []*manifest.Manifest{pkg(t, "d 1")}, []*manifest.Manifest{pkg(t, "b 1", `["c","d"]`)}, nil, "b"},
		{"alternative none", nil, []*manifest.Manifest{pkg(t, "b 1", `["c","d > 1"]`)}, nil, "b 1 needs c | d > 1 (not installed)"},
		{"cycle", nil, []*manifest.Manifest{pkg(t, "a 1", "b"), pkg(t, "b 1", "a")}, nil, "dependency cycle: a → b → a"},
		{"longer cycle", nil, []*manifest.Manifest{pkg(t, "x 1"), pkg(t, "a 1", "b"), pkg(t, "b 1", "c"), pkg(t, "c 1", "a")}, nil, "dependency cycle: a → b → c → a"},
		{"upgrade breaks dependent", []*manifest.Manifest{pkg(t, "a 1"), pkg(t, "b 1", "a < 2")}, []*manifest.Manifest{pkg(t, "a 2")}, nil, "the change breaks b 1, which needs a < 2 (have a 2)"},
		{"upgrade together", []*manifest.Manifest{pkg(t, "a 1"), pkg(t, "b 1", "a < 2")}, []*manifest.Manifest{pkg(t, "b 2", "a >= 2"), pkg(t, "a 2")}, nil, "a b"},
		{"remove breaks", []*manifest.Manifest{pkg(t, "a 1"), pkg(t, "b 1", "a")}, nil, []string{"a"}, "the change breaks b 1, which needs a (not installed)"},
		{"twice", nil, []*manifest.Manifest{pkg(t, "a 1"), pkg(t, "a 2")}, nil, "a is named twice in one transaction"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Order(Change{Installed: tc.installed, Add: tc.add, Remove: tc.remove})
			if err != nil {
				if err.Error() != tc.want {
					t.Fatalf("error %q, want %q", err, tc.want)
				}
				return
			}
			if names(got) != tc.want {
				t.Fatalf("order %q, want %q", names(got), tc.want)
			}
		})
	}
}

func TestCycleErrorType(t *testing.T) {
	_, err := Order(Change{Add: []*manifest.Manifest{pkg(t, "a 1", "a2"), pkg(t, "a2 1", "a")}})
	var cycle *CycleError
	if !errors.As(err, &cycle) || len(cycle.Chain) != 3 {
		t.Fatalf("got %v", err)
	}
}

func TestDependents(t *testing.T) {
	installed := []*manifest.Manifest{pkg(t, "a 1"), pkg(t, "b 1", "a"), pkg(t, "c 1", `["a","z"]`), pkg(t, "z 1"), pkg(t, "d 1", "b")}
	if got := names(Dependents(installed, []string{"a"})); got != "b" {
		t.Fatalf("dependents of a: %q, want b (c has z as alternative)", got)
	}
	if got := names(Dependents(installed, []string{"a", "b"})); got != "d" {
		t.Fatalf("dependents of a b: %q, want d", got)
	}
}

func TestDependentsFirst(t *testing.T) {
	set := []*manifest.Manifest{pkg(t, "lib 1"), pkg(t, "app 1", "lib"), pkg(t, "tool 1", `["app","x"]`), pkg(t, "c1 1", "c2"), pkg(t, "c2 1", "c1")}
	got := names(DependentsFirst(set))
	pos := map[string]int{}
	for i, n := range strings.Fields(got) {
		pos[n] = i
	}
	if len(pos) != 5 || pos["tool"] > pos["app"] || pos["app"] > pos["lib"] {
		t.Fatalf("order %q: want tool before app before lib, every package once", got)
	}
}
