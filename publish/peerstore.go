package publish

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// The peer store answers an announce in time that grows with numwant and a
// scrape in time that grows with the hashes named, never with a swarm's
// size: each torrent keeps its seeder and leecher counts as peers come, change
// and go, and its addresses in a slice that a partial shuffle samples; peers
// expire from a list kept in the order they were last seen, so expiry
// touches only the peers that expire. (Scanning a swarm per announce made one
// of 68,500 peers cost 47 ms, and a scrape naming it 200 times 2.9 s.)

// peerKey is one peer of one torrent: its address and its peer id. Keyed by
// both, a host behind the same address (a NAT) that announces another's
// port with its own id adds an entry of its own, and its "stopped" removes
// only that.
type peerKey struct {
	addr netip.AddrPort
	id   [20]byte
}

// peerInfo is one entry of the store: one peer of one torrent.
type peerInfo struct {
	ih     [20]byte
	key    peerKey
	seen   time.Time
	seeder bool
	gone   bool // removed: the address's order drops it lazily
	// The store's list by seen, oldest first: what expires next is first.
	older, newer *peerInfo
}

// endpoint is one address:port of one torrent and how many entries (peer
// ids) it has. Answers name each endpoint once; it counts as a seeder when
// one of its entries is.
type endpoint struct {
	addr    netip.AddrPort
	entries int
	seeds   int
	slot    int // in swarm.list
}

// swarm is one torrent's peers.
type swarm struct {
	peers     map[peerKey]*peerInfo
	endpoints map[netip.AddrPort]*endpoint
	// list holds the endpoints in no order, for sampling by index; one
	// leaves by swapping the last into its slot.
	list    []*endpoint
	seeders int // endpoints that count as seeders; the rest are leechers
}

// ipPeers are the entries of one address, the order they came in (with
// entries since removed, dropped lazily), and its place among the addresses
// counted by how many entries they hold.
type ipPeers struct {
	ip    netip.Addr
	n     int
	order []*peerInfo
	slot  int // in PeerStore.byCount[n]
}

// PeerStore keeps the peers announced for each torrent. Peers that stop
// announcing expire after ttl (twice the announce interval, so one missed
// announce is forgiven). It never refuses a peer: when an address holds
// maxPeersPerIP entries its first goes, and when the store holds maxPeers
// the oldest entry of the address holding most goes, so a flood from a
// few addresses cannot lock anybody else out.
type PeerStore struct {
	ttl time.Duration
	now func() time.Time

	// The caps (maxPeers and maxPeersPerIP; tests make them small).
	maxPeers, maxPerIP int

	mu       sync.Mutex
	torrents map[[20]byte]*swarm
	byIP     map[netip.Addr]*ipPeers
	// byCount[n] are the addresses holding n entries, so the busiest is
	// found without a scan; most is the highest n with any.
	byCount        [][]*ipPeers
	most           int
	oldest, newest *peerInfo // the list by seen
	count          int
	changed        bool // since the last Save
}

// NewPeerStore returns an empty store whose peers expire after ttl.
func NewPeerStore(ttl time.Duration, now func() time.Time) *PeerStore {
	if now == nil {
		now = time.Now
	}
	return &PeerStore{ttl: ttl, now: now, maxPeers: maxPeers, maxPerIP: maxPeersPerIP,
		torrents: make(map[[20]byte]*swarm), byIP: make(map[netip.Addr]*ipPeers)}
}

// Announce records (or, for event "stopped", forgets) a peer. Only the
// peer itself (the same peer id from the same address) can make it forget
// the peer.
func (s *PeerStore) Announce(ih [20]byte, id [20]byte, addr netip.AddrPort, event string, left int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.expireLocked(now)
	key := peerKey{addr, id}
	if event == "stopped" {
		if sw := s.torrents[ih]; sw != nil && sw.peers[key] != nil {
			s.removeLocked(sw.peers[key])
		}
		return
	}
	s.putLocked(ih, key, now, left == 0)
}

// putLocked records a peer as seen at seen, adding it when it is new.
func (s *PeerStore) putLocked(ih [20]byte, key peerKey, seen time.Time, seeder bool) {
	s.changed = true
	if sw := s.torrents[ih]; sw != nil {
		if p := sw.peers[key]; p != nil {
			if p.seeder != seeder {
				sw.setSeederLocked(p, seeder)
			}
			s.unlinkLocked(p)
			p.seen = seen
			s.linkLocked(p)
			return
		}
	}
	if ipp := s.byIP[key.addr.Addr()]; ipp != nil && ipp.n >= s.maxPerIP {
		s.evictOldestLocked(ipp)
	} else if s.count >= s.maxPeers {
		s.evictOldestLocked(s.busiestLocked())
	}
	sw := s.torrents[ih]
	if sw == nil {
		sw = &swarm{peers: make(map[peerKey]*peerInfo), endpoints: make(map[netip.AddrPort]*endpoint)}
		s.torrents[ih] = sw
	}
	p := &peerInfo{ih: ih, key: key, seen: seen}
	sw.peers[key] = p
	ep := sw.endpoints[key.addr]
	if ep == nil {
		ep = &endpoint{addr: key.addr, slot: len(sw.list)}
		sw.endpoints[key.addr] = ep
		sw.list = append(sw.list, ep)
	}
	ep.entries++
	sw.setSeederLocked(p, seeder)
	s.linkLocked(p)

	ipp := s.byIP[key.addr.Addr()]
	if ipp == nil {
		ipp = &ipPeers{ip: key.addr.Addr()}
		s.byIP[ipp.ip] = ipp
	}
	s.recountLocked(ipp, ipp.n+1)
	ipp.order = append(ipp.order, p)
	if len(ipp.order) > 2*ipp.n+16 {
		// Many came and went: drop what went from the order.
		ipp.order = slices.DeleteFunc(ipp.order, func(p *peerInfo) bool { return p.gone })
	}
	s.count++
}

