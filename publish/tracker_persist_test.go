package publish

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// Peers saved by one run are named by the next, until they expire.
func TestPeerStoreSurvivesRestart(t *testing.T) {
	now := time.Unix(1e9, 0)
	clock := func() time.Time { return now }
	path := filepath.Join(t.TempDir(), "peers.json")
	ih := [20]byte{1}
	seed := netip.MustParseAddrPort("127.0.0.1:6881")
	asker := netip.MustParseAddrPort("127.0.0.1:7000")

	before := NewPeerStore(time.Minute, clock)
	before.Announce(ih, [20]byte{9}, seed, "", 0)
	if err := before.Save(path); err != nil {
		t.Fatal(err)
	}
	after := NewPeerStore(time.Minute, clock)
	if err := after.Load(path); err != nil {
		t.Fatal(err)
	}
	peers, seeders, _ := after.Peers(ih, asker, 10)
	if len(peers) != 1 || peers[0] != seed || seeders != 1 {
		t.Fatalf("after a restart: %v, %d seeders", peers, seeders)
	}

	now = now.Add(2 * time.Minute) // past the ttl: nothing to load
	stale := NewPeerStore(time.Minute, clock)
	if err := stale.Load(path); err != nil {
		t.Fatal(err)
	}
	if peers, _, _ := stale.Peers(ih, asker, 10); len(peers) != 0 {
		t.Fatalf("expired peers loaded: %v", peers)
	}
	if err := NewPeerStore(time.Minute, clock).Load(filepath.Join(t.TempDir(), "none")); err != nil {
		t.Fatalf("missing file: %v", err)
	}
	os.WriteFile(path, []byte("garbage"), 0o600)
	if err := NewPeerStore(time.Minute, clock).Load(path); err == nil {
		t.Fatal("garbage loaded without error")
	}
}

// TestTrackerFloodFromOneAddress: an address that announces 20,000 peers
// holds only its cap, replacing its own oldest; a newcomer from another
// address is stored and named at once; with the store full, the address
// holding most gives way.
func TestTrackerFloodFromOneAddress(t *testing.T) {
	now := time.Unix(1e9, 0)
	s := NewPeerStore(time.Hour, func() time.Time { return now })
	s.maxPeers, s.maxPerIP = 300, 100
	ih := [20]byte{1}
	attacker := netip.MustParseAddr("10.0.0.66")
	start := time.Now()
	for i := range 20_000 {
		now = now.Add(time.Millisecond)
		s.Announce(ih, [20]byte{byte(i), byte(i >> 8)}, netip.AddrPortFrom(attacker, uint16(1+i%60000)), "", 1)
	}
	t.Logf("20,000 announces from one address: %v", time.Since(start))
	if s.Len() != 100 {
		t.Fatalf("one address holds %d entries, want its cap of 100", s.Len())
	}
	victim := netip.MustParseAddrPort("10.0.0.7:6881")
	s.Announce(ih, [20]byte{'v'}, victim, "started", 0)
	peers, seeders, _ := s.Peers(ih, netip.AddrPort{}, 200)
	if !slices.Contains(peers, victim) || seeders != 1 {
		t.Fatalf("the newcomer is not named: %d peers, %d seeders", len(peers), seeders)
	}
	// Three more addresses fill the store; the busiest gives way, the
	// victim stays.
	for a := range 3 {
		for i := range 100 {
			now = now.Add(time.Millisecond)
			s.Announce(ih, [20]byte{byte(a), byte(i), 'x'}, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(a), 1}), uint16(1+i)), "", 1)
		}
	}
	if s.Len() > 300 {
		t.Fatalf("the store holds %d, over its cap", s.Len())
	}
	if peers, _, _ := s.Peers(ih, netip.AddrPort{}, 400); !slices.Contains(peers, victim) {
		t.Fatal("the victim was evicted")
	}
}

// TestNATNeighbourCannotRemoveAPeer: behind the same address, another host
// announces the victim's port with its own id and stops: the victim stays.
func TestNATNeighbourCannotRemoveAPeer(t *testing.T) {
	s := NewPeerStore(time.Hour, nil)
	ih := [20]byte{1}
	victim := netip.MustParseAddrPort("192.0.2.1:6881")
	s.Announce(ih, [20]byte{'v'}, victim, "started", 0)
	s.Announce(ih, [20]byte{'x'}, victim, "started", 0)
	if peers, seeders, _ := s.Peers(ih, netip.AddrPort{}, 10); len(peers) != 1 || seeders != 1 {
		t.Fatalf("one address, two ids: %v, %d seeders; want it named once", peers, seeders)
	}
	s.Announce(ih, [20]byte{'x'}, victim, "stopped", 0)
	if peers, _, _ := s.Peers(ih, netip.AddrPort{}, 10); len(peers) != 1 || peers[0] != victim {
		t.Fatalf("after the neighbour stopped: %v", peers)
	}
	s.Announce(ih, [20]byte{'v'}, victim, "stopped", 0)
	if s.Len() != 0 {
		t.Fatalf("after the victim itself stopped: %d", s.Len())
	}
}

func TestSaveIfChanged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "peers.json")
	s := NewPeerStore(time.Hour, nil)
	if err := s.SaveIfChanged(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("saved with nothing changed")
	}
	s.Announce([20]byte{1}, [20]byte{2}, netip.MustParseAddrPort("192.0.2.1:1"), "", 0)
	if err := s.SaveIfChanged(path); err != nil {
		t.Fatal(err)
	}
	loaded := NewPeerStore(time.Hour, nil)
	if err := loaded.Load(path); err != nil || loaded.Len() != 1 {
		t.Fatalf("loaded %d, %v", loaded.Len(), err)
	}
}

// BenchmarkAnnounceFloodOneAddress: the cost of an announce from an
// address at its cap (each one evicts that address's oldest).
func BenchmarkAnnounceFloodOneAddress(b *testing.B) {
	s := NewPeerStore(time.Hour, nil)
	ip := netip.MustParseAddr("10.0.0.66")
	ih := [20]byte{1}
	for i := range b.N {
		s.Announce(ih, [20]byte{byte(i), byte(i >> 8), byte(i >> 16)}, netip.AddrPortFrom(ip, uint16(1+i%60000)), "", 1)
	}
	if s.Len() > maxPeersPerIP {
		b.Fatalf("%d stored", s.Len())
	}
}
