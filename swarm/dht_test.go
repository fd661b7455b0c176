package swarm

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
)

// With no tracker and no web seed, a host finds the repository's seeder,
// and a second host the first, through the DHT, the seeder its bootstrap
// node.
func TestDownloadThroughTheDHT(t *testing.T) {
	dir := t.TempDir()
	tor := writePackage(t, dir, "a-1-any.tpkg", randomBytes(200<<10, 9))
	s, err := NewSeeder(SeederConfig{Dir: dir, StateDir: t.TempDir(), ListenAddr: "127.0.0.1:0", DHT: &DHTConfig{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.Sync(context.Background(), []Item{{InfoHash: tor.InfoHash, InfoBytes: tor.InfoBytes}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.WaitComplete(ctx, tor.InfoHash); err != nil {
		t.Fatal(err)
	}
	bootstrap := []string{fmt.Sprintf("127.0.0.1:%d", s.Port())}
	spec := Spec{File: tor.Name, InfoHash: tor.InfoHash, InfoBytes: tor.InfoBytes, SHA256: tor.SHA256Hex(), Size: tor.Size}
	for i := range 2 {
		c, err := NewPeer(PeerConfig{CacheDir: t.TempDir(), StateDir: t.TempDir(), ListenAddr: "127.0.0.1:0",
			StallTimeout: 50 * time.Second, DHT: &DHTConfig{Bootstrap: bootstrap}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.Download(ctx, spec, func(Progress) {}); err != nil {
			t.Fatalf("host %d: %v", i+1, err)
		}
		if st := c.Stats(); st.BytesDown == 0 || st.DHTNodes == 0 {
			t.Fatalf("host %d: %+v", i+1, st)
		}
	}
}

// The DHT's peer store is bounded per torrent, keeps peers by address and
// port (hosts behind one address stay apart), answers a sample, and
// forgets peers that stop announcing.
func TestDHTPeerStoreBounds(t *testing.T) {
	now := time.Unix(1000, 0)
	p := newDHTPeers(func() time.Time { return now })
	ih := [20]byte{1}
	for i := range dhtPeersPerTorrent + 10 {
		p.AddPeer(ih, krpc.NodeAddr{IP: net.IPv4(10, 0, 0, 1), Port: 1000 + i})
		now = now.Add(time.Millisecond)
	}
	if n := len(p.by[ih]); n != dhtPeersPerTorrent {
		t.Fatalf("%d peers kept, want %d", n, dhtPeersPerTorrent)
	}
	if _, ok := p.by[ih][krpc.NodeAddr{IP: net.IPv4(10, 0, 0, 1), Port: 1000}.String()]; ok {
		t.Fatal("the oldest peer was not the one replaced")
	}
	if got := p.GetPeers(ih); len(got) != dhtPeersAnswered {
		t.Fatalf("answered %d peers, want %d", len(got), dhtPeersAnswered)
	}
	now = now.Add(dhtPeerLife + time.Second)
	if got := p.GetPeers(ih); len(got) != 0 || len(p.by) != 0 {
		t.Fatalf("expired peers answered: %d", len(got))
	}
}
