package swarm

import (
	"bytes"
	"context"
	"crypto/sha1"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/storage"
)

func newTestStore(t *testing.T, dir string, writable bool) *fileStore {
	t.Helper()
	pc, err := openPieceCompletion(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st := newFileStore(dir, pc, writable)
	t.Cleanup(func() { st.Close() })
	return st
}

func testInfo(name string, length, pieceLength int64) *metainfo.Info {
	n := (length + pieceLength - 1) / pieceLength
	return &metainfo.Info{Name: name, Length: length, PieceLength: pieceLength, Pieces: make([]byte, 20*n)}
}

// openFilesIn counts the process's descriptors open on files in dir.
func openFilesIn(t *testing.T, dir string) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	n := 0
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(target, dir+"/") {
			n++
		}
	}
	return n
}

// What a host writes reads back, across pieces and past evictions: the
// store keeps at most max files open, and a torrent whose file was closed
// opens it again.
func TestFileStoreReadsBackPastEvictions(t *testing.T) {
	dir := t.TempDir()
	st := newTestStore(t, dir, true)
	st.files.max = 2
	const n, length, pieceLength = 5, 40 << 10, 16 << 10
	var tors []storage.TorrentImpl
	var infos []*metainfo.Info
	for i := range n {
		info := testInfo(fmt.Sprintf("p%d.tpkg", i), length, pieceLength)
		tor, err := st.OpenTorrent(context.Background(), info, metainfo.Hash{byte(i + 1)})
		if err != nil {
			t.Fatal(err)
		}
		tors, infos = append(tors, tor), append(infos, info)
	}
	data := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i)}, length) }
	for i, tor := range tors {
		for p := range infos[i].NumPieces() {
			mp := infos[i].Piece(p)
			if _, err := tor.Piece(mp).WriteAt(data(i)[mp.Offset():mp.Offset()+mp.Length()], 0); err != nil {
				t.Fatal(err)
			}
		}
		if open := openFilesIn(t, dir); open > st.files.max {
			t.Fatalf("%d files open after writing %d torrents, want at most %d", open, i+1, st.files.max)
		}
	}
	for i, tor := range tors {
		mp := infos[i].Piece(2) // the short last piece
		got := make([]byte, mp.Length())
		if n, err := tor.Piece(mp).ReadAt(got, 0); n != len(got) || err != nil {
			t.Fatalf("torrent %d: read %d of %d: %v", i, n, len(got), err)
		}
		if !bytes.Equal(got, data(i)[mp.Offset():]) {
			t.Fatalf("torrent %d read back other bytes", i)
		}
		// Past the piece's end is the end.
		if n, err := tor.Piece(mp).ReadAt(make([]byte, 10), mp.Length()-4); n != 4 || err == nil {
			t.Fatalf("read across a piece's end: %d, %v", n, err)
		}
	}
	for _, tor := range tors {
		tor.Close()
	}
	if open := openFilesIn(t, dir); open != 0 {
		t.Fatalf("%d files still open after every torrent closed", open)
	}
}

// A piece is hashed from what the file holds; a file cut short hashes
// short, which fails the check, and is no error.
func TestFileStoreHashesWhatTheFileHolds(t *testing.T) {
	dir := t.TempDir()
	st := newTestStore(t, dir, true)
	content := bytes.Repeat([]byte("0123456789abcdef"), 3<<10) // 48 KiB
	if err := os.WriteFile(filepath.Join(dir, "f.tpkg"), content[:40<<10], 0o644); err != nil {
		t.Fatal(err)
	}
	info := testInfo("f.tpkg", int64(len(content)), 32<<10)
	tor, err := st.OpenTorrent(context.Background(), info, metainfo.Hash{1})
	if err != nil {
		t.Fatal(err)
	}
	defer tor.Close()
	for p, want := range [][]byte{content[:32<<10], content[32<<10 : 40<<10]} {
		h := sha1.New()
		n, err := storage.Piece{PieceImpl: tor.Piece(info.Piece(p))}.WriteTo(h)
		if err != nil || n != int64(len(want)) {
			t.Fatalf("piece %d: hashed %d bytes, want %d: %v", p, n, len(want), err)
		}
		if !bytes.Equal(h.Sum(nil), sum1(want)) {
			t.Fatalf("piece %d hashed other bytes", p)
		}
	}
	// No file yet: nothing to hash, and no file made.
	missing := testInfo("missing.tpkg", 16<<10, 16<<10)
	tor2, err := st.OpenTorrent(context.Background(), missing, metainfo.Hash{2})
	if err != nil {
		t.Fatal(err)
	}
	defer tor2.Close()
	if n, err := (storage.Piece{PieceImpl: tor2.Piece(missing.Piece(0))}).WriteTo(sha1.New()); n != 0 || err != nil {
		t.Fatalf("hashing a missing file: %d, %v", n, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "missing.tpkg")); !os.IsNotExist(err) {
		t.Fatalf("reading made the file: %v", err)
	}
}

