package swarm

import (
	"bytes"
	"context"
	"errors"
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
	must(pc.markWhole(a, ""))
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
	must(pc.markWhole(b, ""))
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
	if err := pc.markWhole(metainfo.Hash{3}, ""); err != nil {
		t.Fatal(err)
	}
}

// A chunk that arrives after its torrent was dropped (a web seed's answer
// still being read) must not make the deleted file again: once the
// storage is closed, writes are refused and dropped says so.
func TestNoWriteAfterTheStorageCloses(t *testing.T) {
	dir := t.TempDir()
	pc, err := openPieceCompletion(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st := newFileStore(dir, pc, true)
	defer st.Close()
	info := &metainfo.Info{Name: "f.tpkg", Length: 32 << 10, PieceLength: 16 << 10, Pieces: make([]byte, 40)}
	ih := metainfo.Hash{9}
	tor, err := st.OpenTorrent(context.Background(), info, ih)
	if err != nil {
		t.Fatal(err)
	}
	piece := tor.Piece(info.Piece(0))
	if _, err := piece.WriteAt([]byte("early"), 0); err != nil {
		t.Fatal(err)
	}
	select {
	case <-st.dropped(ih):
		t.Fatal("dropped before the storage closed")
	default:
	}
	if err := tor.Close(); err != nil {
		t.Fatal(err)
	}
	<-st.dropped(ih)
	if err := os.Remove(filepath.Join(dir, "f.tpkg")); err != nil {
		t.Fatal(err)
	}
	if _, err := piece.WriteAt([]byte("late"), 5); !errors.Is(err, errStorageClosed) {
		t.Fatalf("write after close: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "f.tpkg")); !os.IsNotExist(err) {
		t.Fatalf("the file came back: %v", err)
	}
}
