package swarm

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/anacrolix/dht/v2"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/tracker"
)

// tpm, not anacrolix, tells the trackers what a client seeds: anacrolix
// announces a torrent only while it is live, and "stopped" when it is
// dropped, so a torrent going dormant would take its seeder off the
// trackers, and a dormant one would never be announced. One goroutine per
// client announces every torrent it holds and does not download, live or
// dormant: each when first held, half an interval after a download of it
// ends, then once every seedAnnounceInterval, at most seedAnnounceRate a
// second in all. That is what anacrolix paid for each torrent on its own
// (an announce per tracker interval), paid in order on one goroutine. A
// repository that has its own tracker needs none of it: the tracker names
// it in every answer.

// Pacing of the seeded torrents' announces.
const (
	// seedAnnounceInterval is how often each seeded torrent is announced: the
	// built-in tracker's interval (it forgets a peer after two), and
	// within opentracker's 30 minutes.
	seedAnnounceInterval = 10 * time.Minute
	// seedAnnounceRate bounds the announces a second, whatever the
	// number of torrents: 100,000 take 17 minutes.
	seedAnnounceRate = 100
	// announceTimeout bounds one announce to one tracker.
	announceTimeout = 10 * time.Second
	// announceIdlePoll is how often an announcer with nothing due looks
	// again for torrents newly due.
	announceIdlePoll = time.Second
)

// announceQueue orders the seeded torrents' announces in three FIFOs:
// fresh holds those newly held (at a start: the trackers may have
// forgotten them while the client was down), due at once; rested those
// whose download ended, due half an interval after (the download told the
// trackers: announcing thousands again at once, as a transaction's
// downloads end, cost a host more CPU than anything else at rest); later
// those announced, due an interval after. Each is in the order things happened, so each is sorted
// by when it is due. Its client holds the lock.
type announceQueue struct {
	interval             time.Duration
	fresh, rested, later deque
	queued               map[metainfo.Hash]bool
}

type dueAnnounce struct {
	ih  metainfo.Hash
	due time.Time
}

func newAnnounceQueue(interval time.Duration) *announceQueue {
	return &announceQueue{interval: interval, queued: make(map[metainfo.Hash]bool)}
}

// held queues ih, held dormant from now, unless it is queued already.
func (q *announceQueue) held(ih metainfo.Hash, now time.Time) {
	if !q.queued[ih] {
		q.queued[ih] = true
		q.fresh.push(dueAnnounce{ih, now})
	}
}

// slept queues ih half an interval after now (its download ended, or it
// went dormant), unless it is queued already.
func (q *announceQueue) slept(ih metainfo.Hash, now time.Time) {
	if !q.queued[ih] {
		q.queued[ih] = true
		q.rested.push(dueAnnounce{ih, now.Add(q.interval / 2)})
	}
}

// next takes the announce due first, if it is due at now; seeding says
// whether a torrent still is (one dropped, or downloading, leaves the
// queue; it is queued again when its download ends).
func (q *announceQueue) next(now time.Time, seeding func(metainfo.Hash) bool) (metainfo.Hash, bool) {
	for {
		var d *deque
		for _, c := range []*deque{&q.fresh, &q.rested, &q.later} {
			if !c.empty() && (d == nil || c.head().due.Before(d.head().due)) {
				d = c
			}
		}
		if d == nil || d.head().due.After(now) {
			return metainfo.Hash{}, false
		}
		a := d.pop()
		if seeding(a.ih) {
			return a.ih, true
		}
		delete(q.queued, a.ih)
	}
}

// announced queues ih again, an interval after now.
func (q *announceQueue) announced(ih metainfo.Hash, now time.Time) {
	q.later.push(dueAnnounce{ih, now.Add(q.interval)})
}

// deque is a FIFO of announces.
type deque struct {
	items []dueAnnounce
	first int
}

func (d *deque) empty() bool        { return d.first == len(d.items) }
func (d *deque) head() dueAnnounce  { return d.items[d.first] }
func (d *deque) push(a dueAnnounce) { d.items = append(d.items, a) }
func (d *deque) pop() (a dueAnnounce) {
	a, d.first = d.items[d.first], d.first+1
	if d.first > len(d.items)/2 && d.first > 64 {
		d.items, d.first = append(d.items[:0], d.items[d.first:]...), 0
	}
	return a
}

// announceSeeds runs a client's announces until ctx ends: next gives the
// torrent due (false: none), announce announces it, and done queues it
// again.
func announceSeeds(ctx context.Context, next func(time.Time) (metainfo.Hash, bool), announce func(context.Context, metainfo.Hash), done func(metainfo.Hash, time.Time)) {
	for {
		ih, ok := next(time.Now())
		wait := time.Second / seedAnnounceRate
		if ok {
			announce(ctx, ih)
			done(ih, time.Now())
		} else {
			wait = announceIdlePoll
		}
		if !sleepCtx(ctx, wait) {
			return
		}
	}
}

// sleepCtx waits d; false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// seedAnnounce tells each tracker that this client, at port, seeds ih;
// it asks for no peers: a seed needs none.
func seedAnnounce(ctx context.Context, c trackerClient, trackers []string, ih metainfo.Hash) {
	for _, url := range trackers {
		actx, cancel := context.WithTimeout(ctx, announceTimeout)
		_, err := tracker.Announce{
			TrackerUrl:  url,
			Context:     actx,
			DialContext: c.dial,
			Request: tracker.AnnounceRequest{
				InfoHash: ih, PeerId: c.peerID, Left: 0, NumWant: 0, Port: uint16(c.port),
			},
		}.Do()
		cancel()
		if err != nil {
			c.log.Debug("announcing a seeded torrent", "tracker", url, "infohash", ih.HexString(), "err", err)
		}
	}
}

// trackerClient is what an announce says of the client it is made for.
type trackerClient struct {
	peerID [20]byte
	port   int
	dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	log    *slog.Logger
}

// announceSeed announces this node, at port, as a peer of ih on the DHT.
func (n *dhtNode) announceSeed(ctx context.Context, ih metainfo.Hash, port int) {
	if n == nil {
		return
	}
	a, err := n.server.AnnounceTraversal(ih, dht.AnnouncePeer(dht.AnnouncePeerOpts{Port: port}))
	if err != nil {
		return
	}
	defer a.Close()
	wait := time.NewTimer(dhtAnnounceWait)
	defer wait.Stop()
	for {
		select {
		case _, ok := <-a.Peers:
			if !ok {
				return
			}
		case <-ctx.Done():
			return
		case <-wait.C:
			return
		}
	}
}
