package publish

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"

	"tpm/generation"
	"tpm/repo"
	"tpm/repo/repotest"
	"tpm/signing"
	"tpm/store"
)

type fixture struct {
	dir     string
	pub     signing.PublicKey
	scanner *repo.Scanner
	p       *Publisher
	url     string
	stale   chan string
	demand  chan [20]byte
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), stale: make(chan string, 10), demand: make(chan [20]byte, 10)}
	keyPath, pubPath, err := signing.Keygen(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := signing.LoadKey(keyPath)
	f.pub, _ = signing.LoadPublicKey(pubPath)
	cat, err := store.OpenCatalog(filepath.Join(t.TempDir(), "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })

	f.p, err = New(Config{Dir: f.dir, OnStale: func(file string) { f.stale <- file }, OnDemand: func(ih [20]byte) { f.demand <- ih }})
	if err != nil {
		t.Fatal(err)
	}
	f.p.SetSeeder(6881, seederFigures{loaded: 2, complete: 1, live: 5, uploaded: 3, refused: 4})
	t.Cleanup(func() { f.p.Close() })
	srv, err := Listen("127.0.0.1:0", f.p, nil)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	f.url = "http://" + srv.Addr()
	f.scanner = repo.NewScanner(cat, repo.Options{Dir: f.dir, PublicURL: f.url, Signer: key, Trackers: []string{f.url + "/announce"}})
	return f
}

func (f *fixture) scan(t *testing.T) *generation.Generation {
	t.Helper()
	g, _, err := f.scanner.Scan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	f.p.Swap(g)
	return g
}

func get(t *testing.T, url string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// rawGet sends path exactly as given, so that no client cleans it first.
func rawGet(t *testing.T, addr, path string) int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestIndexPackagesTorrents(t *testing.T) {
	f := newFixture(t)
	if resp, _ := get(t, f.url+"/index.db"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("index before the first scan: %d, want 503", resp.StatusCode)
	}
	if resp, _ := get(t, f.url+"/healthz"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("healthz before the first scan: %d", resp.StatusCode)
	}

	a := repotest.Make(t, f.dir, repotest.Package{Name: "a", Version: "1", PayloadBytes: 200 << 10, Seed: 1})
	os.WriteFile(filepath.Join(f.dir, "bad-1-any.tpkg"), []byte("bad"), 0o644)
	os.WriteFile(filepath.Join(f.dir, "README"), []byte("readme"), 0o644)
	g := f.scan(t)

	resp, index := get(t, f.url+"/index.db")
	if resp.StatusCode != 200 || !bytes.Equal(index, must(g.Index.Bytes())) || resp.Header.Get("ETag") != g.IndexETag {
		t.Fatalf("index.db: %d, ETag %q", resp.StatusCode, resp.Header.Get("ETag"))
	}
	if resp, body := get(t, f.url+"/index.db", "If-None-Match", g.IndexETag); resp.StatusCode != http.StatusNotModified || len(body) != 0 {
		t.Errorf("index.db with If-None-Match: %d, %d bytes", resp.StatusCode, len(body))
	}
	_, sig := get(t, f.url+"/index.db.sig")
	if err := f.pub.Verify(index, sig); err != nil {
		t.Errorf("served signature: %v", err)
	}
	index[len(index)/2] ^= 1
	if err := f.pub.Verify(index, sig); err == nil {
		t.Error("signature verified a changed index")
	}
	resp, js := get(t, f.url+"/index.json")
	if resp.StatusCode != 200 || !strings.Contains(string(js), `"a-1-any.tpkg"`) || !strings.Contains(string(js), "bad-1-any.tpkg") {
		t.Errorf("index.json: %d\n%s", resp.StatusCode, js)
	}
	if resp, _ := get(t, f.url+"/index.json", "If-None-Match", resp.Header.Get("ETag")); resp.StatusCode != http.StatusNotModified {
		t.Errorf("index.json revalidation: %d", resp.StatusCode)
	}

	data, _ := os.ReadFile(a)
	resp, body := get(t, f.url+"/packages/a-1-any.tpkg")
	sum := sha256.Sum256(data)
	if resp.StatusCode != 200 || !bytes.Equal(body, data) || resp.Header.Get("ETag") != `"`+hex.EncodeToString(sum[:])+`"` {
		t.Errorf("package: %d, %d bytes, ETag %s", resp.StatusCode, len(body), resp.Header.Get("ETag"))
	}
	resp, body = get(t, f.url+"/packages/a-1-any.tpkg", "Range", "bytes=1000-1999")
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, data[1000:2000]) {
		t.Errorf("range: %d, %d bytes", resp.StatusCode, len(body))
	}
	// A few ranges are served; many tiny ones, whose multipart answer is
	// many times the request, are refused.
	if r2, _ := get(t, f.url+"/packages/a-1-any.tpkg", "Range", "bytes=0-0,10-10,20-20"); r2.StatusCode != http.StatusPartialContent {
		t.Errorf("3 ranges: %d", r2.StatusCode)
	}
	var many []string
	for i := range 1300 {
		many = append(many, fmt.Sprintf("%d-%d", i, i))
	}
	if r2, b := get(t, f.url+"/packages/a-1-any.tpkg", "Range", "bytes="+strings.Join(many, ",")); r2.StatusCode != http.StatusRequestedRangeNotSatisfiable || len(b) > 100 {
		t.Errorf("1,300 ranges: %d, %d bytes", r2.StatusCode, len(b))
	}
	if resp, _ := get(t, f.url+"/packages/a-1-any.tpkg", "If-None-Match", resp.Header.Get("ETag")); resp.StatusCode != http.StatusNotModified {
		t.Errorf("package revalidation: %d", resp.StatusCode)
	}

	resp, tor := get(t, f.url+"/torrents/a-1-any.tpkg.torrent")
	mi, err := metainfo.Load(bytes.NewReader(tor))
	if resp.StatusCode != 200 || err != nil || mi.HashInfoBytes() != g.Package("a-1-any.tpkg").InfoHash {
		t.Errorf("torrent: %d, %v", resp.StatusCode, err)
	}
	if mi.UrlList[0] != f.url+"/packages/" || mi.Announce != f.url+"/announce" {
		t.Errorf("torrent urls: %q %q", mi.Announce, mi.UrlList)
	}

	if resp, body := get(t, f.url+"/healthz"); resp.StatusCode != 200 || !strings.Contains(string(body), "generation=1 packages=1 rejected=1 seeding=1/2 live=5 uploaded=3 refused=4") {
		t.Errorf("healthz: %d %q", resp.StatusCode, body)
	}

	addr := strings.TrimPrefix(f.url, "http://")
	for _, path := range []string{
		"/packages/bad-1-any.tpkg", // on disk, rejected
		"/packages/README",         // on disk, not a package
		"/packages/missing-1-any.tpkg",
		"/packages/../index.db",
		"/packages/..%2findex.db",
		"/packages/%2e%2e/%2e%2e/etc/passwd",
		"/packages/a-1-any.tpkg/",
		"/packages/",
		"/torrents/bad-1-any.tpkg.torrent",
		"/torrents/a-1-any.tpkg",
		"/torrents/../index.db",
		"/index.db/",
		"/p/",
		"/p/../index.db",
		"/etc/passwd",
	} {
		if code := rawGet(t, addr, path); code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, code)
		}
	}
	req, _ := http.NewRequest("POST", f.url+"/index.db", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %v %v", resp.StatusCode, err)
	}
}