// setSeederLocked sets p's seeder flag and its endpoint's count, and the
// swarm's when the endpoint turns seeder or leecher.
func (sw *swarm) setSeederLocked(p *peerInfo, seeder bool) {
	ep := sw.endpoints[p.key.addr]
	was := ep.seeds > 0
	if p.seeder {
		ep.seeds--
	}
	p.seeder = seeder
	if seeder {
		ep.seeds++
	}
	if is := ep.seeds > 0; is != was {
		if is {
			sw.seeders++
		} else {
			sw.seeders--
		}
	}
}

func (s *PeerStore) removeLocked(p *peerInfo) {
	sw := s.torrents[p.ih]
	sw.setSeederLocked(p, false)
	delete(sw.peers, p.key)
	ep := sw.endpoints[p.key.addr]
	ep.entries--
	if ep.entries == 0 {
		last := sw.list[len(sw.list)-1]
		sw.list[ep.slot], last.slot = last, ep.slot
		sw.list[len(sw.list)-1] = nil
		sw.list = sw.list[:len(sw.list)-1]
		delete(sw.endpoints, ep.addr)
	}
	if len(sw.peers) == 0 {
		delete(s.torrents, p.ih)
	}
	s.unlinkLocked(p)
	p.gone = true
	if ipp := s.byIP[p.key.addr.Addr()]; ipp != nil {
		s.recountLocked(ipp, ipp.n-1)
		if ipp.n == 0 {
			delete(s.byIP, ipp.ip)
		}
	}
	s.count--
	s.changed = true
}

// recountLocked moves ipp to the addresses holding n entries.
func (s *PeerStore) recountLocked(ipp *ipPeers, n int) {
	if ipp.n > 0 {
		b := s.byCount[ipp.n]
		last := b[len(b)-1]
		b[ipp.slot], last.slot = last, ipp.slot
		b[len(b)-1] = nil
		s.byCount[ipp.n] = b[:len(b)-1]
	}
	ipp.n = n
	if n > 0 {
		for len(s.byCount) <= n {
			s.byCount = append(s.byCount, nil)
		}
		ipp.slot = len(s.byCount[n])
		s.byCount[n] = append(s.byCount[n], ipp)
	}
	s.most = max(s.most, n)
	for s.most > 0 && len(s.byCount[s.most]) == 0 {
		s.most--
	}
}

// linkLocked puts p in the list by seen: at the end, unless it was seen
// before the newest (a peer loaded from the last run).
func (s *PeerStore) linkLocked(p *peerInfo) {
	after := s.newest
	for after != nil && after.seen.After(p.seen) {
		after = after.older
	}
	p.older = after
	if after == nil {
		p.newer, s.oldest = s.oldest, p
	} else {
		p.newer, after.newer = after.newer, p
	}
	if p.newer == nil {
		s.newest = p
	} else {
		p.newer.older = p
	}
}

func (s *PeerStore) unlinkLocked(p *peerInfo) {
	if p.older == nil {
		s.oldest = p.newer
	} else {
		p.older.newer = p.newer
	}
	if p.newer == nil {
		s.newest = p.older
	} else {
		p.newer.older = p.older
	}
	p.older, p.newer = nil, nil
}

// expireLocked removes the peers not seen within the ttl: the first of the
// list by seen, so the work is the peers that expire and no more.
func (s *PeerStore) expireLocked(now time.Time) {
	for s.oldest != nil && now.Sub(s.oldest.seen) > s.ttl {
		s.removeLocked(s.oldest)
	}
}

// evictOldestLocked removes the entry of ipp that came first.
func (s *PeerStore) evictOldestLocked(ipp *ipPeers) {
	for ipp != nil && len(ipp.order) > 0 {
		p := ipp.order[0]
		ipp.order[0] = nil
		ipp.order = ipp.order[1:]
		if !p.gone {
			s.removeLocked(p)
			return
		}
	}
}

// busiestLocked is an address holding the most entries.
func (s *PeerStore) busiestLocked() *ipPeers {
	if s.most == 0 {
		return nil
	}
	return s.byCount[s.most][0]
}

