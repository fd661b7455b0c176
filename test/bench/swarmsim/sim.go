package main

import (
	"errors"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"

	"tpm/swarm"
)

// chunk is BitTorrent's request size: queues are counted in chunks, as
// anacrolix and the repository's reqq count them.
const chunk = 16 << 10

// titForTat is how far a downloading anacrolix client lets a connection's
// uploads run ahead of its downloads (PeerConn.uploadAllowed: 100 KiB),
// once per torrent; the model carries the three torrents on one link.
const titForTat = 100 << 10

// Params is one simulated run: the network, the fleet and the policy.
type Params struct {
	N     int
	Sizes []int64 // bytes of each package
	U, Up float64 // bit/s: the repository's uplink, and each host's up and down link
	// Eff is the share of a link's bits that carry piece data (TCP/IP
	// headers; tbf shapes whole frames).
	Eff float64
	// CPU is what the machine can move in piece data per second, for all
	// hosts together (2 cores ran the namespace runs); 0 is unlimited:
	// every host its own machine.
	CPU float64
	// Lat is how long a completed piece takes to count at the neighbours
	// (verify, HAVE on the wire, their request update).
	Lat float64
	Dt  float64 // timestep, s
	// PeerQueue is a host's outstanding requests on a peer connection, in
	// chunks.
	PeerQueue int
	Conns     int // peer connections per host (anacrolix: 50 per torrent)
	// Fixed is added to every finish: the tracker and handshakes before the
	// first byte, the sha256 check, sync and unpacking after the last.
	Fixed float64
	// MaxTime stops the run, with hosts unfinished; 0 is 50 times the
	// bound plus 10 minutes.
	MaxTime float64
	Policy  Policy
	Seed    uint64
}

// Policy is what tpm (or the model's alternatives) decides.
type Policy struct {
	Name string
	// OriginQueue is a host's queue at the repository per torrent, in
	// chunks, when the tracker counted d downloaders at its announce.
	OriginQueue func(d int) int
	// SuperSeed makes the repository serve a piece a second time only
	// after it has served every piece once.
	SuperSeed bool
	// WebSeedStall is how long a torrent may get nothing before the web
	// seed joins; 0 means never.
	WebSeedStall float64
	// OriginConns is how many hosts the repository's seeder takes at once
	// (anacrolix's EstablishedConnsPerTorrent, 50); the others wait for a
	// slot that a finished host frees.
	OriginConns int
	// MaxN, when set, is the largest fleet the policy is run for.
	MaxN int
	// Lat, when set, replaces Params.Lat: not a policy but the
	// sensitivity of a projection to the fitted reaction time.
	Lat float64
}

// tpmQueue is swarm.repositoryReqq: 64/d², at least 2.
func tpmQueue(d int) int { return max(2, 64/(max(1, d)*max(1, d))) }

// Result is what a run measured.
type Result struct {
	Finish      []float64 // per host, sorted, s
	OriginSent  int64     // piece bytes the repository sent, BitTorrent and web seed
	WebSent     int64     // of which through the web seed
	PeerSent    int64     // piece bytes hosts sent to hosts
	Received    int64     // piece bytes hosts received
	WebSeeds    int       // torrents (on all hosts) where the web seed joined
	Stolen      int       // requests moved from the repository to a peer
	Wasted      int64     // piece bytes received that the host had by then
	Unfinished  int       // hosts still downloading at MaxTime
	S           int64     // bytes of the set
	Bound       float64   // s
	Last, Pct50 float64
}

const (
	kindPeer = iota
	kindOrigin
	kindWeb
)

type link struct {
	up, down  int32 // node ids; the repository is node N
	rev       int32 // the link the other way, -1 for the repository's
	kind      uint8
	torrent   int8 // a web seed's torrent
	dead      bool
	exhausted bool  // the last scan found fewer candidates than room
	choked    bool  // the uploader refuses new requests (tit for tat)
	cap       int32 // chunks
	queued    int32 // chunks in queue
	qbytes    int64 // bytes in queue
	queue     []int32
	head      int64 // bytes of queue[0] received
	sent      int64
	offer     float64
}

