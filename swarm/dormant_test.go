package swarm

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"
)

// sleepAll puts every live torrent of the seeder to sleep, as idleness would.
func (s *Seeder) sleepAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ih := range s.held.liveHashes() {
		s.held.sleep(ih)
		s.sleepLocked(ih)
	}
}

// waitFor polls cond every 20 ms until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func itemOf(tor *Torrent) Item { return Item{InfoHash: tor.InfoHash, InfoBytes: tor.InfoBytes} }

// A synced repository holds its torrents dormant, with no goroutine for
// any of them; a peer's handshake wakes the one it names, which is served
// (to a plain anacrolix client, which tries an obfuscated handshake
// first); once idle it sleeps again, and its completion survives: woken
// again, it is complete at once, without its pieces checked again.
func TestSeederTorrentsSleepAndWake(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	data := randomBytes(100<<10, 3)
	tor := writePackage(t, dir, "a-1-any.tpkg", data)
	before := runtime.NumGoroutine()
	items := []Item{itemOf(tor)}
	for i := range 2000 { // torrents of files that are not there: dormant, they cost nothing
		h := NewHasher(4)
		h.Write([]byte(fmt.Sprintf("%04d", i)))
		other, _ := h.Torrent(fmt.Sprintf("o%d-1-any.tpkg", i))
		items = append(items, itemOf(other))
	}
	s, err := NewSeeder(SeederConfig{Dir: dir, StateDir: t.TempDir(), ListenAddr: "127.0.0.1:0", IdleAfter: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if st, err := s.Sync(ctx, items); err != nil || st.Added != len(items) {
		t.Fatalf("Sync = %+v, %v", st, err)
	}
	if live, extra := s.Live(), runtime.NumGoroutine()-before; live != 0 || extra > 40 {
		t.Fatalf("after syncing %d torrents: %d live, %d goroutines more than before", len(items), live, extra)
	}
	if got := leech(ctx, t, s, tor); !bytes.Equal(got, data) {
		t.Fatal("downloaded bytes differ from the package")
	}
	if s.Live() != 1 {
		t.Fatalf("%d live after serving one torrent", s.Live())
	}
	waitFor(t, 30*time.Second, "the served torrent going dormant once idle", func() bool { return s.Live() == 0 })
	if _, complete := s.Seeding(); complete != 1 {
		t.Fatalf("%d complete while dormant; want 1", complete)
	}
	// Complete as AddTorrent returns: from the record, since a check of
	// its pieces runs on anacrolix's goroutines, later.
	tt, ok := s.wakeForPeer(tor.InfoHash)
	if !ok || !tt.Complete().Bool() {
		t.Fatalf("woken again, the torrent is not complete at once (ok %v)", ok)
	}
}

// A file changed while its torrent was dormant (same size, other bytes)
// is checked before any of it is served: woken, the torrent is not
// complete, and its bad pieces are not offered.
func TestSeederChecksAFileChangedWhileDormant(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	tor := writePackage(t, dir, "a-1-any.tpkg", randomBytes(100<<10, 4))
	s := newTestSeeder(t, dir)
	if _, err := s.Sync(ctx, []Item{itemOf(tor)}); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitComplete(ctx, tor.InfoHash); err != nil {
		t.Fatal(err)
	}
	s.sleepAll()
	if err := os.WriteFile(filepath.Join(dir, tor.Name), randomBytes(100<<10, 5), 0o644); err != nil {
		t.Fatal(err)
	}
	tt, ok := s.wakeForPeer(tor.InfoHash)
	if !ok {
		t.Fatal("not woken")
	}
	waitFor(t, 30*time.Second, "the changed file's pieces checked", func() bool {
		for i := range tt.NumPieces() {
			if ps := tt.PieceState(i); !ps.Ok || ps.Checking {
				return false
			}
		}
		return true
	})
	if tt.Complete().Bool() || tt.BytesCompleted() != 0 {
		t.Fatalf("a file changed while dormant is served: %d bytes complete", tt.BytesCompleted())
	}
	if _, complete := s.Seeding(); complete != 0 {
		t.Fatalf("%d complete; want 0", complete)
	}
}

// dialHandshake opens a connection to port and sends a plain handshake
// for ih; the connection is returned open.
func dialHandshake(t *testing.T, port int, ih metainfo.Hash) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Error(err)
		return nil
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(handshake(ih, false)); err != nil {
		t.Error(err)
	}
	// The answer, or the connection closed: either way the seeder has
	// read the handshake.
	c.Read(make([]byte, plainHandshakeLen))
	return c
}

// A flood of handshakes for every torrent of the catalogue wakes at most
// the cap, least recently used first out; a real download during the
// flood completes.
func TestSeederFloodOfHandshakesStaysCapped(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()
	var items []Item
	var tors []*Torrent
	for i := range 60 {
		tor := writePackage(t, dir, fmt.Sprintf("p%d-1-any.tpkg", i), randomBytes(20<<10, uint64(i+10)))
		tors, items = append(tors, tor), append(items, itemOf(tor))
	}
	const limit = 5
	s, err := NewSeeder(SeederConfig{Dir: dir, StateDir: t.TempDir(), ListenAddr: "127.0.0.1:0", LiveTorrents: limit})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.Sync(ctx, items); err != nil {
		t.Fatal(err)
	}
	var most int
	var mu sync.Mutex
	flood, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for round := 0; flood.Err() == nil; round++ {
			for _, tor := range tors[1:] {
				if c := dialHandshake(t, s.Port(), tor.InfoHash); c != nil {
					c.Close()
				}
				mu.Lock()
				most = max(most, s.Live())
				mu.Unlock()
			}
		}
	}()
	data, _ := os.ReadFile(filepath.Join(dir, tors[0].Name))
	got := leech(ctx, t, s, tors[0])
	stop()
	wg.Wait()
	if !bytes.Equal(got, data) {
		t.Fatal("the download during the flood brought other bytes")
	}
	if most > limit || most == 0 {
		t.Fatalf("at most %d live during the flood; want 1 to %d", most, limit)
	}
}