// Peers returns up to max live peers of ih other than exclude (the
// announcing peer), each address once and picked at random, and how many
// live peers are seeders and leechers.
func (s *PeerStore) Peers(ih [20]byte, exclude netip.AddrPort, max int) (peers []netip.AddrPort, seeders, leechers int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(s.now())
	sw := s.torrents[ih]
	if sw == nil {
		return nil, 0, 0
	}
	// A partial Fisher–Yates shuffle of the list: its first k are a
	// uniform sample, one more than asked in case the announcer is in it.
	k := min(len(sw.list), max+1)
	for i := 0; i < k && len(peers) < max; i++ {
		j := i + rand.IntN(len(sw.list)-i)
		a, b := sw.list[i], sw.list[j]
		sw.list[i], sw.list[j], a.slot, b.slot = b, a, j, i
		if b.addr != exclude {
			peers = append(peers, b.addr)
		}
	}
	return peers, sw.seeders, len(sw.list) - sw.seeders
}

// Count is how many live peers of ih are seeders and leechers, each
// address once.
func (s *PeerStore) Count(ih [20]byte) (seeders, leechers int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(s.now())
	if sw := s.torrents[ih]; sw != nil {
		return sw.seeders, len(sw.list) - sw.seeders
	}
	return 0, 0
}

// Forget drops every torrent that keep rejects, when a generation removes
// packages.
func (s *PeerStore) Forget(keep func([20]byte) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(s.now())
	for ih, sw := range s.torrents {
		if !keep(ih) {
			for _, p := range sw.peers {
				s.removeLocked(p)
			}
		}
	}
}

// Counts calls fn with the live seeders and leechers of every torrent that
// has peers, each address once, under the lock.
func (s *PeerStore) Counts(fn func(ih [20]byte, seeders, leechers int)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(s.now())
	for ih, sw := range s.torrents {
		fn(ih, sw.seeders, len(sw.list)-sw.seeders)
	}
}

// Torrents is the number of torrents with live peers.
func (s *PeerStore) Torrents() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(s.now())
	return len(s.torrents)
}

// Len is the number of live peers stored.
func (s *PeerStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(s.now())
	return s.count
}

// savedPeer is one peer as the store keeps it across a server restart.
type savedPeer struct {
	InfoHash string    `json:"infohash"`
	Addr     string    `json:"addr"`
	ID       string    `json:"id"`
	Seen     time.Time `json:"seen"`
	Seeder   bool      `json:"seeder"`
}

// Save writes the live peers to path (through a temporary file), so that a
// restarted server can name them at once: a seeding client announces again
// only after the announce interval, and until then a downloader without a
// web seed would find nobody.
func (s *PeerStore) Save(path string) error {
	s.mu.Lock()
	s.expireLocked(s.now())
	out := make([]savedPeer, 0, s.count)
	for p := s.oldest; p != nil; p = p.newer {
		out = append(out, savedPeer{InfoHash: hex.EncodeToString(p.ih[:]), Addr: p.key.addr.String(),
			ID: hex.EncodeToString(p.key.id[:]), Seen: p.seen, Seeder: p.seeder})
	}
	s.changed = false
	s.mu.Unlock()
	raw, err := json.Marshal(out)
	if err != nil {
		return fmt.Errorf("save tracker peers: %w", err)
	}
	// A temporary file of its own: the periodic save and the one at stop
	// may overlap.
	f, err := os.CreateTemp(filepath.Dir(path), ".peers-*")
	if err != nil {
		return fmt.Errorf("save tracker peers: %w", err)
	}
	_, err = f.Write(raw)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("save tracker peers: %w", err)
	}
	return nil
}

// Load adds the peers a previous run saved at path that have not expired,
// each as last seen then, so it expires when it would have. A missing file
// is no error; a damaged one is skipped with the error.
func (s *PeerStore) Load(path string) error {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load tracker peers: %w", err)
	}
	var saved []savedPeer
	if err := json.Unmarshal(raw, &saved); err != nil {
		return fmt.Errorf("load tracker peers from %s: %w", path, err)
	}
	// Oldest first, so each goes to the end of the list by seen (a file of
	// an older release is in no order).
	slices.SortStableFunc(saved, func(a, b savedPeer) int { return a.Seen.Compare(b.Seen) })
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for _, sp := range saved {
		var ih, id [20]byte
		addr, err := netip.ParseAddrPort(sp.Addr)
		if err != nil || now.Sub(sp.Seen) > s.ttl {
			continue
		}
		if n, err := hex.Decode(ih[:], []byte(sp.InfoHash)); err != nil || n != 20 {
			continue
		}
		hex.Decode(id[:], []byte(sp.ID))
		seen := sp.Seen
		if seen.After(now) {
			seen = now // a clock set back since: seen now, not in the future
		}
		s.putLocked(ih, peerKey{addr, id}, seen, sp.Seeder)
	}
	return nil
}

// SaveIfChanged saves the store to path when a peer came, changed or went
// since the last save: called every few seconds, it keeps what a restart
// after a crash (kill -9) finds within those seconds of the truth.
func (s *PeerStore) SaveIfChanged(path string) error {
	s.mu.Lock()
	changed := s.changed
	s.mu.Unlock()
	if !changed {
		return nil
	}
	return s.Save(path)
}