type sim struct {
	p                       Params
	n, np, w                int // hosts, pieces, bitset words
	size                    []int64
	chunks                  []int32
	torrentOf               []int8
	have, shown, pending    []uint64  // n×w bitsets
	haveT, pendingT         []uint64  // the same by piece (np×wn), for deliverHaves
	wn                      int       // words of a by-piece row
	avail                   []uint8   // np×n (by piece, so that a HAVE touches one row): neighbours and the repository showing the piece
	tie                     []uint16  // n×np: each host's random order among equally rare pieces
	in, out                 [][]int32 // link ids by downloader and uploader
	outDown                 [][]int32 // out's downloaders, for deliverHaves
	links                   []link
	left                    []int
	tleft                   [][]int
	progress                [][]float64
	web                     [][]bool
	originLink              []int32
	done                    []bool
	finish                  []float64
	originAssigned          []uint64
	originAssignedCount     int
	originSlots, nextWaiter int
	ring                    [][][2]int32
	latSteps                int
	now                     float64
	res                     Result
}

// bound is test/bench/swarm's lower bound, max(S/U, N·S/(U+N·u), S/u).
func bound(S int64, n int, U, u float64) float64 {
	s, N := float64(S*8), float64(n)
	return max(s/U, N*s/(U+N*u), s/u)
}

// Run simulates p until every host has the set.
func Run(p Params) (Result, error) {
	if p.N < 1 || len(p.Sizes) == 0 || p.U <= 0 || p.Up <= 0 || p.Dt <= 0 || p.PeerQueue < 1 || p.Policy.OriginQueue == nil || p.Policy.OriginConns < 1 {
		return Result{}, errors.New("swarmsim: incomplete parameters")
	}
	if p.Conns > 254 {
		return Result{}, errors.New("swarmsim: availability counts fit a byte: at most 254 connections")
	}
	s := newSim(p)
	limit := p.MaxTime
	if limit <= 0 {
		limit = 50*s.res.Bound + 600
	}
	for step := 0; ; step++ {
		if s.nDone() == s.n {
			break
		}
		if s.now > limit {
			// The hosts left are counted and given the limit as their
			// finish: the last finish is then a lower bound.
			for h := range s.n {
				if !s.done[h] {
					s.res.Unfinished++
					s.finish[h] = s.now
				}
			}
			break
		}
		s.deliverHaves(step)
		s.choke()
		s.refill()
		s.transfer(step)
		s.now += p.Dt
		s.webSeeds()
	}
	// Pieces under way when the last host finished (one a host got from
	// the web seed while a peer still sent it) are wasted too.
	for i := range s.links {
		s.res.Wasted += s.links[i].head
	}
	s.res.Finish = slices.Clone(s.finish)
	slices.Sort(s.res.Finish)
	s.res.Last = s.res.Finish[s.n-1]
	s.res.Pct50 = s.res.Finish[s.n/2]
	return s.res, nil
}