// A file changed since the scan is not served: the index's sha256 would not
// match. The publisher asks for a rescan.
func TestStalePackage(t *testing.T) {
	f := newFixture(t)
	a := repotest.Make(t, f.dir, repotest.Package{Name: "a", Version: "1", PayloadBytes: 10 << 10, Seed: 1})
	f.scan(t)
	repotest.Make(t, f.dir, repotest.Package{Name: "a", Version: "1", PayloadBytes: 10 << 10, Seed: 2})
	if resp, _ := get(t, f.url+"/packages/"+filepath.Base(a)); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("changed package: %d, want 503", resp.StatusCode)
	}
	select {
	case file := <-f.stale:
		if file != filepath.Base(a) {
			t.Errorf("OnStale(%q)", file)
		}
	default:
		t.Error("OnStale was not called")
	}
	g := f.scan(t)
	if resp, _ := get(t, f.url+"/packages/"+filepath.Base(a)); resp.StatusCode != 200 || g.Number != 2 {
		t.Errorf("after rescan: %d", resp.StatusCode)
	}
}

func TestSwapIgnoresOlderGeneration(t *testing.T) {
	f := newFixture(t)
	g1 := generation.New(generation.Generation{Number: 1, IndexETag: `"1"`})
	g2 := generation.New(generation.Generation{Number: 2, IndexETag: `"2"`})
	if !f.p.Swap(g2) || f.p.Swap(g1) || f.p.Current() != g2 {
		t.Error("an older generation replaced a newer one")
	}
}

