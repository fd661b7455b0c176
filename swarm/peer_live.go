package swarm

import (
	"context"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
)

// The live set of a host's client (dormancy.go): a download is live and
// pinned while it runs; a package seeded from the cache is dormant until a
// peer's handshake or DHT announce wakes it, and sleeps again once idle.
// Its announces to the trackers (that this host seeds it) go on while it
// is dormant, at the trackers' interval, so peers still find it.

// startLiveKeeping starts the client's two goroutines for all its
// torrents: the idle sweep and the dormant torrents' announces.
func (c *Peer) startLiveKeeping() {
	ctx, stop := context.WithCancel(context.Background())
	c.stop = stop
	c.bg.Add(2)
	go func() {
		defer c.bg.Done()
		sweepLive(ctx, c.held.idle, c.sweep)
	}()
	c.held.announceSeeds(seedAnnounceInterval)
	tcl := trackerClient{peerID: c.client.PeerID(), port: c.port, dial: c.trackerDial, log: c.log}
	go func() {
		defer c.bg.Done()
		announceSeeds(ctx, c.nextAnnounce, func(ctx context.Context, ih metainfo.Hash) {
			c.mu.Lock()
			s, ok := c.held.get(ih)
			c.mu.Unlock()
			if ok {
				seedAnnounce(ctx, tcl, s.Trackers, ih)
				c.dht.announceSeed(ctx, ih, c.port)
			}
		}, c.announced)
	}()
}

// Wake makes ih live, as demand for it (an announce at the mirror's
// tracker) calls for; it does nothing for a torrent not held.
func (c *Peer) Wake(ih [20]byte) { c.wakeForPeer(ih) }

// wakeForPeer makes ih live for a peer that asks for it.
func (c *Peer) wakeForPeer(ih metainfo.Hash) (*torrent.Torrent, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, false
	}
	return c.wakeLocked(ih, false)
}

// wakeLocked makes the held torrent ih live, pinned if pin, putting others
// to sleep to make room.
func (c *Peer) wakeLocked(ih metainfo.Hash, pin bool) (*torrent.Torrent, bool) {
	look := func(ih metainfo.Hash) activity { return activityOf(c.torrents[ih]) }
	if t, ok := c.torrents[ih]; ok {
		c.held.wake(ih, time.Now(), pin, look)
		return t, true
	}
	s, held := c.held.get(ih)
	if !held {
		return nil, false
	}
	evict, ok := c.held.wake(ih, time.Now(), pin, look)
	for _, e := range evict {
		c.sleepLocked(e)
	}
	if !ok {
		return nil, false
	}
	t, _ := c.client.AddTorrentOpt(torrent.AddTorrentOpts{InfoHash: s.InfoHash, InfoBytes: s.InfoBytes})
	c.torrents[ih] = t
	if c.policy != nil {
		c.policy.track(ih, t.NumPieces())
	}
	if !pin && !c.completion.isWhole(ih) {
		// A file not recorded whole, or changed since (the storage
		// checks): anacrolix checks its pieces now; record it whole once
		// they all pass, so the next wake need not. Not t.Complete: a
		// small file's check can be over already.
		go c.recordWhenChecked(t, s)
	}
	return t, true
}

// recordWhenChecked records s whole once every piece of t has passed its
// check, unless t is dropped first.
func (c *Peer) recordWhenChecked(t *torrent.Torrent, s Spec) {
	select {
	case <-t.Complete().On():
		if err := c.completion.markWhole(s.InfoHash, c.Path(s.File)); err != nil {
			c.log.Warn("piece completion", "file", s.File, "err", err)
		}
	case <-t.Closed():
	}
}

// sleepLocked drops the live torrent ih from anacrolix; the caller has
// made it dormant (or forgotten it) in held.
func (c *Peer) sleepLocked(ih metainfo.Hash) {
	t, ok := c.torrents[ih]
	if !ok {
		return
	}
	complete := t.Complete().Bool()
	t.Drop()
	delete(c.torrents, ih)
	if c.policy != nil {
		c.policy.untrack(ih)
	}
	s, held := c.held.get(ih)
	if !held {
		return // forgotten: Remove or a failed download deletes the rest
	}
	if err := c.completion.sleeping(ih, complete, c.Path(s.File)); err != nil {
		c.log.Warn("piece completion", "file", s.File, "err", err)
	}
}

// unpin ends a download's hold on ih's live torrent.
func (c *Peer) unpin(ih metainfo.Hash) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.held.unpin(ih, time.Now())
}

// sweep puts the live torrents idle for long enough to sleep, and says
// how many.
func (c *Peer) sweep(now time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0
	}
	idle := c.held.sweep(now, func(ih metainfo.Hash) activity { return activityOf(c.torrents[ih]) })
	for _, ih := range idle {
		c.sleepLocked(ih)
	}
	return len(idle)
}

func (c *Peer) nextAnnounce(now time.Time) (metainfo.Hash, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held.nextAnnounce(now)
}

func (c *Peer) announced(ih metainfo.Hash, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.held.announced(ih, now)
}
