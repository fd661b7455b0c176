package swarm

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/anacrolix/torrent/metainfo"
)

// Whole files are remembered across a reopen; pieces of a download in
// progress are not (anacrolix checks them again); a bad piece or forget
// makes a file unknown again.
func TestPieceCompletion(t *testing.T) {
	dir := t.TempDir()
	a, b := metainfo.Hash{1}, metainfo.Hash{2}
	pc, err := openPieceCompletion(dir)
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(pc.Set(metainfo.PieceKey{InfoHash: a, Index: 0}, true))
	must(pc.Set(metainfo.PieceKey{InfoHash: b, Index: 3}, true))
	must(pc.markWhole(a))
	if c, _ := pc.Get(metainfo.PieceKey{InfoHash: a, Index: 7}); !c.Ok || !c.Complete {
		t.Errorf("a piece of a whole file: %+v", c)
	}
	if c, _ := pc.Get(metainfo.PieceKey{InfoHash: b, Index: 3}); !c.Ok || !c.Complete {
		t.Errorf("a piece set complete: %+v", c)
	}
	if c, _ := pc.Get(metainfo.PieceKey{InfoHash: b, Index: 4}); c.Ok {
		t.Errorf("a piece never set: %+v", c)
	}
	must(pc.Close())

	pc, err = openPieceCompletion(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if c, _ := pc.Get(metainfo.PieceKey{InfoHash: a, Index: 0}); !c.Ok || !c.Complete {
		t.Errorf("whole file after reopen: %+v", c)
	}
	if c, _ := pc.Get(metainfo.PieceKey{InfoHash: b, Index: 3}); c.Ok {
		t.Errorf("a download's piece survived the reopen: %+v", c)
	}
	must(pc.Set(metainfo.PieceKey{InfoHash: a, Index: 2}, false))
	if c, _ := pc.Get(metainfo.PieceKey{InfoHash: a, Index: 0}); c.Ok {
		t.Errorf("a file with a bad piece is still whole: %+v", c)
	}
	must(pc.markWhole(b))
	must(pc.forget(b))
	must(pc.Close())
	pc, err = openPieceCompletion(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(pc.whole) != 0 {
		t.Errorf("whole after a bad piece and forget: %v", pc.whole)
	}
	pc.Close()
}

// An unreadable record is replaced: it only saves checking files again.
func TestPieceCompletionReplacesGarbage(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "complete.db"), bytes.Repeat([]byte("not bbolt "), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	pc, err := openPieceCompletion(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if len(pc.whole) != 0 {
		t.Fatalf("whole from garbage: %v", pc.whole)
	}
	if err := pc.markWhole(metainfo.Hash{3}); err != nil {
		t.Fatal(err)
	}
}
