package resolve

import (
	"strings"
	"testing"

	"tpm/manifest"
)

func TestUnneeded(t *testing.T) {
	app := pkg(t, "app 1", "lib", "awk")
	lib := pkg(t, "lib 1", "libc")
	libc := pkg(t, "libc 1")
	mawk := rel(t, "mawk 1", "P:awk")
	gawk := rel(t, "gawk 1", "P:awk")
	old := pkg(t, "old 1", "oldlib")
	oldlib := pkg(t, "oldlib 1", "old") // a cycle of two unneeded packages
	tool := pkg(t, "tool 1")
	all := []*manifest.Manifest{app, lib, libc, mawk, gawk, old, oldlib, tool}
	for _, c := range []struct {
		name     string
		roots    string
		removing []string
		want     string
	}{
		{"what app needs stays, through providers of a virtual name", "app tool", nil, "old oldlib"},
		{"removing app leaves all it needed unneeded", "app tool", []string{"app"}, "gawk lib libc mawk old oldlib"},
		{"a root keeps what it needs", "app tool old", nil, ""},
		{"a dependency met by a root is not unneeded", "app tool lib", []string{"app"}, "gawk mawk old oldlib"},
		{"no roots: everything", "", nil, "app gawk lib libc mawk old oldlib tool"},
	} {
		roots := map[string]bool{}
		for _, n := range strings.Fields(c.roots) {
			roots[n] = true
		}
		if got := names(Unneeded(all, roots, c.removing)); got != c.want {
			t.Errorf("%s: unneeded = %q, want %q", c.name, got, c.want)
		}
	}
}
