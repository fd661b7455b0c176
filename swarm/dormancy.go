package swarm

import (
	"container/list"
	"context"
	"runtime/debug"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
)

// A torrent in anacrolix costs memory (its pieces, its storage, its
// request state), goroutines, announces and CPU, whether anyone wants it or
// not: a repository of 100,000 packages held 2.8 GB, a host seeding 3,000
// a few percent of a core. So a client keeps most of what it holds
// dormant: a map entry (infohash → what it takes to add the torrent again),
// no goroutine, no announce by anacrolix. Demand wakes a torrent: an
// incoming handshake that names it (handshake.go), an announce at the
// server's own tracker, a DHT announce. Live torrents that move no data for
// a while go dormant again, and the live set has a cap: waking one more
// puts the least recently used to sleep, so a flood of demand for the
// whole catalogue churns the cap, not the memory.

// Defaults of the live set.
const (
	// defaultLiveTorrents caps the live torrents that are not pinned. A
	// live torrent of a small package costs anacrolix about 30 KB.
	defaultLiveTorrents = 1000
	// defaultIdleAfter is how long a live torrent may move no data before
	// it goes dormant: long enough that a host's download, which sends
	// requests within milliseconds of its handshake, never meets a torrent
	// put to sleep under it (and one with a peer connected never sleeps);
	// short, since waking costs little (a torrent added with its
	// completion known) and a host at rest should hold none.
	defaultIdleAfter = 30 * time.Second
)

// dormancy is the bookkeeping of which torrents are live; the client it
// belongs to adds and drops them in anacrolix and holds the lock.
type dormancy[T any] struct {
	limit int
	idle  time.Duration
	all   map[metainfo.Hash]T // every torrent held, live or dormant
	live  map[metainfo.Hash]*list.Element
	order list.List // of *liveTorrent, least recently used at the back
	// pinnedLive counts the live torrents with pins.
	pinnedLive int
	// announces, when the client announces its dormant torrents, orders
	// them (announcer.go); nil otherwise.
	announces *announceQueue
}

// liveTorrent is one live torrent's use.
type liveTorrent struct {
	ih   metainfo.Hash
	used time.Time // woken, or last seen moving data
	// moved is the data bytes it had moved when last looked at.
	moved int64
	// pins are reasons it must stay live (a download, a check of its
	// pieces): it is neither evicted nor put to sleep while pinned.
	pins int
}

func newDormancy[T any](limit int, idle time.Duration) *dormancy[T] {
	if limit <= 0 {
		limit = defaultLiveTorrents
	}
	if idle <= 0 {
		idle = defaultIdleAfter
	}
	return &dormancy[T]{limit: limit, idle: idle, all: make(map[metainfo.Hash]T), live: make(map[metainfo.Hash]*list.Element)}
}

// hold records v as ih's; it stays live if it is. A torrent newly held
// is dormant, and announced as seeded (unless a download pins it first).
func (d *dormancy[T]) hold(ih metainfo.Hash, v T) {
	if _, held := d.all[ih]; !held && d.announces != nil {
		d.announces.held(ih, time.Now())
	}
	d.all[ih] = v
}

// announceSeeds makes the torrents held announced as seeded
// (announceQueue): each when held, or half an interval after a download of
// it ends, and every interval after, live or dormant; never while it
// downloads (pinned: the download announces itself).
func (d *dormancy[T]) announceSeeds(interval time.Duration) {
	d.announces = newAnnounceQueue(interval)
	for ih := range d.all {
		d.announces.held(ih, time.Now())
	}
}

// nextAnnounce is the seeded torrent whose announce is due at now, if any.
func (d *dormancy[T]) nextAnnounce(now time.Time) (metainfo.Hash, bool) {
	if d.announces == nil {
		return metainfo.Hash{}, false
	}
	return d.announces.next(now, d.isSeeding)
}

// announced queues ih's next announce, if it is still seeded.
func (d *dormancy[T]) announced(ih metainfo.Hash, now time.Time) {
	if d.isSeeding(ih) {
		d.announces.announced(ih, now)
	} else {
		delete(d.announces.queued, ih)
	}
}

// isSeeding says whether ih is held and not downloading.
func (d *dormancy[T]) isSeeding(ih metainfo.Hash) bool {
	if _, held := d.all[ih]; !held {
		return false
	}
	e, live := d.live[ih]
	return !live || e.Value.(*liveTorrent).pins == 0
}

// get is what is held for ih.
func (d *dormancy[T]) get(ih metainfo.Hash) (T, bool) {
	v, ok := d.all[ih]
	return v, ok
}

// forget stops holding ih; it says whether ih was live (the caller drops
// the torrent).
func (d *dormancy[T]) forget(ih metainfo.Hash) (wasLive bool) {
	delete(d.all, ih)
	return d.sleep(ih)
}

func (d *dormancy[T]) isLive(ih metainfo.Hash) bool {
	_, ok := d.live[ih]
	return ok
}

// activity is what a live torrent does, as its client sees it.
type activity struct {
	moved int64 // data bytes sent and received so far
	// connected says a peer is connected: a request of its may be being
	// served. anacrolix v1.59.1 panics when the torrent of a request it
	// is reading is dropped (peerconn.go servePeerRequest), so a torrent
	// with peers is never put to sleep.
	connected bool
}

// busySince says whether lt was in use (a) since it was last looked at.
func (lt *liveTorrent) busySince(a activity) bool { return a.connected || a.moved != lt.moved }