// recordingTracker answers announces with the given peers and sends each
// announce's infohash and left (followed by its event, if any) on the
// channel it returns.
func recordingTracker(t *testing.T, seeds ...int) (string, <-chan [2]string) {
	t.Helper()
	got := make(chan [2]string, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case got <- [2]string{r.URL.Query().Get("info_hash"), r.URL.Query().Get("left") + r.URL.Query().Get("event")}:
		default:
		}
		var peers []byte
		for _, port := range seeds {
			peers = append(peers, 127, 0, 0, 1, byte(port>>8), byte(port))
		}
		fmt.Fprintf(w, "d8:completei%de10:incompletei0e8:intervali600e5:peers%d:%se", len(seeds), len(peers), peers)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/announce", got
}

// A host's download goes dormant once idle; restarted, the host seeds the
// packages of its cache dormant and tells the trackers it seeds them all
// the same; another host whose download names it (no web seed, no
// repository) wakes the torrent with its handshake and gets the file.
func TestPeerSeedsDormantAndWakesForAPeer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	src := t.TempDir()
	data := randomBytes(300<<10, 21)
	tor := writePackage(t, src, "h-1-any.tpkg", data)
	cfg := PeerConfig{CacheDir: t.TempDir(), StateDir: t.TempDir(), ListenAddr: "127.0.0.1:0", IdleAfter: time.Second}
	first, err := NewPeer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tracker, announces := recordingTracker(t)
	spec := specOf(tor, webSeed(t, src, false))
	spec.Trackers = []string{tracker}
	if _, err := first.Download(ctx, spec, func(Progress) {}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the downloaded torrent going dormant", func() bool { return first.Stats().Live == 0 })
	for len(announces) > 0 {
		if a := <-announces; strings.HasSuffix(a[1], "stopped") {
			t.Fatal("going dormant told the tracker the host stopped seeding")
		}
	}
	first.Close()
	// Restarted, the host seeds its cache dormant and tells the tracker
	// at once: the tracker may have forgotten it meanwhile.
	for len(announces) > 0 {
		<-announces
	}
	seeding, err := NewPeer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { seeding.Close() })
	if err := seeding.Seed(spec); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-announces:
		if a[0] != string(tor.InfoHash[:]) || a[1] != "0" || seeding.Stats().Live != 0 {
			t.Fatalf("announce %x left %s with %d live; want the dormant torrent, seeded", a[0], a[1], seeding.Stats().Live)
		}
	case <-ctx.Done():
		t.Fatal("the dormant torrent was not announced as seeded")
	}
	if st := seeding.Stats(); st.Torrents != 1 || st.Complete != 1 {
		t.Fatalf("seeding host: %+v", st)
	}
	other, err := NewPeer(PeerConfig{CacheDir: t.TempDir(), StateDir: t.TempDir(), ListenAddr: "127.0.0.1:0", NoWebSeeds: true, StallTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	theirs := specOf(tor, "")
	theirs.Trackers = []string{fakeTracker(t, seeding.Port())}
	path, err := other.Download(ctx, theirs, func(Progress) {})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
		t.Fatal("the bytes from the dormant seed differ")
	}
	if st := seeding.Stats(); st.BytesUp < tor.Size {
		t.Fatalf("the seeding host sent %d of %d bytes", st.BytesUp, tor.Size)
	}
}