// Readers racing with swaps only ever see whole generations.
func TestSwapIsAtomic(t *testing.T) {
	f := newFixture(t)
	gens := make([]*generation.Generation, 50)
	for i := range gens {
		idx := []byte(fmt.Sprintf("index %d", i+1))
		sum := sha256.Sum256(idx)
		gens[i] = generation.New(generation.Generation{Number: uint64(i + 1), Index: generation.BytesBlob(idx),
			IndexETag: `"` + hex.EncodeToString(sum[:]) + `"`})
	}
	f.p.Swap(gens[0])
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for _, g := range gens[1:] {
			f.p.Swap(g)
			time.Sleep(time.Millisecond)
		}
	}()
	for range 100 {
		resp, body := get(t, f.url+"/index.db")
		sum := sha256.Sum256(body)
		if resp.Header.Get("ETag") != `"`+hex.EncodeToString(sum[:])+`"` {
			t.Fatalf("ETag %s does not match body %q", resp.Header.Get("ETag"), body)
		}
	}
	wg.Wait()
}

func TestServerTimeouts(t *testing.T) {
	s, err := Listen("127.0.0.1:0", http.NotFoundHandler(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	if s.srv.ReadHeaderTimeout == 0 || s.srv.ReadTimeout == 0 || s.srv.IdleTimeout == 0 {
		t.Errorf("a connection timeout is missing: %+v", s.srv)
	}
}

// announce sends one announce as a client with the given port would.
func announce(t *testing.T, base string, ih [20]byte, id byte, port int, extra string) map[string]any {
	t.Helper()
	peerID := bytes.Repeat([]byte{id}, 20)
	u := fmt.Sprintf("%s/announce?info_hash=%s&peer_id=%s&port=%d&uploaded=0&downloaded=0&left=10&compact=1%s",
		base, url.QueryEscape(string(ih[:])), url.QueryEscape(string(peerID)), port, extra)
	resp, body := get(t, u)
	if resp.StatusCode != 200 {
		t.Fatalf("announce: HTTP %d", resp.StatusCode)
	}
	var m map[string]any
	if err := bencode.Unmarshal(body, &m); err != nil {
		t.Fatalf("announce response %q: %v", body, err)
	}
	return m
}

func compactPeers(t *testing.T, m map[string]any) []netip.AddrPort {
	t.Helper()
	s, ok := m["peers"].(string)
	if !ok || len(s)%6 != 0 {
		t.Fatalf("peers is not a compact string: %#v", m["peers"])
	}
	var out []netip.AddrPort
	for i := 0; i < len(s); i += 6 {
		b := []byte(s[i : i+6])
		out = append(out, netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[:4])), uint16(b[4])<<8|uint16(b[5])))
	}
	return out
}

func TestTracker(t *testing.T) {
	f := newFixture(t)
	repotest.Make(t, f.dir, repotest.Package{Name: "a", Version: "1", PayloadBytes: 10 << 10, Seed: 1})
	g := f.scan(t)
	ih := g.Packages[0].InfoHash
	seeder := netip.MustParseAddrPort("127.0.0.1:6881")

	m := announce(t, f.url, ih, 'A', 7001, "&event=started")
	if _, bad := m["failure reason"]; bad {
		t.Fatalf("announce failed: %v", m)
	}
	if got := compactPeers(t, m); len(got) != 1 || got[0] != seeder {
		t.Errorf("first peer's list = %v, want only the server's seeder", got)
	}
	if m["interval"].(int64) <= 0 {
		t.Errorf("interval = %v", m["interval"])
	}
	m = announce(t, f.url, ih, 'B', 7002, "")
	got := compactPeers(t, m)
	if len(got) != 2 || got[0] != seeder || got[1] != netip.MustParseAddrPort("127.0.0.1:7001") {
		t.Errorf("second peer's list = %v, want the seeder and A", got)
	}
	if m["incomplete"].(int64) != 2 || m["complete"].(int64) != 1 {
		t.Errorf("counts: complete %v incomplete %v", m["complete"], m["incomplete"])
	}
	// numwant=0 returns no peers.
	if got := compactPeers(t, announce(t, f.url, ih, 'B', 7002, "&numwant=0")); len(got) != 0 {
		t.Errorf("numwant=0 gave %v", got)
	}
	// A scrape counts the swarm: the server's seeder and A and B; it
	// leaves out torrents it does not track.
	resp, body := get(t, f.url+"/scrape?info_hash="+url.QueryEscape(string(ih[:]))+"&info_hash="+url.QueryEscape(string(make([]byte, 20))))
	var scrape struct {
		Files map[string]map[string]int64 `bencode:"files"`
	}
	if err := bencode.Unmarshal(body, &scrape); err != nil || resp.StatusCode != 200 {
		t.Fatalf("scrape: %d %q %v", resp.StatusCode, body, err)
	}
	if c := scrape.Files[string(ih[:])]; len(scrape.Files) != 1 || c["complete"] != 1 || c["incomplete"] != 2 {
		t.Errorf("scrape = %v, want one file, complete 1, incomplete 2", scrape.Files)
	}
	if _, body := get(t, f.url+"/scrape"); !strings.Contains(string(body), "failure reason") {
		t.Errorf("a scrape of everything was answered: %q", body)
	}
	// Only A itself can make the tracker forget A.
	announce(t, f.url, ih, 'C', 7001, "&event=stopped")
	if got := compactPeers(t, announce(t, f.url, ih, 'B', 7002, "")); len(got) != 2 {
		t.Errorf("another peer id stopped A: %v", got)
	}
	// A stopped peer is forgotten.
	announce(t, f.url, ih, 'A', 7001, "&event=stopped")
	if got := compactPeers(t, announce(t, f.url, ih, 'B', 7002, "")); len(got) != 1 {
		t.Errorf("after A stopped: %v", got)
	}
	// Torrents outside the generation and malformed requests get a
	// bencoded failure reason.
	for _, m := range []map[string]any{
		announce(t, f.url, [20]byte{1}, 'C', 7003, ""),
		announce(t, f.url, ih, 'C', 0, ""),
	} {
		if _, ok := m["failure reason"]; !ok {
			t.Errorf("no failure reason in %v", m)
		}
	}
	resp, body = get(t, f.url+"/announce?info_hash=short")
	if resp.StatusCode != 200 || !strings.Contains(string(body), "failure reason") {
		t.Errorf("malformed announce: %d %q", resp.StatusCode, body)
	}
}

