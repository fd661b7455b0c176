package publish

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"testing"
	"time"
)

// checkStore compares what the store keeps as peers come and go (counts,
// the sample list, the list by seen, the addresses by entries) with what a
// scan of its entries says.
func checkStore(s *PeerStore) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	total := 0
	perIP := map[netip.Addr]int{}
	for ih, sw := range s.torrents {
		if len(sw.peers) == 0 {
			return fmt.Errorf("torrent %x kept with no peers", ih[:2])
		}
		type tally struct{ entries, seeds int }
		byAddr := map[netip.AddrPort]*tally{}
		for key, p := range sw.peers {
			if p.key != key || p.ih != ih || p.gone {
				return fmt.Errorf("entry %v filed under %v", p.key, key)
			}
			if now.Sub(p.seen) > s.ttl {
				return fmt.Errorf("expired entry %v kept", key)
			}
			if byAddr[key.addr] == nil {
				byAddr[key.addr] = &tally{}
			}
			byAddr[key.addr].entries++
			if p.seeder {
				byAddr[key.addr].seeds++
			}
			perIP[key.addr.Addr()]++
			total++
		}
		seeders := 0
		for a, tl := range byAddr {
			ep := sw.endpoints[a]
			if ep == nil || ep.entries != tl.entries || ep.seeds != tl.seeds {
				return fmt.Errorf("endpoint %v: %+v, scan says %+v", a, ep, tl)
			}
			if tl.seeds > 0 {
				seeders++
			}
		}
		if len(sw.endpoints) != len(byAddr) || len(sw.list) != len(byAddr) {
			return fmt.Errorf("%d endpoints, %d listed, scan says %d", len(sw.endpoints), len(sw.list), len(byAddr))
		}
		for i, ep := range sw.list {
			if ep.slot != i || sw.endpoints[ep.addr] != ep {
				return fmt.Errorf("list slot %d holds %v (slot %d)", i, ep.addr, ep.slot)
			}
		}
		if sw.seeders != seeders {
			return fmt.Errorf("%d seeders counted, scan says %d", sw.seeders, seeders)
		}
	}
	if s.count != total || total > s.maxPeers {
		return fmt.Errorf("count %d, scan says %d (cap %d)", s.count, total, s.maxPeers)
	}
	n, most := 0, 0
	for p := s.oldest; p != nil; p = p.newer {
		if p.newer != nil && p.newer.seen.Before(p.seen) {
			return fmt.Errorf("list by seen out of order at %v", p.key)
		}
		n++
	}
	if n != total {
		return fmt.Errorf("list by seen holds %d of %d", n, total)
	}
	for ip, c := range perIP {
		ipp := s.byIP[ip]
		if ipp == nil || ipp.n != c || c > s.maxPerIP || s.byCount[c][ipp.slot] != ipp {
			return fmt.Errorf("address %v: %+v, scan says %d", ip, ipp, c)
		}
		most = max(most, c)
	}
	if len(s.byIP) != len(perIP) || s.most != most {
		return fmt.Errorf("%d addresses (most %d), scan says %d (most %d)", len(s.byIP), s.most, len(perIP), most)
	}
	return nil
}