func sum1(b []byte) []byte { s := sha1.Sum(b); return s[:] }

// The repository's seeder never writes: not a byte a peer sends reaches
// the package directory.
func TestSeederStoreNeverWrites(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.tpkg")
	if err := os.WriteFile(path, []byte("package bytes..."), 0o644); err != nil {
		t.Fatal(err)
	}
	st := newTestStore(t, dir, false)
	info := testInfo("f.tpkg", 16, 16)
	tor, err := st.OpenTorrent(context.Background(), info, metainfo.Hash{1})
	if err != nil {
		t.Fatal(err)
	}
	defer tor.Close()
	if _, err := tor.Piece(info.Piece(0)).WriteAt([]byte("evil"), 0); err == nil {
		t.Fatal("the seeder's store took a write")
	}
	if b, _ := os.ReadFile(path); string(b) != "package bytes..." {
		t.Fatalf("the package changed: %q", b)
	}
}

// A torrent of several files, or whose name leaves the directory, is
// refused: a package torrent is one file in the store's directory.
func TestFileStoreRefusesOtherTorrents(t *testing.T) {
	dir := t.TempDir()
	st := newTestStore(t, dir, true)
	for _, info := range []*metainfo.Info{
		{Name: "../escape.tpkg", Length: 16, PieceLength: 16, Pieces: make([]byte, 20)},
		{Name: "sub/dir.tpkg", Length: 16, PieceLength: 16, Pieces: make([]byte, 20)},
		{Name: "..", Length: 16, PieceLength: 16, Pieces: make([]byte, 20)},
		{Name: ".", Length: 16, PieceLength: 16, Pieces: make([]byte, 20)},
		{Name: "", Length: 16, PieceLength: 16, Pieces: make([]byte, 20)},
		{Name: "multi", PieceLength: 16, Pieces: make([]byte, 20), Files: []metainfo.FileInfo{{Length: 8, Path: []string{"a"}}, {Length: 8, Path: []string{"b"}}}},
	} {
		if _, err := st.OpenTorrent(context.Background(), info, metainfo.Hash{1}); err == nil {
			t.Errorf("opened a torrent named %q with %d files", info.Name, len(info.Files))
		}
	}
}

// A file recorded whole that changed behind the store's back (cut short,
// or rewritten at the same size while its torrent was dormant) is checked
// again, not served as complete; so is one recorded without its size and
// time.
func TestFileStoreChecksAWholeFileThatChanged(t *testing.T) {
	dir := t.TempDir()
	st := newTestStore(t, dir, true)
	path := filepath.Join(dir, "f.tpkg")
	if err := os.WriteFile(path, make([]byte, 32<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	ih := metainfo.Hash{1}
	info := testInfo("f.tpkg", 32<<10, 16<<10)
	completion := func() storage.Completion {
		tor, err := st.OpenTorrent(context.Background(), info, ih)
		if err != nil {
			t.Fatal(err)
		}
		defer tor.Close()
		return tor.Piece(info.Piece(1)).Completion()
	}
	markWhole := func(at string) {
		t.Helper()
		if err := st.pc.markWhole(ih, at); err != nil {
			t.Fatal(err)
		}
	}
	markWhole("")
	if c := completion(); c.Ok {
		t.Fatalf("a whole file recorded without its size and time is still known: %+v", c)
	}
	markWhole(path)
	if c := completion(); !c.Ok || !c.Complete {
		t.Fatalf("a whole file unchanged: %+v", c)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(path, old, old); err != nil { // same size, other bytes
		t.Fatal(err)
	}
	if c := completion(); c.Ok {
		t.Fatalf("a whole file rewritten at the same size is still known: %+v", c)
	}
	markWhole(path)
	if err := os.Truncate(path, 20<<10); err != nil {
		t.Fatal(err)
	}
	if c := completion(); c.Ok {
		t.Fatalf("a whole file cut short is still known: %+v", c)
	}
}
