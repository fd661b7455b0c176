package publish

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"tpm/generation"
)

// largeIH is the torrent of the benchmarks' swarm.
var largeIH = [20]byte{'l', 'a', 'r', 'g', 'e'}

// healthyPublisher is a Publisher serving a generation of one package, so
// /healthz says ok.
func healthyPublisher(tb testing.TB) *Publisher {
	tb.Helper()
	p, err := New(Config{Dir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	p.Swap(generation.New(generation.Generation{Number: 1, Packages: []generation.Package{{File: "large-1.0-x86_64.tpkg", InfoHash: largeIH}}}))
	p.SetSeeder(6881, seederFigures{})
	return p
}

// largeSwarm is a Publisher serving one torrent that holds n peers, half
// of them seeders, perAddr ports of each address (the attack had
// 68,500 from 200 addresses, under the per-address cap).
func largeSwarm(b *testing.B, n, perAddr int) (*Publisher, [20]byte, []netip.AddrPort) {
	b.Helper()
	p, ih := healthyPublisher(b), largeIH
	addrs := make([]netip.AddrPort, 0, n)
	for i := range n {
		a := netip.AddrPortFrom(peerAddr(i/perAddr), uint16(1+i%perAddr))
		addrs = append(addrs, a)
		p.peers.Announce(ih, [20]byte(peerID(i)), a, "started", int64(i%2))
	}
	if got := p.peers.Len(); got != n {
		b.Fatalf("%d peers stored, want %d", got, n)
	}
	return p, ih, addrs
}

// peerAddr is the benchmark's address i.
func peerAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

// peerID is the id of the benchmark's peer i.
func peerID(i int) []byte {
	id := make([]byte, 20)
	copy(id, []byte{byte(i), byte(i >> 8), byte(i >> 16), 'p'})
	return id
}

// trackerRequest is a GET of target as if from the peer at from, on a
// connection to 127.0.0.1:8080.
func trackerRequest(target string, from netip.AddrPort) *http.Request {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	r.RemoteAddr = from.String()
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}
	return r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, local))
}

// BenchmarkAnnounceLargeTorrent: one announce (the periodic one of a peer
// already known, 50 peers wanted) to a torrent of 200,000 peers.
func BenchmarkAnnounceLargeTorrent(b *testing.B) {
	p, ih, addrs := largeSwarm(b, maxPeers, 1000)
	reqs := make([]*http.Request, 256)
	for i := range reqs {
		k := i * 997 % len(addrs)
		q := url.Values{"info_hash": {string(ih[:])}, "peer_id": {string(peerID(k))},
			"port": {"6881"}, "left": {"1"}, "compact": {"1"}}
		reqs[i] = trackerRequest("/announce?"+q.Encode(), addrs[k])
	}
	b.ResetTimer()
	for i := range b.N {
		w := httptest.NewRecorder()
		p.ServeHTTP(w, reqs[i%len(reqs)])
		if w.Body.Len() < 50*6 {
			b.Fatalf("announce answered %q", w.Body.String())
		}
	}
}

// BenchmarkScrape200: one /scrape naming a torrent of 200,000 peers 200
// times.
func BenchmarkScrape200(b *testing.B) {
	p, ih, _ := largeSwarm(b, maxPeers, 1000)
	q := url.Values{}
	for range maxNumWant {
		q.Add("info_hash", string(ih[:]))
	}
	r := trackerRequest("/scrape?"+q.Encode(), netip.MustParseAddrPort("192.0.2.9:6881"))
	b.ResetTimer()
	for range b.N {
		w := httptest.NewRecorder()
		p.ServeHTTP(w, r)
		if !strings.Contains(w.Body.String(), "complete") {
			b.Fatalf("scrape answered %q", w.Body.String())
		}
	}
}

// BenchmarkAnnounceNewPeerFullStore: the first announce of a new peer when
// the store is full, so the address holding most gives way, among 200,000
// addresses of one peer each.
func BenchmarkAnnounceNewPeerFullStore(b *testing.B) {
	p, ih, _ := largeSwarm(b, maxPeers, 1)
	b.ResetTimer()
	for i := range b.N {
		k := maxPeers + i
		q := url.Values{"info_hash": {string(ih[:])}, "peer_id": {string(peerID(k))}, "port": {"6881"}, "left": {"1"}, "compact": {"1"}}
		w := httptest.NewRecorder()
		p.ServeHTTP(w, trackerRequest("/announce?"+q.Encode(), netip.AddrPortFrom(peerAddr(k), 6881)))
		if w.Body.Len() < 50*6 {
			b.Fatalf("announce answered %q", w.Body.String())
		}
	}
}