// A host that wants a package (left above 0, or unknown) is demand the
// seeder is told of, so that it wakes the torrent; a seed's announce, a
// stop, and an announce for a torrent not published are not.
func TestTrackerDemand(t *testing.T) {
	f := newFixture(t)
	repotest.Make(t, f.dir, repotest.Package{Name: "a", Version: "1", PayloadBytes: 10 << 10, Seed: 1})
	ih := f.scan(t).Packages[0].InfoHash
	send := func(hash [20]byte, query string) {
		t.Helper()
		u := fmt.Sprintf("%s/announce?info_hash=%s&peer_id=%s&port=7001&uploaded=0&downloaded=0&compact=1%s",
			f.url, url.QueryEscape(string(hash[:])), strings.Repeat("D", 20), query)
		if resp, body := get(t, u); resp.StatusCode != 200 {
			t.Fatalf("announce: HTTP %d %q", resp.StatusCode, body)
		}
	}
	send(ih, "&left=0")
	send(ih, "&left=10&event=stopped")
	send([20]byte{1}, "&left=10")
	send(ih, "&left=10")
	if got := <-f.demand; got != ih || len(f.demand) != 0 {
		t.Fatalf("demand for %x and %d more; want %x alone, from the last announce", got, len(f.demand), ih)
	}
}

func TestPeerStoreExpiry(t *testing.T) {
	now := time.Unix(1000, 0)
	s := NewPeerStore(time.Minute, func() time.Time { return now })
	ih := [20]byte{1}
	a, b := netip.MustParseAddrPort("10.0.0.1:1"), netip.MustParseAddrPort("10.0.0.2:2")
	s.Announce(ih, [20]byte{'a'}, a, "started", 0)
	now = now.Add(50 * time.Second)
	s.Announce(ih, [20]byte{'b'}, b, "started", 5)
	if peers, seeders, leechers := s.Peers(ih, b, 10); len(peers) != 1 || seeders != 1 || leechers != 1 {
		t.Errorf("Peers = %v %d %d", peers, seeders, leechers)
	}
	now = now.Add(20 * time.Second) // a is 70 s old: expired
	if peers, _, _ := s.Peers(ih, b, 10); len(peers) != 0 {
		t.Errorf("expired peer returned: %v", peers)
	}
	now = now.Add(2 * time.Minute)
	s.Announce([20]byte{2}, [20]byte{'c'}, a, "", 1) // sweeps
	if s.Len() != 1 {
		t.Errorf("after sweep: %d peers stored, want 1", s.Len())
	}
	s.Forget(func(ih [20]byte) bool { return false })
	if s.Len() != 0 {
		t.Errorf("after Forget: %d", s.Len())
	}
}

// seederFigures stands for the server's seeder in /healthz.
type seederFigures struct {
	loaded, complete, live int
	uploaded, refused      int64
}

func (s seederFigures) SeederFigures() SeederFigures {
	return SeederFigures{Loaded: s.loaded, Complete: s.complete, Live: s.live, Uploaded: s.uploaded, Refused: s.refused}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
