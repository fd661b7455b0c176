package repo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"tpm/generation"
	"tpm/repo/repotest"
)

// TestRescanMatchesAFullRead: a rescan makes its generation from the last
// one and the changes; after every round of random adds, rewrites,
// removals and broken files it must equal the generation a new scanner
// reads whole from the same catalog, index.json included. What it says it
// changed of the generation before must be exactly that.
func TestRescanMatchesAFullRead(t *testing.T) {
	f := newFixture(t, CheckFull)
	rng := rand.New(rand.NewPCG(1, 2))
	names := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	seed := uint64(0)
	var prev *generation.Generation
	for round := range 25 {
		for range 1 + rng.IntN(3) {
			name := names[rng.IntN(len(names))]
			path := filepath.Join(f.dir, name+"-1-any.tpkg")
			switch op := rng.IntN(5); {
			case op <= 1: // add, or rewrite with other bytes
				seed++
				repotest.Make(t, f.dir, pkg(name, "1", 500+rng.IntN(3000), seed))
			case op == 2:
				os.Remove(path)
			case op == 3: // touched: read again, its torrent the same
				later := time.Unix(int64(1_000_000+round), 0)
				os.Chtimes(path, later, later)
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
		if prev != nil && g.Number != prev.Number {
			checkChanges(t, round, prev, g)
		}
		prev = g
	}
}

// checkChanges holds g.Changes to what g changed of prev: every torrent
// new or whose file was hashed again added, every one gone removed, and
// nothing else.
func checkChanges(t *testing.T, round int, prev, g *generation.Generation) {
	t.Helper()
	c := g.Changes
	if c == nil || c.From != prev.Number {
		t.Fatalf("round %d: generation %d says it changes %+v, not generation %d", round, g.Number, c, prev.Number)
	}
	added, removed := map[[20]byte]bool{}, map[[20]byte]bool{}
	for _, ih := range c.Added {
		added[ih] = true
	}
	for _, ih := range c.Removed {
		removed[ih] = true
	}
	for _, p := range g.Packages {
		old := prev.ByInfoHash(p.InfoHash)
		changed := old == nil || old.MTimeNS != p.MTimeNS || old.CTimeNS != p.CTimeNS || old.Inode != p.Inode
		if changed != added[p.InfoHash] || removed[p.InfoHash] {
			t.Fatalf("round %d: %s (new or hashed again: %v) is added: %v, removed: %v", round, p.File, changed, added[p.InfoHash], removed[p.InfoHash])
		}
		delete(added, p.InfoHash)
	}
	if len(added) > 0 {
		t.Fatalf("round %d: %d added that generation %d does not publish", round, len(added), g.Number)
	}
	for _, p := range prev.Packages {
		if gone := g.ByInfoHash(p.InfoHash) == nil; gone != removed[p.InfoHash] {
			t.Fatalf("round %d: %s gone: %v, removed: %v", round, p.File, gone, removed[p.InfoHash])
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

// An index's ETag is the sha256 of its signature, or of the index itself
// when nothing signs it: two indexes never share one.
func TestIndexETag(t *testing.T) {
	signed := indexETag(Parts{IndexSum: [32]byte{1}, IndexSig: []byte("sig one")})
	other := indexETag(Parts{IndexSum: [32]byte{1}, IndexSig: []byte("sig two")})
	unsigned := indexETag(Parts{IndexSum: [32]byte{1}})
	if signed == other || signed == unsigned || unsigned != `"01`+strings.Repeat("00", 31)+`"` {
		t.Fatalf("ETags %s, %s, %s", signed, other, unsigned)
	}
}
