package swarm

import (
	"slices"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"
)

func testDormancy(limit int, hashes ...metainfo.Hash) *dormancy[int] {
	d := newDormancy[int](limit, time.Minute)
	for i, ih := range hashes {
		d.hold(ih, i)
	}
	return d
}

func still(metainfo.Hash) activity { return activity{} }

// The live set has a cap: a wake past it puts the least recently used to
// sleep, and one used since (woken again) is kept.
func TestDormancyEvictsLeastRecentlyUsed(t *testing.T) {
	a, b, c, x := metainfo.Hash{1}, metainfo.Hash{2}, metainfo.Hash{3}, metainfo.Hash{9}
	d := testDormancy(2, a, b, c)
	t0 := time.Unix(1000, 0)
	for i, ih := range []metainfo.Hash{a, b} {
		if evict, ok := d.wake(ih, t0.Add(time.Duration(i)*time.Second), false, still); !ok || len(evict) != 0 {
			t.Fatalf("wake %x: %v, %v", ih, evict, ok)
		}
	}
	d.wake(a, t0.Add(2*time.Second), false, still) // a used again: b is the oldest
	evict, ok := d.wake(c, t0.Add(3*time.Second), false, still)
	if !ok || !slices.Equal(evict, []metainfo.Hash{b}) {
		t.Fatalf("waking past the cap put %x to sleep (ok %v); want b", evict, ok)
	}
	if got := d.liveHashes(); !slices.Equal(got, []metainfo.Hash{c, a}) {
		t.Fatalf("live %x; want c, a", got)
	}
	if _, held := d.get(b); !held || d.isLive(b) || !d.isLive(a) {
		t.Fatal("b is not dormant, or a is")
	}
	if _, ok := d.wake(x, t0, false, still); ok {
		t.Fatal("a torrent not held was woken")
	}
}

// A live torrent that moved data since it was last looked at is not put
// to sleep for another: it counts as used now. When every live torrent is
// busy, the wake is refused and nothing sleeps.
func TestDormancyKeepsBusyTorrents(t *testing.T) {
	a, b, c := metainfo.Hash{1}, metainfo.Hash{2}, metainfo.Hash{3}
	d := testDormancy(2, a, b, c)
	t0 := time.Unix(1000, 0)
	d.wake(a, t0, false, still)
	d.wake(b, t0.Add(time.Second), false, still)
	aMoves := func(ih metainfo.Hash) activity {
		if ih == a {
			return activity{moved: 100}
		}
		return activity{}
	}
	evict, ok := d.wake(c, t0.Add(2*time.Second), false, aMoves)
	if !ok || !slices.Equal(evict, []metainfo.Hash{b}) {
		t.Fatalf("evicted %x (ok %v); want b, the one not moving", evict, ok)
	}
	busy := func(metainfo.Hash) activity { return activity{connected: true} }
	evict, ok = d.wake(b, t0.Add(3*time.Second), false, busy)
	if ok || len(evict) != 0 {
		t.Fatalf("with every live torrent busy, a wake evicted %x (ok %v)", evict, ok)
	}
	if got := d.liveHashes(); len(got) != 2 || d.isLive(b) {
		t.Fatalf("live %x after a refused wake", got)
	}
}

// A pinned torrent (a download) neither counts against the cap nor goes
// to sleep, idle or not; a pin always gets in.
func TestDormancyPins(t *testing.T) {
	a, b, c := metainfo.Hash{1}, metainfo.Hash{2}, metainfo.Hash{3}
	d := testDormancy(1, a, b, c)
	t0 := time.Unix(1000, 0)
	d.wake(a, t0, true, still)
	if _, ok := d.wake(b, t0, false, still); !ok {
		t.Fatal("a pinned torrent took the only place")
	}
	if evict, ok := d.wake(c, t0, true, still); !ok || len(evict) != 0 {
		t.Fatalf("a pin past the cap: %x, %v", evict, ok)
	}
	if idle := d.sweep(t0.Add(time.Hour), still); !slices.Equal(idle, []metainfo.Hash{b}) {
		t.Fatalf("idle %x; want only b, the one not pinned", idle)
	}
	d.unpin(a, t0.Add(time.Hour))
	if idle := d.sweep(t0.Add(time.Hour+30*time.Second), still); len(idle) != 0 {
		t.Fatalf("idle %x half a minute after its pin ended", idle)
	}
	if idle := d.sweep(t0.Add(2*time.Hour), still); !slices.Equal(idle, []metainfo.Hash{a}) {
		t.Fatalf("idle %x; want a, unpinned an hour ago (c keeps its pin)", idle)
	}
	if d.forget(c); d.isLive(c) || d.unpinned() != 0 || d.pinnedLive != 0 {
		t.Fatalf("after forgetting the last pinned torrent: live %x, pinned %d", d.liveHashes(), d.pinnedLive)
	}
}