func newSim(p Params) *sim {
	rng := rand.New(rand.NewPCG(p.Seed, 0x5eed))
	s := &sim{p: p, n: p.N}
	for t, sz := range p.Sizes {
		pl := swarm.PieceLength(sz)
		for off := int64(0); off < sz; off += pl {
			b := min(pl, sz-off)
			s.size = append(s.size, b)
			s.chunks = append(s.chunks, int32((b+chunk-1)/chunk))
			s.torrentOf = append(s.torrentOf, int8(t))
		}
		s.res.S += sz
	}
	s.np = len(s.size)
	s.w = (s.np + 63) / 64
	s.res.Bound = bound(s.res.S, p.N, p.U, p.Up)
	n, np, w := s.n, s.np, s.w
	s.have, s.shown, s.pending = make([]uint64, n*w), make([]uint64, n*w), make([]uint64, n*w)
	s.avail = make([]uint8, n*np)
	s.wn = (n + 63) / 64
	s.haveT, s.pendingT = make([]uint64, np*s.wn), make([]uint64, np*s.wn)
	// anacrolix breaks ties in availability by a random permutation of
	// each torrent's pieces (Torrent.pieceRequestOrder), made per host.
	s.tie = make([]uint16, n*np)
	for i := range s.tie {
		s.tie[i] = uint16(rng.Uint32())
	}
	s.in, s.out, s.outDown = make([][]int32, n+1), make([][]int32, n+1), make([][]int32, n+1)
	s.left, s.done, s.finish = make([]int, n), make([]bool, n), make([]float64, n)
	s.tleft, s.progress, s.web = make([][]int, n), make([][]float64, n), make([][]bool, n)
	s.originLink = make([]int32, n)
	for h := range n {
		s.left[h] = np
		s.tleft[h] = make([]int, len(p.Sizes))
		for _, t := range s.torrentOf {
			s.tleft[h][t]++
		}
		s.progress[h] = make([]float64, len(p.Sizes))
		s.web[h] = make([]bool, len(p.Sizes))
		s.originLink[h] = -1
	}
	s.originAssigned = make([]uint64, w)
	// A piece completed in one step counts at the neighbours latSteps
	// later, at least the next.
	lat := p.Lat
	if p.Policy.Lat > 0 {
		lat = p.Policy.Lat
	}
	s.latSteps = max(1, int(math.Round(lat/p.Dt)))
	s.ring = make([][][2]int32, s.latSteps+1)

	// Peer connections: hosts dial random others that have room, as
	// tracker answers of 50 random peers would have them do; a fleet no
	// larger than the cap is fully connected.
	conns := min(p.Conns, n-1)
	deg := make([]int, n)
	connected := make(map[[2]int32]bool)
	for i := range n {
		for tries := 0; deg[i] < conns && tries < 8*p.Conns; tries++ {
			j := rng.IntN(n)
			if n-1 <= p.Conns {
				j = (i + 1 + tries) % n
			}
			a, b := int32(min(i, j)), int32(max(i, j))
			if j == i || deg[j] >= conns || connected[[2]int32{a, b}] {
				continue
			}
			connected[[2]int32{a, b}] = true
			deg[i]++
			deg[j]++
			l := int32(len(s.links))
			s.addLink(link{up: int32(i), down: int32(j), rev: l + 1, cap: int32(p.PeerQueue)})
			s.addLink(link{up: int32(j), down: int32(i), rev: l, cap: int32(p.PeerQueue)})
		}
	}
	// The repository's seeder, in announce order: host h announced
	// (h+1)th, so the tracker counted h+1 downloaders then.
	for h := 0; h < n && s.originSlots < p.Policy.OriginConns; h++ {
		s.connectOrigin(h)
	}
	s.nextWaiter = min(n, p.Policy.OriginConns)
	return s
}

func (s *sim) addLink(l link) int32 {
	id := int32(len(s.links))
	s.links = append(s.links, l)
	s.out[l.up] = append(s.out[l.up], id)
	s.outDown[l.up] = append(s.outDown[l.up], l.down)
	s.in[l.down] = append(s.in[l.down], id)
	return id
}

func (s *sim) connectOrigin(h int) {
	q := s.p.Policy.OriginQueue(h+1) * len(s.p.Sizes)
	s.originLink[h] = s.addLink(link{up: int32(s.n), down: int32(h), rev: -1, kind: kindOrigin, cap: int32(q)})
	s.originSlots++
	for p := range s.np {
		s.avail[p*s.n+h]++
	}
}

func (s *sim) nDone() int {
	c := 0
	for _, d := range s.done {
		if d {
			c++
		}
	}
	return c
}

