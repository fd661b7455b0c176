package swarm

import (
	"bytes"
	"crypto/sha256"
	"math/bits"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
)

func TestPieceLength(t *testing.T) {
	for _, tc := range []struct {
		size, want int64
	}{
		{0, 16 << 10},
		{1, 16 << 10},
		{16 << 20, 16 << 10},      // 1024 pieces of 16 KiB
		{16<<20 + 1, 32 << 10},    // one more byte: 1025 pieces, so double
		{1 << 30, 1 << 20},        // 1 GiB: 1024 pieces of 1 MiB
		{1 << 40, MaxPieceLength}, // capped
		{200 << 10, MinPieceLength} /* a typical small package */} {
		if got := PieceLength(tc.size); got != tc.want {
			t.Errorf("PieceLength(%d) = %d, want %d", tc.size, got, tc.want)
		}
	}
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// hashInChunks feeds data to a Hasher in writes of the given size, so that
// both the sequential and the parallel paths and every piece boundary case
// are exercised.
func hashInChunks(t *testing.T, data []byte, chunk int, name string) *Torrent {
	t.Helper()
	h := NewHasher(int64(len(data)))
	for p := data; len(p) > 0; {
		k := min(chunk, len(p))
		if _, err := h.Write(p[:k]); err != nil {
			t.Fatal(err)
		}
		p = p[k:]
	}
	tor, err := h.Torrent(name)
	if err != nil {
		t.Fatal(err)
	}
	return tor
}

// The infohash agrees with anacrolix's own builder given the same piece
// length, whatever the write sizes, and the SHA-256 is the file's.
func TestHasherMatchesAnacrolix(t *testing.T) {
	dir := t.TempDir()
	for i, size := range []int{1, 16 << 10, 16<<10 + 1, 300 << 10, 3<<20 + 7} {
		data := randomBytes(size, uint64(i))
		name := "p" + strconv.Itoa(i) + "-1-any.tpkg"
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		info := metainfo.Info{PieceLength: PieceLength(int64(size))}
		if err := info.BuildFromFilePath(path); err != nil {
			t.Fatal(err)
		}
		want := metainfo.HashBytes(mustBencode(t, info))
		for _, chunk := range []int{1000, 16 << 10, 100 << 10, 1 << 20} {
			got := hashInChunks(t, data, chunk, name)
			if got.InfoHash != want {
				t.Errorf("size %d chunk %d: infohash %x, want %x", size, chunk, got.InfoHash, want)
			}
			if got.SHA256 != sha256.Sum256(data) {
				t.Errorf("size %d chunk %d: wrong sha256", size, chunk)
			}
			if got.Size != int64(size) || got.Name != name {
				t.Errorf("size %d: Torrent = %q %d", size, got.Name, got.Size)
			}
		}
	}
}

// mktorrent is what people use to make torrents; the same file and piece
// length must give the same infohash.
func TestHasherMatchesMktorrent(t *testing.T) {
	if _, err := exec.LookPath("mktorrent"); err != nil {
		t.Skip("mktorrent is not installed (apt-get install mktorrent); skipping the cross-check")
	}
	dir := t.TempDir()
	// mktorrent makes pieces of 32 KiB or more, so the file is large enough
	// for PieceLength to choose 32 KiB.
	data := randomBytes(16<<20+123, 42)
	name := "hello-1.0-1-x86_64.tpkg"
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.torrent")
	pl := PieceLength(int64(len(data)))
	cmd := exec.Command("mktorrent", "-l", strconv.Itoa(bits.TrailingZeros64(uint64(pl))),
		"-a", "http://127.0.0.1:1/announce", "-o", out, path)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mktorrent: %v\n%s", err, b)
	}
	mi, err := metainfo.LoadFromFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got := hashInChunks(t, data, 256<<10, name)
	if want := mi.HashInfoBytes(); got.InfoHash != want {
		t.Errorf("infohash %x, mktorrent says %x", got.InfoHash, want)
	}
}

func TestHasherSizeMismatch(t *testing.T) {
	h := NewHasher(10)
	if _, err := h.Write(make([]byte, 11)); err == nil {
		t.Error("writing past the size succeeded")
	}
	h = NewHasher(10)
	h.Write(make([]byte, 9))
	if _, err := h.Torrent("a.tpkg"); err == nil {
		t.Error("Torrent of a short file succeeded")
	}
	for _, name := range []string{"", ".", "..", "a/b", `a\b`} {
		h := NewHasher(0)
		if _, err := h.Torrent(name); err == nil {
			t.Errorf("Torrent(%q) succeeded", name)
		}
	}
}

func TestMetaInfoFile(t *testing.T) {
	tor := hashInChunks(t, randomBytes(50000, 1), 4096, "a-1-any.tpkg")
	trackers := []string{PublicTracker("http://repo.example:8080/"), "udp://tracker.example:6969/announce"}
	seeds := []string{PublicWebSeed("http://repo.example:8080/"), "http://mirror.example/packages/"}
	b, err := MetaInfoFile(tor.InfoBytes, trackers, seeds)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := MetaInfoFile(tor.InfoBytes, trackers, seeds)
	if !bytes.Equal(b, again) {
		t.Error("MetaInfoFile is not deterministic")
	}
	mi, err := metainfo.Load(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if mi.HashInfoBytes() != tor.InfoHash {
		t.Error("the .torrent's infohash differs from the Torrent's")
	}
	if mi.Announce != "http://repo.example:8080/announce" {
		t.Errorf("announce = %q", mi.Announce)
	}
	if len(mi.AnnounceList) != 2 || mi.AnnounceList[0][0] != trackers[0] || mi.AnnounceList[1][0] != trackers[1] {
		t.Errorf("announce-list = %q", mi.AnnounceList)
	}
	if len(mi.UrlList) != 2 || mi.UrlList[0] != "http://repo.example:8080/packages/" || mi.UrlList[1] != seeds[1] {
		t.Errorf("url-list = %q", mi.UrlList)
	}
	info, err := mi.UnmarshalInfo()
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "a-1-any.tpkg" || info.Length != 50000 || info.PieceLength != MinPieceLength || len(info.Pieces) != 4*20 {
		t.Errorf("info = %+v", info)
	}
}

func mustBencode(t *testing.T, info metainfo.Info) []byte {
	t.Helper()
	b, err := bencode.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// BenchmarkHasher is the hashing rate of one file: SHA-256 and piece SHA-1s
// from the same 256 KiB reads, as the scanner feeds them.
func BenchmarkHasher(b *testing.B) {
	data := randomBytes(64<<20, 5)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		h := NewHasher(int64(len(data)))
		for p := data; len(p) > 0; p = p[min(len(p), 256<<10):] {
			h.Write(p[:min(len(p), 256<<10)])
		}
		if _, err := h.Torrent("x.tpkg"); err != nil {
			b.Fatal(err)
		}
	}
}