// A DHT announce of a host that wants a dormant torrent wakes it at the
// repository's node, which then dials the host: with no tracker and the
// repository the only seed, the download completes.
func TestDHTAnnounceWakesADormantTorrent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, tor := dhtSeeder(ctx, t, "d-1-any.tpkg", randomBytes(200<<10, 22))
	s.sleepAll()
	if s.Live() != 0 {
		t.Fatal("still live")
	}
	c, err := NewPeer(PeerConfig{CacheDir: t.TempDir(), StateDir: t.TempDir(), ListenAddr: "127.0.0.1:0",
		StallTimeout: 50 * time.Second, DHT: &DHTConfig{Bootstrap: []string{fmt.Sprintf("127.0.0.1:%d", s.Port())}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	spec := Spec{File: tor.Name, InfoHash: tor.InfoHash, InfoBytes: tor.InfoBytes, SHA256: tor.SHA256Hex(), Size: tor.Size}
	if _, err := c.Download(ctx, spec, func(Progress) {}); err != nil {
		t.Fatal(err)
	}
	if s.Live() != 1 {
		t.Fatalf("%d live at the repository after the download; want 1", s.Live())
	}
}

// A repository that announces to standard trackers announces its dormant
// torrents there, so that peers find it.
func TestSeederAnnouncesDormantTorrents(t *testing.T) {
	dir := t.TempDir()
	tor := writePackage(t, dir, "s-1-any.tpkg", randomBytes(20<<10, 23))
	tracker, announces := recordingTracker(t)
	s, err := NewSeeder(SeederConfig{Dir: dir, StateDir: t.TempDir(), ListenAddr: "127.0.0.1:0", Trackers: []string{tracker}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.Sync(context.Background(), []Item{itemOf(tor)}); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-announces:
		if a[0] != string(tor.InfoHash[:]) || a[1] != "0" || s.Live() != 0 {
			t.Fatalf("announce %q, left %s, %d live", a[0], a[1], s.Live())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the dormant torrent was not announced")
	}
}

// The repository's scan gives each file's stat with its torrent: a first
// sync records the file whole without reading it. One found bad since
// (a piece failed its check) stays so when the next generation keeps it
// with the same stat; a new stat (the scan hashed it again) counts.
func TestSeederTakesTheScansStat(t *testing.T) {
	dir := t.TempDir()
	tor := writePackage(t, dir, "a-1-any.tpkg", randomBytes(40<<10, 24))
	s := newTestSeeder(t, dir)
	it := itemOf(tor)
	st := stampOf(filepath.Join(dir, tor.Name))
	it.Size, it.MTimeNS, it.CTimeNS, it.Inode = st.size, st.mtime, st.ctime, st.inode
	if _, err := s.Sync(context.Background(), []Item{it}); err != nil {
		t.Fatal(err)
	}
	if _, complete := s.Seeding(); complete != 1 || s.Live() != 0 {
		t.Fatalf("after the first sync: %d complete, %d live; want 1 complete, dormant", complete, s.Live())
	}
	if err := s.completion.Set(metainfo.PieceKey{InfoHash: tor.InfoHash, Index: 0}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sync(context.Background(), []Item{it}); err != nil {
		t.Fatal(err)
	}
	if _, complete := s.Seeding(); complete != 0 {
		t.Fatal("a file found bad was recorded whole again by a sync with the same stat")
	}
	it.MTimeNS++
	if _, err := s.Sync(context.Background(), []Item{it}); err != nil {
		t.Fatal(err)
	}
	if _, complete := s.Seeding(); complete != 1 {
		t.Fatal("a file hashed anew (another stat) was not recorded whole")
	}
}

// Update applies a generation's change as Sync applies the whole set: the
// removed are dropped and forgotten, the added held, a file hashed again
// recorded whole, and the rest left as they were. A removed torrent that
// is added again in the same change stays; one never held is nothing.
func TestSeederUpdateIsSyncOfTheChange(t *testing.T) {
	dir := t.TempDir()
	var its []Item
	for i, name := range []string{"a-1-any.tpkg", "b-1-any.tpkg", "c-1-any.tpkg"} {
		tor := writePackage(t, dir, name, randomBytes(20<<10, uint64(30+i)))
		it := itemOf(tor)
		st := stampOf(filepath.Join(dir, tor.Name))
		it.Size, it.MTimeNS, it.CTimeNS, it.Inode = st.size, st.mtime, st.ctime, st.inode
		its = append(its, it)
	}
	s := newTestSeeder(t, dir)
	ctx := context.Background()
	if st, err := s.Sync(ctx, its[:2]); err != nil || st != (SyncStats{Added: 2}) {
		t.Fatalf("Sync = %+v, %v", st, err)
	}
	// a found bad since: an Update that does not name it leaves it so.
	if err := s.completion.Set(metainfo.PieceKey{InfoHash: its[0].InfoHash, Index: 0}, false); err != nil {
		t.Fatal(err)
	}
	never := [20]byte{1, 2, 3}
	st, err := s.Update(ctx, its[2:], [][20]byte{its[1].InfoHash, never})
	if err != nil || st != (SyncStats{Added: 1, Dropped: 1}) {
		t.Fatalf("Update = %+v, %v; want c added, b dropped", st, err)
	}
	if held, complete := s.Seeding(); held != 2 || complete != 1 {
		t.Fatalf("after the update: %d held, %d complete; want a and c held, c complete", held, complete)
	}
	if _, ok := s.held.get(its[1].InfoHash); ok {
		t.Fatal("b is still held")
	}
	// a hashed again (a new stat), removed and added in one change: kept,
	// and recorded whole.
	its[0].MTimeNS++
	st, err = s.Update(ctx, its[:1], [][20]byte{its[0].InfoHash})
	if err != nil || st != (SyncStats{Kept: 1}) {
		t.Fatalf("Update of a file hashed again = %+v, %v", st, err)
	}
	if held, complete := s.Seeding(); held != 2 || complete != 2 {
		t.Fatalf("after a was hashed again: %d held, %d complete; want 2, 2", held, complete)
	}
	bad := Item{InfoHash: its[1].InfoHash, InfoBytes: its[0].InfoBytes}
	if _, err := s.Update(ctx, []Item{bad}, nil); err == nil {
		t.Fatal("Update accepted info bytes of another torrent")
	}
}