// setPending marks p requested by h, in both layouts.
func (s *sim) setPending(h, p int, on bool) {
	if on {
		s.setBit(s.pending, h, p)
		s.pendingT[p*s.wn+h/64] |= 1 << (h % 64)
	} else {
		s.clearBit(s.pending, h, p)
		s.pendingT[p*s.wn+h/64] &^= 1 << (h % 64)
	}
}

func (s *sim) bit(set []uint64, h, p int) bool { return set[h*s.w+p/64]&(1<<(p%64)) != 0 }
func (s *sim) setBit(set []uint64, h, p int)   { set[h*s.w+p/64] |= 1 << (p % 64) }
func (s *sim) clearBit(set []uint64, h, p int) { set[h*s.w+p/64] &^= 1 << (p % 64) }

// deliverHaves makes the pieces completed Lat ago count at the neighbours,
// and gives them at once to connections that had nothing left to ask for.
func (s *sim) deliverHaves(step int) {
	slot := step % len(s.ring)
	for _, hp := range s.ring[slot] {
		h, p := int(hp[0]), int(hp[1])
		s.setBit(s.shown, h, p)
		for i, d32 := range s.outDown[h] {
			d := int(d32)
			if s.done[d] {
				continue // a seed needs no availability
			}
			s.avail[p*s.n+d]++
			dword, dmask := p*s.wn+d/64, uint64(1)<<(d%64)
			if s.haveT[dword]&dmask != 0 {
				continue
			}
			l := &s.links[s.out[h][i]]
			if l.choked || l.queued+s.chunks[p] > l.cap {
				continue
			}
			if s.pendingT[dword]&dmask == 0 {
				if l.exhausted {
					s.enqueue(l, p)
				}
			} else if o := s.originLink[d]; o >= 0 && s.steal(&s.links[o], l, p) {
				s.res.Stolen++
			}
		}
	}
	s.ring[slot] = s.ring[slot][:0]
}

// steal moves a request for p that waits in from's queue to l, as
// anacrolix does for a connection with at least two requests fewer than
// the one holding it ("don't steal from the poor"): the repository's
// queue then holds fewer pieces that another host has meanwhile. The
// piece being sent cannot be taken back.
func (s *sim) steal(from, l *link, p int) bool {
	if from.queued < l.queued+2 {
		return false
	}
	for i := 1; i < len(from.queue); i++ {
		if int(from.queue[i]) == p {
			from.queue = slices.Delete(from.queue, i, i+1)
			from.queued -= s.chunks[p]
			from.qbytes -= s.size[p]
			from.exhausted = false
			s.setPending(int(l.down), p, false)
			s.enqueue(l, p)
			return true
		}
	}
	return false
}

func (s *sim) enqueue(l *link, p int) {
	l.queue = append(l.queue, int32(p))
	l.queued += s.chunks[p]
	l.qbytes += s.size[p]
	if l.kind == kindWeb {
		return
	}
	s.setPending(int(l.down), p, true)
	if l.kind == kindOrigin && !s.bit(s.originAssigned, 0, p) {
		s.setBit(s.originAssigned, 0, p) // one row
		s.originAssignedCount++
		if s.originAssignedCount == s.np {
			for h := range s.n {
				if li := s.originLink[h]; li >= 0 {
					s.links[li].exhausted = false
				}
			}
		}
	}
}

