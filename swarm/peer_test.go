package swarm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"
	pp "github.com/anacrolix/torrent/peer_protocol"
)

func newTestPeer(t *testing.T) *Peer {
	t.Helper()
	c, err := NewPeer(PeerConfig{CacheDir: t.TempDir(), StateDir: t.TempDir(), ListenAddr: "127.0.0.1:0", StallTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// webSeed serves dir under /packages/, flipping bytes when corrupt is set.
func webSeed(t *testing.T, dir string, corrupt bool) string {
	t.Helper()
	fs := http.StripPrefix("/packages/", http.FileServer(http.Dir(dir)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !corrupt {
			fs.ServeHTTP(w, r)
			return
		}
		b, err := os.ReadFile(filepath.Join(dir, strings.TrimPrefix(r.URL.Path, "/packages/")))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		for i := 0; i < len(b); i += 101 {
			b[i] ^= 0xa5
		}
		http.ServeContent(w, r, "", time.Time{}, strings.NewReader(string(b)))
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/packages/"
}

func specOf(tor *Torrent, seed string) Spec {
	return Spec{File: tor.Name, InfoHash: tor.InfoHash, InfoBytes: tor.InfoBytes, SHA256: tor.SHA256Hex(), Size: tor.Size, WebSeeds: []string{seed}}
}

func TestDownloadFromWebSeed(t *testing.T) {
	src := t.TempDir()
	tor := writePackage(t, src, "a-1-any.tpkg", randomBytes(300<<10, 3))
	c := newTestPeer(t)
	var last Progress
	path, err := c.Download(context.Background(), specOf(tor, webSeed(t, src, false)), func(p Progress) { last = p })
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(c.cfg.CacheDir, tor.Name) || last.Bytes != tor.Size || last.Total != tor.Size {
		t.Fatalf("path %s, last progress %+v", path, last)
	}
	if st := c.Stats(); st.Torrents != 1 || st.Complete != 1 {
		t.Fatalf("stats after download: %+v", st)
	}
	if got, _ := c.completion.Get(metainfo.PieceKey{InfoHash: tor.InfoHash}); !got.Complete {
		t.Fatal("the verified file is not recorded whole")
	}
	// Removing drops the torrent and the file.
	if err := c.Remove(specOf(tor, "")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) || c.Stats().Torrents != 0 {
		t.Fatalf("after Remove: %v %+v", err, c.Stats())
	}
	if got, _ := c.completion.Get(metainfo.PieceKey{InfoHash: tor.InfoHash}); got.Ok {
		t.Fatal("a removed file is still recorded")
	}
}

func TestDownloadRefusesCorruptWebSeed(t *testing.T) {
	src := t.TempDir()
	tor := writePackage(t, src, "b-1-any.tpkg", randomBytes(100<<10, 4))
	c := newTestPeer(t)
	_, err := c.Download(context.Background(), specOf(tor, webSeed(t, src, true)), func(Progress) {})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt web seed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(c.cfg.CacheDir, tor.Name)); !os.IsNotExist(err) {
		t.Fatalf("corrupt file kept: %v", err)
	}
}

func TestDownloadCancelled(t *testing.T) {
	src := t.TempDir()
	tor := writePackage(t, src, "c-1-any.tpkg", randomBytes(100<<10, 5))
	c := newTestPeer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := c.Download(ctx, specOf(tor, "http://127.0.0.1:1/packages/"), func(Progress) {})
		done <- err
	}()
	// A download whose context ended returns; the bound only catches a hang.
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("cancelled download: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the download did not return a minute after its context ended")
	}
}

// A download cut short leaves a file shorter than its torrent; adding it
// again checks the half that is there, under anacrolix's default mmap file
// IO (this test process's), which panics reading past a file's end.
func TestShortCacheFileIsChecked(t *testing.T) {
	src := t.TempDir()
	data := randomBytes(200<<10, 8)
	tor := writePackage(t, src, "s-1-any.tpkg", data)
	c := newTestPeer(t)
	if err := os.WriteFile(c.Path(tor.Name), data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	tr, err := c.addForDownload(specOf(tor, ""))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	last := tr.NumPieces() - 1
	for {
		first, end := tr.PieceState(0), tr.PieceState(last)
		if first.Complete && end.Ok && !end.Checking {
			if end.Complete {
				t.Fatalf("the last piece, beyond the file's end, passed its check")
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the pieces of the short file were not checked: first %+v, last %+v", first, end)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if fi, err := os.Stat(c.Path(tor.Name)); err != nil || fi.Size() != tor.Size {
		t.Fatalf("the short file: %v, %v (want %d bytes)", fi, err, tor.Size)
	}
}

// Something other than a file at a cache path (a FIFO that nobody reads)
// is refused with the file's name, and adding does not wait on it.
func TestAddRefusesAFIFOInTheCache(t *testing.T) {
	src := t.TempDir()
	tor := writePackage(t, src, "p-1-any.tpkg", randomBytes(20<<10, 9))
	c := newTestPeer(t)
	if err := syscall.Mkfifo(c.Path(tor.Name), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.addForDownload(specOf(tor, "")); err == nil || !strings.Contains(err.Error(), tor.Name) {
		t.Fatalf("adding over a FIFO: %v", err)
	}
	// With a reader, the FIFO opens for writing; it is refused all the same.
	r, err := os.OpenFile(c.Path(tor.Name), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := c.addForDownload(specOf(tor, "")); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("adding over a FIFO someone reads: %v", err)
	}
}

func TestAddRefusesMismatchedTorrent(t *testing.T) {
	src := t.TempDir()
	tor := writePackage(t, src, "d-1-any.tpkg", randomBytes(10<<10, 6))
	c := newTestPeer(t)
	s := specOf(tor, "")
	s.File = "other.tpkg"
	if err := c.Seed(s); err == nil {
		t.Fatal("a torrent naming another file was accepted")
	}
	s = specOf(tor, "")
	s.InfoHash[0] ^= 1
	if err := c.Seed(s); err == nil {
		t.Fatal("info bytes that do not match the infohash were accepted")
	}
}

// tracker answers every announce with the given peers, counted as seeds.
func fakeTracker(t *testing.T, seeds ...int) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var peers []byte
		for _, port := range seeds {
			peers = append(peers, 127, 0, 0, 1, byte(port>>8), byte(port))
		}
		fmt.Fprintf(w, "d8:completei%de10:incompletei1e8:intervali600e5:peers%d:%se", len(seeds), len(peers), peers)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/announce"
}

// countingWebSeed is webSeed that counts the requests it gets.
func countingWebSeed(t *testing.T, dir string) (string, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	fs := http.StripPrefix("/packages/", http.FileServer(http.Dir(dir)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		fs.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/packages/", &n
}

func webSeedsOf(t *testing.T, c *Peer, tor *Torrent) int {
	t.Helper()
	tt, ok := c.client.Torrent(tor.InfoHash)
	if !ok {
		t.Fatalf("%s is not in the client", tor.Name)
	}
	return len(tt.WebseedPeerConns())
}

// With a seed in the swarm the web seed stays out: the repository's HTTP
// uplink is not spent on what the peers bring.
func TestWebSeedStaysOutWhileThePeersDeliver(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	src := t.TempDir()
	tor := writePackage(t, src, "e-1-any.tpkg", randomBytes(2<<20, 7))
	s := newTestSeeder(t, src)
	if _, err := s.Sync(ctx, []Item{{InfoHash: tor.InfoHash, InfoBytes: tor.InfoBytes}}); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitComplete(ctx, tor.InfoHash); err != nil {
		t.Fatal(err)
	}
	seed, requests := countingWebSeed(t, src)
	spec := specOf(tor, seed)
	spec.Trackers = []string{fakeTracker(t, s.Port())}
	// Only the tracker's answer may bring the web seed in here: a stall
	// long past the test's own limit keeps a slow machine from doing it.
	c, err := NewPeer(PeerConfig{CacheDir: t.TempDir(), StateDir: t.TempDir(), ListenAddr: "127.0.0.1:0", StallTimeout: 30 * time.Second, WebSeedStall: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Download(ctx, spec, func(Progress) {}); err != nil {
		t.Fatal(err)
	}
	if n, ws := requests.Load(), webSeedsOf(t, c, tor); n != 0 || ws != 0 {
		t.Fatalf("the web seed joined (%d requests, %d web seeds) while a seed served the swarm", n, ws)
	}
	if s.Uploaded() < tor.Size {
		t.Fatalf("the seed uploaded %d of %d bytes", s.Uploaded(), tor.Size)
	}
}

// A seed the tracker names but nobody reaches: the web seed joins once the
// peers have brought nothing for QuietPeers and WebSeedStall, and the
// download completes.
func TestWebSeedJoinsWhenThePeersBringNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	src := t.TempDir()
	tor := writePackage(t, src, "f-1-any.tpkg", randomBytes(200<<10, 8))
	seed, requests := countingWebSeed(t, src)
	spec := specOf(tor, seed)
	spec.Trackers = []string{fakeTracker(t, 1)} // port 1: nothing listens there
	c, err := NewPeer(PeerConfig{CacheDir: t.TempDir(), StateDir: t.TempDir(), ListenAddr: "127.0.0.1:0", StallTimeout: 30 * time.Second, QuietPeers: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Download(ctx, spec, func(Progress) {}); err != nil {
		t.Fatal(err)
	}
	if n, ws := requests.Load(), webSeedsOf(t, c, tor); n == 0 || ws != 1 {
		t.Fatalf("the web seed got %d requests, %d web seeds", n, ws)
	}
}

// The repository's seeder names itself in the extended handshake, and a
// client keeps a short queue of requests there, shorter the more hosts
// download the torrent; other peers keep the queue they ask for.
func TestRepositoryQueue(t *testing.T) {
	c := newTestPeer(t)
	for _, tc := range []struct {
		name       string
		reqq, want int
	}{
		{RepositoryClientName, 1024, repositoryQueue},
		{RepositoryClientName + " 1.0", 0, repositoryQueue},
		{RepositoryClientName, 10, 10},
		{"Transmission 3.00", 1024, 1024},
	} {
		m := pp.ExtendedHandshakeMessage{V: tc.name, Reqq: tc.reqq}
		c.limitRepositoryQueue(nil, &m)
		if m.Reqq != tc.want {
			t.Errorf("%q asking for %d: reqq %d, want %d", tc.name, tc.reqq, m.Reqq, tc.want)
		}
	}
	for downloaders, want := range map[int]int{0: 64, 1: 64, 2: 16, 4: 4, 16: minRepositoryQueue} {
		if got := repositoryReqq(downloaders); got != want {
			t.Errorf("repositoryReqq(%d) = %d, want %d", downloaders, got, want)
		}
	}
}

// silentPeer accepts BitTorrent connections for one torrent, says it has
// every piece and unchokes, then never sends a byte of data. closed is
// closed once a connection to it was closed by the other side.
func silentPeer(t *testing.T, tor *Torrent) (port int, closed <-chan struct{}) {
	t.Helper()
	var info metainfo.Info
	if err := unmarshalInfo(tor.InfoBytes, &info); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	done := make(chan struct{})
	var once sync.Once
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				hs := make([]byte, 68)
				if _, err := io.ReadFull(conn, hs); err != nil {
					return
				}
				reply := append([]byte{19}, "BitTorrent protocol"...)
				reply = append(reply, make([]byte, 8)...)
				reply = append(reply, tor.InfoHash[:]...)
				reply = append(reply, []byte("-XX0000-silentpeer00")...)
				have := make([]bool, info.NumPieces())
				for i := range have {
					have[i] = true
				}
				reply = append(reply, pp.Message{Type: pp.Bitfield, Bitfield: have}.MustMarshalBinary()...)
				reply = append(reply, pp.Message{Type: pp.Unchoke}.MustMarshalBinary()...)
				if _, err := conn.Write(reply); err != nil {
					return
				}
				io.Copy(io.Discard, conn) // requests, never answered
				once.Do(func() { close(done) })
			}()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port, done
}

// A peer whose connection stays up and brings nothing is closed after
// QuietPeers and the trackers asked again: here they name a real seed only
// once that happened, so the download completes only if it does.
func TestQuietPeerIsReplaced(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	src := t.TempDir()
	tor := writePackage(t, src, "q-1-any.tpkg", randomBytes(100<<10, 9))
	s := newTestSeeder(t, src)
	if _, err := s.Sync(ctx, []Item{{InfoHash: tor.InfoHash, InfoBytes: tor.InfoBytes}}); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitComplete(ctx, tor.InfoHash); err != nil {
		t.Fatal(err)
	}
	silent, closed := silentPeer(t, tor)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		port := silent
		select {
		case <-closed:
			port = s.Port()
		default:
		}
		fmt.Fprintf(w, "d8:completei1e10:incompletei1e8:intervali600e5:peers6:%se", []byte{127, 0, 0, 1, byte(port >> 8), byte(port)})
	}))
	t.Cleanup(srv.Close)
	c, err := NewPeer(PeerConfig{CacheDir: t.TempDir(), StateDir: t.TempDir(), ListenAddr: "127.0.0.1:0",
		NoWebSeeds: true, StallTimeout: 45 * time.Second, QuietPeers: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	spec := specOf(tor, "")
	spec.WebSeeds, spec.Trackers = nil, []string{srv.URL + "/announce"}
	if _, err := c.Download(ctx, spec, func(Progress) {}); err != nil {
		t.Fatalf("download with a quiet peer: %v", err)
	}
}
