package mirror

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anacrolix/torrent/metainfo"

	"tpm/index"
	"tpm/index/indextest"
	"tpm/repo/repotest"
	"tpm/swarm"
)

// copier stands in for the swarm: it copies files from the repository's
// folder, or fails.
type copier struct {
	from, to string
	fail     error
	removed  []string
}

func (c *copier) Download(ctx context.Context, s swarm.Spec, _ func(swarm.Progress)) (string, error) {
	if c.fail != nil {
		return "", c.fail
	}
	b, err := os.ReadFile(filepath.Join(c.from, s.File))
	if err != nil {
		return "", err
	}
	return filepath.Join(c.to, s.File), os.WriteFile(filepath.Join(c.to, s.File), b, 0o644)
}

func (c *copier) Remove(s swarm.Spec) error {
	c.removed = append(c.removed, s.File)
	return os.Remove(filepath.Join(c.to, s.File))
}

// A copy publishes the origin's index and signature byte for byte, every
// package whatever its architecture, the same infohashes, its own web seed
// first, and the trackers the signed index names.
func TestCopyIsTheOriginsIndex(t *testing.T) {
	r := indextest.New(t, repotest.Package{Name: "a", Version: "1", PayloadBytes: 3000, Seed: 1},
		repotest.Package{Name: "b", Version: "1", Arch: "riscv64", PayloadBytes: 2000, Seed: 2})
	c, err := Open(r.StateDir, r.Public)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Entries) != 2 {
		t.Fatalf("%d entries, want both architectures", len(c.Entries))
	}
	up := []string{"http://origin.example:8080/"}
	specs := c.Specs(up)
	if specs[0].Trackers[0] != "http://127.0.0.1:1/announce" || specs[0].WebSeeds[0] != "http://origin.example:8080/packages/" {
		t.Fatalf("spec: %+v", specs[0])
	}
	dir := t.TempDir()
	cp := &copier{from: r.Dir, to: dir}
	if err := Fetch(context.Background(), cp, specs, 2); err != nil {
		t.Fatal(err)
	}
	g, err := c.Generation(dir, "http://mirror.example", up)
	if err != nil {
		t.Fatal(err)
	}
	o := r.Generation
	gi, _ := g.Index.Bytes()
	oi, _ := o.Index.Bytes()
	if !bytes.Equal(gi, oi) || !bytes.Equal(g.IndexSig, o.IndexSig) || g.IndexETag != o.IndexETag || g.Number != o.Number {
		t.Fatal("the mirror's index is not the origin's byte for byte")
	}
	for i, p := range g.Packages {
		if p.InfoHash != o.Packages[i].InfoHash {
			t.Errorf("%s: infohash differs", p.File)
		}
		fi, _ := os.Stat(filepath.Join(dir, p.File))
		if p.MTimeNS != fi.ModTime().UnixNano() {
			t.Errorf("%s: the stat is not the mirror's file's", p.File)
		}
		tor, err := swarm.MetaInfoFile(p.InfoBytes, g.Trackers, g.WebSeeds)
		if err != nil {
			t.Fatal(err)
		}
		mi, err := metainfo.Load(bytes.NewReader(tor))
		if err != nil {
			t.Fatal(err)
		}
		if len(mi.UrlList) != 2 || mi.UrlList[0] != "http://mirror.example/packages/" || mi.UrlList[1] != "http://origin.example:8080/packages/" {
			t.Errorf("%s: url-list %q", p.File, mi.UrlList)
		}
	}

	// Pruning keeps what is listed.
	keep := map[string]bool{specs[0].File: true}
	if err := Prune(cp, specs, keep); err != nil || len(cp.removed) != 1 || cp.removed[0] != specs[1].File {
		t.Fatalf("prune: %v, removed %v", err, cp.removed)
	}
}

// The kept index is checked again before the mirror publishes it, and a
// failed download stops the copy.
func TestCopyRefusesWhatDoesNotVerify(t *testing.T) {
	r := indextest.New(t, repotest.Package{Name: "a", Version: "1", PayloadBytes: 3000, Seed: 1})
	c, err := Open(r.StateDir, r.Public)
	if err != nil {
		t.Fatal(err)
	}
	bad := errors.New("no source")
	if err := Fetch(context.Background(), &copier{fail: bad}, c.Specs(nil), 4); !errors.Is(err, bad) {
		t.Fatalf("failed download: %v", err)
	}
	if _, err := c.Generation(t.TempDir(), "http://m", nil); err == nil {
		t.Fatal("a generation without its files")
	}
	path := filepath.Join(r.StateDir, index.IndexFile)
	b, _ := os.ReadFile(path)
	b[len(b)/2] ^= 0xff
	os.WriteFile(path, b, 0o644)
	if _, err := Open(r.StateDir, r.Public); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("tampered kept index: %v", err)
	}
}