// refill tops up every connection with room, rarest piece first among the
// pieces the uploader shows (anacrolix: priority, then availability, then
// index); the web seed asks for its torrent's missing pieces in order.
func (s *sim) refill() {
	type cand struct {
		key uint32
		p   int32
	}
	var best []cand
	for h := range s.n {
		if s.done[h] {
			continue
		}
		for _, li := range s.in[h] {
			l := &s.links[li]
			if l.dead || l.choked || l.queued >= l.cap || l.exhausted && !(l.kind == kindWeb && len(l.queue) == 0) {
				continue
			}
			room := int(l.cap - l.queued)
			best = best[:0]
			found := 0
			for wi := range s.w {
				var c uint64
				switch {
				case l.kind == kindPeer:
					c = s.shown[int(l.up)*s.w+wi]
				case l.kind == kindOrigin && s.p.Policy.SuperSeed && s.originAssignedCount < s.np:
					c = ^s.originAssigned[wi]
				default:
					c = ^uint64(0)
				}
				if l.kind == kindWeb {
					c &^= s.have[h*s.w+wi]
				} else {
					c &^= s.have[h*s.w+wi] | s.pending[h*s.w+wi]
				}
				for c != 0 {
					p := wi*64 + bits.TrailingZeros64(c)
					c &= c - 1
					if p >= s.np || (l.kind == kindWeb && int(s.torrentOf[p]) != int(l.torrent)) {
						continue
					}
					found++
					var key uint32
					if l.kind != kindWeb {
						key = uint32(s.avail[p*s.n+h])<<16 | uint32(s.tie[h*s.np+p])
					}
					if len(best) == room && key >= best[room-1].key {
						continue
					}
					i, _ := slices.BinarySearchFunc(best, key, func(c cand, k uint32) int {
						if c.key <= k {
							return -1
						}
						return 1
					})
					if len(best) == room {
						best = best[:room-1]
					}
					best = slices.Insert(best, i, cand{key, int32(p)})
				}
			}
			for _, c := range best {
				if l.queued+s.chunks[c.p] > l.cap && l.queued > 0 {
					break
				}
				s.enqueue(l, int(c.p))
			}
			l.exhausted = found < room
		}
	}
}

// allowed is anacrolix's upload rule: a seed uploads to anyone, a
// downloader only while it has not sent much more than it got back.
func (s *sim) allowed(l *link) bool {
	if l.kind != kindPeer || s.done[l.up] {
		return true
	}
	return l.sent < s.links[l.rev].sent+int64(len(s.p.Sizes))*titForTat
}

// choke applies anacrolix's upload rule: a connection that may not upload
// chokes, which drops the downloader's requests but the piece under way,
// so that they go to other peers.
func (s *sim) choke() {
	for i := range s.links {
		l := &s.links[i]
		was := l.choked
		l.choked = !l.dead && !s.allowed(l)
		if l.choked && len(l.queue) > 1 {
			for _, p := range l.queue[1:] {
				s.setPending(int(l.down), int(p), false)
				l.queued -= s.chunks[p]
				l.qbytes -= s.size[p]
			}
			l.queue = l.queue[:1]
			// The dropped pieces are the downloader's to ask of others.
			for _, o := range s.in[l.down] {
				s.links[o].exhausted = false
			}
		}
		if was && !l.choked {
			l.exhausted = false
		}
	}
}