// wake makes ih live at now, pinned if pin, and returns the live torrents
// to put to sleep to make room: the least recently used that are not
// pinned, have no peer and moved no data (what look reports) since last
// looked at; one busy counts as used now instead. A wake that is not a pin
// finds no room when every live torrent is pinned or busy, and is refused
// (ok false); a pin always gets in, so a download never waits for seeding.
func (d *dormancy[T]) wake(ih metainfo.Hash, now time.Time, pin bool, look func(metainfo.Hash) activity) (evict []metainfo.Hash, ok bool) {
	if e, live := d.live[ih]; live {
		lt := e.Value.(*liveTorrent)
		lt.used = now
		if pin {
			if lt.pins == 0 {
				d.pinnedLive++
			}
			lt.pins++
		}
		d.order.MoveToFront(e)
		return nil, true
	}
	if _, held := d.all[ih]; !held {
		return nil, false
	}
	// A pin needs no room. Each live torrent is looked at once: one found
	// busy goes to the front, where this walk does not reach it again.
	e := d.order.Back()
	for looked := len(d.live); !pin && e != nil && looked > 0 && d.unpinned() >= d.limit; looked-- {
		lt, prev := e.Value.(*liveTorrent), e.Prev()
		switch a := look(lt.ih); {
		case lt.pins > 0:
		case lt.busySince(a):
			lt.moved, lt.used = a.moved, now
			d.order.MoveToFront(e)
		default:
			evict = append(evict, lt.ih)
			d.sleep(lt.ih)
		}
		e = prev
	}
	if !pin && d.unpinned() >= d.limit {
		return evict, false
	}
	lt := &liveTorrent{ih: ih, used: now, moved: look(ih).moved}
	if pin {
		lt.pins = 1
		d.pinnedLive++
	}
	d.live[ih] = d.order.PushFront(lt)
	return evict, true
}

// unpinned counts the live torrents that count against the limit.
func (d *dormancy[T]) unpinned() int { return len(d.live) - d.pinnedLive }

// unpin takes back one pin of ih: it counts against the limit again, and
// goes to sleep once idle.
func (d *dormancy[T]) unpin(ih metainfo.Hash, now time.Time) {
	if e, ok := d.live[ih]; ok {
		lt := e.Value.(*liveTorrent)
		if lt.pins == 1 {
			d.pinnedLive--
			if d.announces != nil {
				d.announces.slept(ih, now) // the download announced it seeds
			}
		}
		lt.pins = max(0, lt.pins-1)
		lt.used = now
		d.order.MoveToFront(e)
	}
}

// sleep makes ih dormant; it says whether it was live.
func (d *dormancy[T]) sleep(ih metainfo.Hash) bool {
	e, ok := d.live[ih]
	if !ok {
		return false
	}
	if e.Value.(*liveTorrent).pins > 0 {
		d.pinnedLive--
	}
	d.order.Remove(e)
	delete(d.live, ih)
	if _, held := d.all[ih]; held && d.announces != nil {
		d.announces.slept(ih, time.Now())
	}
	return true
}

// sweep looks at what each live torrent does (look), counts one busy
// since the last look (a peer connected, data moved) as used now, and
// returns those idle since before now-idle, made dormant: the caller
// drops them from anacrolix.
func (d *dormancy[T]) sweep(now time.Time, look func(metainfo.Hash) activity) (idle []metainfo.Hash) {
	// The walk goes over a copy: a busy torrent moves to the front, and a
	// walk over the list itself met it again, for ever when all were busy.
	elems := make([]*list.Element, 0, len(d.live))
	for e := d.order.Back(); e != nil; e = e.Prev() {
		elems = append(elems, e)
	}
	for _, e := range elems {
		lt := e.Value.(*liveTorrent)
		if a := look(lt.ih); lt.busySince(a) {
			lt.moved, lt.used = a.moved, now
			d.order.MoveToFront(e)
		} else if lt.pins == 0 && now.Sub(lt.used) >= d.idle {
			idle = append(idle, lt.ih)
			d.sleep(lt.ih)
		}
	}
	return idle
}

// liveHashes are the live torrents, most recently used first.
func (d *dormancy[T]) liveHashes() []metainfo.Hash {
	out := make([]metainfo.Hash, 0, len(d.live))
	for e := d.order.Front(); e != nil; e = e.Next() {
		out = append(out, e.Value.(*liveTorrent).ih)
	}
	return out
}

// releaseAfter is how many torrents put to sleep at once make a sweep hand
// the memory they held back to the system: the runtime would take minutes
// (a host that installed 3,000 packages stayed at 137 MB long after they
// all slept).
const releaseAfter = 100

// sweepLive runs sweep every quarter of idle (within 1 s to 30 s) until
// ctx ends: one goroutine for all of a client's torrents. sweep says how
// many it put to sleep. The sweep after one that released memory releases
// it again: anacrolix lets go of a dropped torrent's connections and
// buffers on goroutines of its own, after the drop returns (a host at
// rest held 4 MB freed but not handed back).
func sweepLive(ctx context.Context, idle time.Duration, sweep func(time.Time) int) {
	every := min(30*time.Second, max(time.Second, idle/4))
	tick := time.NewTicker(every)
	defer tick.Stop()
	again := false
	for {
		select {
		case now := <-tick.C:
			slept := sweep(now)
			if slept >= releaseAfter || again {
				debug.FreeOSMemory()
			}
			again = slept >= releaseAfter
		case <-ctx.Done():
			return
		}
	}
}

// activityOf is what t does (nothing for none).
func activityOf(t *torrent.Torrent) activity {
	if t == nil {
		return activity{}
	}
	st := t.Stats()
	return activity{moved: st.BytesWrittenData.Int64() + st.BytesReadData.Int64(), connected: len(t.PeerConns()) > 0}
}
