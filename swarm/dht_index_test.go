package swarm

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"tpm/store"
)

// A host's DHT node started without bootstrap nodes knows nobody until the
// signed index names the repository's node: joined through it, the host
// finds the seeder (no tracker, no web seed) and downloads.
func TestJoinThroughTheIndexsDHTNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, tor := dhtSeeder(ctx, t, "j-1-any.tpkg", randomBytes(100<<10, 31))
	c, err := NewPeer(PeerConfig{CacheDir: t.TempDir(), StateDir: t.TempDir(), ListenAddr: "127.0.0.1:0",
		StallTimeout: 50 * time.Second, DHT: &DHTConfig{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if n := c.Stats().DHTNodes; n != 0 {
		t.Fatalf("a node without bootstrap knows %d nodes", n)
	}
	joinCtx, cancelJoin := context.WithTimeout(ctx, 30*time.Second)
	defer cancelJoin()
	known, err := c.JoinDHT(joinCtx, []string{fmt.Sprintf("127.0.0.1:%d", s.Port())})
	if err != nil || known == 0 {
		t.Fatalf("joined: %d nodes, %v", known, err)
	}
	spec := Spec{File: tor.Name, InfoHash: tor.InfoHash, InfoBytes: tor.InfoBytes, SHA256: tor.SHA256Hex(), Size: tor.Size}
	if _, err := c.Download(ctx, spec, func(Progress) {}); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.BytesDown == 0 {
		t.Fatalf("%+v", st)
	}
}

// What an index names is bounded: invalid names are dropped, at most
// store.MaxDHTNodes kept, and the configured bootstrap nodes come first.
func TestJoinDHTBounds(t *testing.T) {
	c, err := NewPeer(PeerConfig{CacheDir: t.TempDir(), StateDir: t.TempDir(), ListenAddr: "127.0.0.1:0",
		DHT: &DHTConfig{Bootstrap: []string{"127.0.0.9:9"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	hostile := []string{"", "no-port", "0.0.0.0:1", "x:0", "a b:1", "[ff02::1]:1", "\n:1"}
	if _, err := c.JoinDHT(context.Background(), hostile); err == nil {
		t.Fatal("joined through invalid names")
	}
	if kept := fromIndex(c); kept != nil {
		t.Fatalf("kept %q", kept)
	}
	var named []string
	for i := range store.MaxDHTNodes + 8 {
		named = append(named, fmt.Sprintf("127.0.1.%d:%d", i+1, 1000+i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c.JoinDHT(ctx, append(hostile, named...)) // nobody answers there
	if kept := fromIndex(c); !slices.Equal(kept, named[:store.MaxDHTNodes]) {
		t.Fatalf("kept %q", kept)
	}
	addrs, err := c.dht.startingNodes()
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) != store.MaxDHTNodes+1 || addrs[0].String() != "127.0.0.9:9" || addrs[1].String() != named[0] {
		t.Fatalf("starting nodes %v", addrs)
	}
}

func fromIndex(c *Peer) []string {
	c.dht.mu.Lock()
	defer c.dht.mu.Unlock()
	return c.dht.fromIndex
}

// dhtSeeder is a seeder with a DHT node, seeding data as file, checked.
func dhtSeeder(ctx context.Context, t *testing.T, file string, data []byte) (*Seeder, *Torrent) {
	t.Helper()
	dir := t.TempDir()
	tor := writePackage(t, dir, file, data)
	s, err := NewSeeder(SeederConfig{Dir: dir, StateDir: t.TempDir(), ListenAddr: "127.0.0.1:0", DHT: &DHTConfig{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.Sync(ctx, []Item{itemOf(tor)}); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitComplete(ctx, tor.InfoHash); err != nil {
		t.Fatal(err)
	}
	return s, tor
}