// transfer shares each uploader's link fairly between its busy
// connections (two rounds of water-filling, so a connection that wants
// less leaves its share to the others), then each downloader's link and
// the machine's CPU, and moves the bytes.
func (s *sim) transfer(step int) {
	n := s.n
	downCap := s.p.Up * s.p.Eff / 8 * s.p.Dt
	var busy []*link
	for node := 0; node <= n; node++ {
		busy = busy[:0]
		for _, li := range s.out[node] {
			l := &s.links[li]
			l.offer = 0
			if !l.dead && len(l.queue) > 0 {
				busy = append(busy, l)
			}
		}
		budget := s.p.Up * s.p.Eff / 8 * s.p.Dt
		if node == n {
			budget = s.p.U * s.p.Eff / 8 * s.p.Dt
		}
		for round := 0; round < 2 && len(busy) > 0; round++ {
			share, unmet := budget/float64(len(busy)), busy[:0]
			for _, l := range busy {
				want := float64(l.qbytes-l.head) - l.offer
				g := min(share, want)
				l.offer += g
				budget -= g
				if g < want {
					unmet = append(unmet, l)
				}
			}
			busy = unmet
		}
	}
	in := make([]float64, n)
	peers := 0.0
	for i := range s.links {
		l := &s.links[i]
		if l.offer > 0 {
			in[l.down] += l.offer
		}
	}
	origin := 0.0
	for i := range s.links {
		l := &s.links[i]
		if l.offer > 0 && in[l.down] > downCap {
			l.offer *= downCap / in[l.down]
		}
		if l.kind == kindPeer {
			peers += max(0, l.offer)
		} else {
			origin += max(0, l.offer)
		}
	}
	// The machine's CPU handles the repository's few bytes first (a slow
	// host still drains its socket); the hosts' exchange gets the rest.
	scale := 1.0
	if s.p.CPU > 0 && origin+peers > s.p.CPU*s.p.Dt {
		scale = max(0, s.p.CPU*s.p.Dt-origin) / peers
	}
	for i := range s.links {
		l := &s.links[i]
		if l.offer <= 0 {
			continue
		}
		g := int64(l.offer)
		if l.kind == kindPeer {
			g = int64(l.offer * scale)
		}
		if g <= 0 {
			continue
		}
		l.sent += g
		switch l.kind {
		case kindPeer:
			s.res.PeerSent += g
		case kindWeb:
			s.res.WebSent += g
			s.res.OriginSent += g
		default:
			s.res.OriginSent += g
		}
		s.res.Received += g
		l.head += g
		h := int(l.down)
		for len(l.queue) > 0 && l.head >= s.size[l.queue[0]] {
			p := int(l.queue[0])
			l.head -= s.size[p]
			l.queue = l.queue[1:]
			l.queued -= s.chunks[p]
			l.qbytes -= s.size[p]
			if s.bit(s.have, h, p) {
				s.res.Wasted += s.size[p]
				continue
			}
			s.complete(h, p, step)
		}
	}
}

func (s *sim) complete(h, p, step int) {
	s.setPending(h, p, false)
	s.setBit(s.have, h, p)
	s.haveT[p*s.wn+h/64] |= 1 << (h % 64)
	if s.tleft[h][s.torrentOf[p]] == 1 {
		for _, li := range s.in[h] {
			if l := &s.links[li]; l.kind == kindWeb && int(l.torrent) == int(s.torrentOf[p]) {
				// The HTTP response stops; what arrived of its piece is lost.
				l.dead = true
				s.res.Wasted += l.head
				l.head = 0
			}
		}
	}
	t := s.torrentOf[p]
	s.left[h]--
	s.tleft[h][t]--
	s.progress[h][t] = s.now + s.p.Dt
	slot := (step + s.latSteps) % len(s.ring)
	s.ring[slot] = append(s.ring[slot], [2]int32{int32(h), int32(p)})
	if s.left[h] > 0 {
		return
	}
	s.done[h] = true
	s.finish[h] = s.now + s.p.Dt + s.p.Fixed
	// A finished host's seat at the repository goes to the next host that
	// announced and is still downloading.
	if li := s.originLink[h]; li >= 0 {
		s.links[li].dead = true
		s.originLink[h] = -1
		s.originSlots--
		for ; s.nextWaiter < s.n && s.originSlots < s.p.Policy.OriginConns; s.nextWaiter++ {
			if !s.done[s.nextWaiter] {
				s.connectOrigin(s.nextWaiter)
			}
		}
	}
}

// webSeeds adds the repository's web seed to a torrent that got nothing
// for WebSeedStall (swarm.Peer.Download's fallback).
func (s *sim) webSeeds() {
	stall := s.p.Policy.WebSeedStall
	if stall <= 0 {
		return
	}
	for h := range s.n {
		if s.done[h] {
			continue
		}
		for t := range s.p.Sizes {
			if !s.web[h][t] && s.tleft[h][t] > 0 && s.now-s.progress[h][t] > stall {
				s.web[h][t] = true
				s.res.WebSeeds++
				s.addLink(link{up: int32(s.n), down: int32(h), rev: -1, kind: kindWeb, torrent: int8(t), cap: math.MaxInt32})
			}
		}
	}
}
