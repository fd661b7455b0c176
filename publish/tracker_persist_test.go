package publish

import (
	"net/netip"
	"os"
	"path/filepath"
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