// TestPeerStoreKeepsItsCounts: thousands of random announces, changes,
// stops, expiries and evictions; after each, what the store keeps agrees
// with a scan, and a sample names distinct live addresses, never the
// asker's.
func TestPeerStoreKeepsItsCounts(t *testing.T) {
	now := time.Unix(1e9, 0)
	s := NewPeerStore(time.Minute, func() time.Time { return now })
	s.maxPeers, s.maxPerIP = 60, 12
	rnd := rand.New(rand.NewPCG(1, 29))
	torrents := [][20]byte{{1}, {2}, {3}}
	for i := range 20_000 {
		now = now.Add(time.Duration(rnd.IntN(1500)) * time.Millisecond)
		ih := torrents[rnd.IntN(len(torrents))]
		addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(rnd.IntN(8))}), uint16(1+rnd.IntN(4)))
		id := [20]byte{byte(rnd.IntN(3))}
		event := []string{"", "started", "completed", "stopped", "paused"}[rnd.IntN(5)]
		switch rnd.IntN(20) {
		case 0:
			s.Forget(func(h [20]byte) bool { return h != ih })
		default:
			s.Announce(ih, id, addr, event, int64(rnd.IntN(2)))
		}
		if err := checkStore(s); err != nil {
			t.Fatalf("after operation %d: %v", i, err)
		}
		if i%100 == 0 {
			// What the metrics read agrees with what a scrape reads.
			n := 0
			s.Counts(func(h [20]byte, seeders, leechers int) {
				if cs, cl := s.countOf(h); cs != seeders || cl != leechers {
					t.Fatalf("after operation %d: Counts says %d/%d, Count %d/%d", i, seeders, leechers, cs, cl)
				}
				n++
			})
			if n != s.Torrents() {
				t.Fatalf("after operation %d: %d torrents counted, Torrents says %d", i, n, s.Torrents())
			}
		}
		want := rnd.IntN(8)
		peers, seeders, leechers := s.Peers(ih, addr, want)
		s.mu.Lock()
		sw := s.torrents[ih]
		endpoints, askerIn := 0, false
		if sw != nil {
			endpoints, askerIn = len(sw.list), sw.endpoints[addr] != nil
		}
		s.mu.Unlock()
		if seeders+leechers != endpoints {
			t.Fatalf("after operation %d: %d seeders + %d leechers, %d addresses", i, seeders, leechers, endpoints)
		}
		others := endpoints
		if askerIn {
			others--
		}
		if len(peers) != min(want, others) {
			t.Fatalf("after operation %d: %d peers named of %d wanted, %d others", i, len(peers), want, others)
		}
		seen := map[netip.AddrPort]bool{}
		for _, p := range peers {
			if p == addr || seen[p] || sw.endpoints[p] == nil {
				t.Fatalf("after operation %d: sample %v names %v wrongly (asker %v)", i, peers, p, addr)
			}
			seen[p] = true
		}
	}
}

// countOf is Count without the lock, for Counts' callback (which holds it).
func (s *PeerStore) countOf(ih [20]byte) (seeders, leechers int) {
	if sw := s.torrents[ih]; sw != nil {
		return sw.seeders, len(sw.list) - sw.seeders
	}
	return 0, 0
}

// TestPeerStoreSampleIsSpread: over many announces, every address of a
// swarm is named, not the same few.
func TestPeerStoreSampleIsSpread(t *testing.T) {
	s := NewPeerStore(time.Hour, nil)
	ih := [20]byte{1}
	for i := range 500 {
		s.Announce(ih, [20]byte{byte(i), byte(i >> 8)}, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 6881), "", 1)
	}
	named := map[netip.AddrPort]bool{}
	for range 200 {
		peers, _, _ := s.Peers(ih, netip.AddrPort{}, 50)
		for _, p := range peers {
			named[p] = true
		}
	}
	// 10,000 picks of 500: each is missed with odds of about e^-20.
	if len(named) != 500 {
		t.Errorf("200 samples of 50 named %d of 500 addresses", len(named))
	}
}

// TestPeerStoreLoadKeepsSeen: peers loaded from the last run expire when
// they would have, in whatever order the file has them.
func TestPeerStoreLoadKeepsSeen(t *testing.T) {
	now := time.Unix(1e9, 0)
	clock := func() time.Time { return now }
	path := filepath.Join(t.TempDir(), "peers.json")
	before := NewPeerStore(time.Minute, clock)
	for i := range 10 {
		now = now.Add(5 * time.Second)
		before.Announce([20]byte{byte(i % 3)}, [20]byte{byte(i)}, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 1), "", int64(i%2))
	}
	if err := before.Save(path); err != nil {
		t.Fatal(err)
	}
	after := NewPeerStore(time.Minute, clock)
	if err := after.Load(path); err != nil {
		t.Fatal(err)
	}
	if err := checkStore(after); err != nil || after.Len() != 10 {
		t.Fatalf("loaded %d: %v", after.Len(), err)
	}
	now = now.Add(22 * time.Second) // the first 2 were seen over a minute ago
	if after.Len() != 8 {
		t.Errorf("%d live, want 8", after.Len())
	}
	if err := checkStore(after); err != nil {
		t.Fatal(err)
	}
}