// The sweep puts to sleep what moved no data for the idle time, and keeps
// what moved since the last sweep.
func TestDormancySweep(t *testing.T) {
	a, b := metainfo.Hash{1}, metainfo.Hash{2}
	d := testDormancy(10, a, b)
	t0 := time.Unix(1000, 0)
	d.wake(a, t0, false, still)
	d.wake(b, t0, false, still)
	bytes := map[metainfo.Hash]int64{}
	counter := func(ih metainfo.Hash) activity { return activity{moved: bytes[ih]} }
	bytes[b] = 10
	if idle := d.sweep(t0.Add(50*time.Second), counter); len(idle) != 0 {
		t.Fatalf("idle %x before a minute", idle)
	}
	if idle := d.sweep(t0.Add(70*time.Second), counter); !slices.Equal(idle, []metainfo.Hash{a}) {
		t.Fatalf("idle %x; want a (b moved data at 50 s)", idle)
	}
	if idle := d.sweep(t0.Add(111*time.Second), counter); !slices.Equal(idle, []metainfo.Hash{b}) {
		t.Fatalf("idle %x; want b, a minute after it last moved", idle)
	}
	if _, held := d.get(a); !held || d.isLive(a) {
		t.Fatal("a torrent put to sleep is no longer held")
	}
}

// Seeded torrents are announced when first held, then every interval,
// live or dormant; one downloading (pinned) is not, and is announced
// again half an interval after its download ends (the download announced
// it seeds).
func TestAnnounceQueue(t *testing.T) {
	a, b := metainfo.Hash{1}, metainfo.Hash{2}
	d := testDormancy(10)
	d.announceSeeds(time.Minute)
	d.hold(a, 0)
	d.hold(b, 1)
	now := time.Now()
	var got []metainfo.Hash
	for ih, ok := d.nextAnnounce(now); ok; ih, ok = d.nextAnnounce(now) {
		got = append(got, ih)
		d.announced(ih, now)
	}
	if !slices.Equal(got, []metainfo.Hash{a, b}) {
		t.Fatalf("announced %x; want a, b as they were held", got)
	}
	d.wake(a, now, true, still) // a download of a
	d.wake(b, now, false, still)
	if ih, ok := d.nextAnnounce(now.Add(59 * time.Second)); ok {
		t.Fatalf("%x announced again before the interval", ih)
	}
	if ih, ok := d.nextAnnounce(now.Add(61 * time.Second)); !ok || ih != b {
		t.Fatalf("after the interval: %x, %v; want b, live and seeding (a downloads)", ih, ok)
	}
	d.announced(b, now.Add(61*time.Second))
	if ih, ok := d.nextAnnounce(now.Add(62 * time.Second)); ok {
		t.Fatalf("%x announced while it downloads", ih)
	}
	ended := now.Add(70 * time.Second)
	d.unpin(a, ended)
	if ih, ok := d.nextAnnounce(ended.Add(29 * time.Second)); ok {
		t.Fatalf("%x announced within half an interval of its download's end", ih)
	}
	if ih, ok := d.nextAnnounce(ended.Add(31 * time.Second)); !ok || ih != a {
		t.Fatalf("half an interval after its download ended: %x, %v; want a", ih, ok)
	}
}

// A sweep over live torrents all busy ends, and puts none to sleep (it
// went round them for ever: each busy one moved to the front, where the
// walk met it again).
func TestDormancySweepAllBusy(t *testing.T) {
	a, b, c := metainfo.Hash{1}, metainfo.Hash{2}, metainfo.Hash{3}
	d := testDormancy(10, a, b, c)
	t0 := time.Unix(1000, 0)
	for _, ih := range []metainfo.Hash{a, b, c} {
		d.wake(ih, t0, true, still)
	}
	busy := func(metainfo.Hash) activity { return activity{connected: true} }
	done := make(chan []metainfo.Hash)
	go func() { done <- d.sweep(t0.Add(time.Hour), busy) }()
	select {
	case idle := <-done:
		if len(idle) != 0 || len(d.liveHashes()) != 3 {
			t.Fatalf("idle %x, live %x; want none idle, all three live", idle, d.liveHashes())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a sweep over busy torrents did not end")
	}
}
