package repo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"tpm/generation"
	"tpm/repo/repotest"
)

// TestRescanMatchesAFullRead: a rescan makes its generation from the last
// one and the changes; after every round of random adds, rewrites,
// removals and broken files it must equal the generation a new scanner
// reads whole from the same catalog, index.json included.
func TestRescanMatchesAFullRead(t *testing.T) {
	f := newFixture(t, CheckFull)
	rng := rand.New(rand.NewPCG(1, 2))
	names := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	seed := uint64(0)
	for round := range 25 {
		for range 1 + rng.IntN(3) {
			name := names[rng.IntN(len(names))]
			path := filepath.Join(f.dir, name+"-1-any.tpkg")
			switch op := rng.IntN(4); {
			case op <= 1: // add, or rewrite with other bytes
				seed++
				repotest.Make(t, f.dir, pkg(name, "1", 500+rng.IntN(3000), seed))
			case op == 2:
				os.Remove(path)
			default: // broken: rejected
				if err := os.WriteFile(path, []byte(fmt.Sprintf("not a package %d", round)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		g, st := f.scan(t)
		full, _, err := NewScanner(f.cat, f.scanner.opts).Scan(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if full.Number != g.Number {
			t.Fatalf("round %d: a full read made generation %d, the rescan %d (%+v)", round, full.Number, g.Number, st)
		}
		if !reflect.DeepEqual(g.Packages, full.Packages) || !reflect.DeepEqual(g.Rejected, full.Rejected) {
			t.Fatalf("round %d: the rescan's generation differs from the catalog's:\n%v\n%v", round, files(g), files(full))
		}
		if a, b := jsonOf(t, g), jsonOf(t, full); a != b {
			t.Fatalf("round %d: index.json differs:\n%s\n%s", round, a, b)
		}
	}
}

func files(g *generation.Generation) []string {
	var out []string
	for _, p := range g.Packages {
		out = append(out, p.File+" "+p.SHA256[:8])
	}
	for _, r := range g.Rejected {
		out = append(out, r.File+" rejected")
	}
	return out
}

func jsonOf(t *testing.T, g *generation.Generation) string {
	t.Helper()
	b, err := g.IndexJSON.Get()
	if err != nil {
		t.Fatal(err)
	}
	return string(blobBytes(t, b))
}
