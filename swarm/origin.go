package swarm

import (
	"bytes"
	"encoding/binary"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/torrent/bencode"
)

// The repository's uplink is the fleet's bottleneck: every byte it sends
// that a host could have had from another host is time lost for all. A
// host's torrent client asks the repository for whatever it wants next,
// pieces other hosts already have among them (anacrolix moves a request to
// a connection with a shorter queue, and the repository's is the shortest,
// see repositoryReqq). So the repository's seeder serves a piece request
// only when no other connected peer has announced the piece and the piece is
// not already on its way to one, and rejects the rest (BEP 6): the host then
// asks the peers that have it, which is super-seeding (BEP 16) enforced on
// requests rather than on announcements. The refusals hold only while the
// peer is fed by others: a peer that announced no piece it did not get from
// the seeder for originStarved is served whatever it asks (it reaches no
// holder), and so is one that asks for the same piece originRetry after it
// was refused it (it reaches none of that piece's holders).
//
// The seeder sees the protocol in clear only from peers that handshake in
// clear (tpm's hosts do, see newTorrentConfig) and that speak the fast
// extension, which rejecting needs; for every other connection originConn
// passes the bytes through untouched.

// originRetry is how long after a refusal a host that asks again for the
// same piece is served anyway.
const originRetry = 3 * time.Second

// originStarved is how long a peer may announce no piece that it got from
// others before the seeder serves it whatever it asks. Long enough for a
// slow swarm's pause (bench-swarm, 16 hosts on 2 cores: with 3 s, a quarter
// of what the seeder sent went to hosts that only seemed starved).
const originStarved = 10 * time.Second

// originClaim is how long a piece sent to one host is left for that host
// to pass on before another host that asks is served a second copy. It
// covers the time from the seeder's sending to the host's have (bench-swarm,
// 16 hosts on 2 cores, as a trace of the seeder bounds it: at most 0.5 s
// for half the pieces, 1.2 s for nine in ten); a longer
// claim held up the last pieces, which every host waits for, when the host
// they went to did not finish them (5 s: the end of a download took 3 s
// longer).
const originClaim = 2 * time.Second

// originEndClaim replaces originClaim for a torrent every piece of which
// has left the repository (or was announced by a peer): what is left is
// the end of the download, when every host waits for the last pieces and
// the uplink has little else to send. A last piece whose claimant was slow
// to announce it held every host for the whole claim (bench-swarm, 16
// hosts: the machine idle for 2 to 4.5 s, then every host finished within
// 0.1 s, at the end of the claims on the last four pieces); a second copy
// of a few pieces costs far less. A piece that a connected peer has is
// still refused (originRetry): the refused host gets it from that peer.
const originEndClaim = 500 * time.Millisecond

// maxOriginMessage bounds the messages originConn parses; a longer one
// ends the parsing and the bytes go through as they are (the torrent
// client refuses them).
const maxOriginMessage = 1 << 20

// originPolicy is what the repository's seeder knows of the swarm, shared by
// its connections.
type originPolicy struct {
	mu       sync.Mutex
	torrents map[[20]byte]*originTorrent
	nextConn uint64
	rejected atomic.Int64
	now      func() time.Time
	// ignore are the client names (prefixes, from the extended handshake)
	// of peers whose pieces do not count: a mirror's policy ignores the
	// repository's seeder and other mirrors, which refuse too, so that a
	// host is never sent from one to the other and refused by both. The
	// repository's counts every peer: a mirror serves what it has.
	ignore []string
}

type originTorrent struct {
	holders []int32 // connected peers that announced each piece
	claims  []originClaimRecord
	// out marks the pieces that have left the repository or that a peer
	// announced; unsent counts the others.
	out    []bool
	unsent int
}

// markOut records that piece i is out in the swarm.
func (t *originTorrent) markOut(i uint32) {
	if !t.out[i] {
		t.out[i] = true
		t.unsent--
	}
}

// claim is how long a claim on a piece of t holds now.
func (t *originTorrent) claim() time.Duration {
	if t.unsent == 0 {
		return originEndClaim
	}
	return originClaim
}

type originClaimRecord struct {
	conn uint64
	at   time.Time
}

func newOriginPolicy() *originPolicy {
	return &originPolicy{torrents: make(map[[20]byte]*originTorrent), now: time.Now}
}

// MirrorClientName is what a mirror's peer (PeerConfig.Refuse) calls
// itself in the extended handshake.
const MirrorClientName = "tpmd mirror"

// newMirrorPolicy is a mirror's: the repository's, but for the peers that
// refuse too (originPolicy.ignore).
func newMirrorPolicy() *originPolicy {
	p := newOriginPolicy()
	p.ignore = []string{RepositoryClientName, MirrorClientName}
	return p
}

// ignores says whether the policy ignores the pieces of a peer whose
// client calls itself v.
func (p *originPolicy) ignores(v string) bool {
	for _, prefix := range p.ignore {
		if strings.HasPrefix(v, prefix) {
			return true
		}
	}
	return false
}

// track makes ih, of n pieces, a torrent the policy knows (a live one),
// keeping its state if it knows it already.
func (p *originPolicy) track(ih [20]byte, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t, ok := p.torrents[ih]; ok && len(t.holders) == n {
		return
	}
	p.torrents[ih] = &originTorrent{holders: make([]int32, n), claims: make([]originClaimRecord, n), out: make([]bool, n), unsent: n}
}

// untrack forgets ih (gone dormant, or dropped); its connections are
// closed with it.
func (p *originPolicy) untrack(ih [20]byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.torrents, ih)
}

// Rejected counts the requests refused since the start.
func (p *originPolicy) Rejected() int64 { return p.rejected.Load() }

// originConnState is one connection's part of the policy: the pieces its
// peer announced and the refusals it was given.
type originConnState struct {
	id       uint64
	ih       [20]byte
	t        *originTorrent // nil: not a torrent the policy knows
	has      []bool
	servedTo []bool // pieces the seeder sent this peer (some of)
	refused  map[uint32]time.Time
	left     bool
	ignored  bool // a peer that refuses too (originPolicy.ignore)
	// fed is when the peer last announced a piece the seeder did not
	// send it, or when it joined.
	fed time.Time
}

func (p *originPolicy) join(ih [20]byte) *originConnState {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.nextConn++
	cs := &originConnState{id: p.nextConn, ih: ih, fed: p.now()}
	if t, ok := p.torrents[ih]; ok {
		cs.t = t
		cs.has = make([]bool, len(t.holders))
		cs.servedTo = make([]bool, len(t.holders))
		cs.refused = make(map[uint32]time.Time)
	}
	return cs
}

// announced records that the peer has piece i.
func (p *originPolicy) announced(cs *originConnState, i uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.announcedLocked(cs, i)
}

func (p *originPolicy) announcedLocked(cs *originConnState, i uint32) {
	if cs.left || cs.ignored || cs.t == nil || p.torrents[cs.ih] != cs.t || int(i) >= len(cs.has) || cs.has[i] {
		return
	}
	cs.has[i] = true
	cs.t.holders[i]++
	cs.t.markOut(i)
	if !cs.servedTo[i] {
		cs.fed = p.now()
	}
}

// announcedAll records a bitfield (nil: have all).
func (p *originPolicy) announcedAll(cs *originConnState, bitfield []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range cs.has {
		if bitfield == nil || (i/8 < len(bitfield) && bitfield[i/8]&(0x80>>(i%8)) != 0) {
			p.announcedLocked(cs, uint32(i))
		}
	}
}

// ignorePeer forgets what the connection's peer announced and ignores
// what it announces from now on.
func (p *originPolicy) ignorePeer(cs *originConnState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cs.ignored {
		return
	}
	cs.ignored = true
	if cs.left || cs.t == nil || p.torrents[cs.ih] != cs.t {
		return
	}
	for i, has := range cs.has {
		if has {
			cs.t.holders[i]--
			cs.has[i] = false
		}
	}
}

// leave forgets what the connection's peer announced.
func (p *originPolicy) leave(cs *originConnState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cs.left || cs.t == nil || p.torrents[cs.ih] != cs.t {
		return
	}
	cs.left = true
	for i, has := range cs.has {
		if has {
			cs.t.holders[i]--
		}
		// A piece on its way to a peer that left is on its way to nobody.
		if cs.servedTo[i] && cs.t.claims[i].conn == cs.id {
			cs.t.claims[i] = originClaimRecord{}
		}
	}
}

// serve says whether the seeder sends the peer of cs the piece i it asks
// for and, when it does not, how long until the peer would be served if it
// asked again (the claim's end, or originRetry).
func (p *originPolicy) serve(cs *originConnState, i uint32) (bool, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := cs.t
	if t == nil || p.torrents[cs.ih] != t || int(i) >= len(t.holders) {
		return true, 0
	}
	now := p.now()
	others := t.holders[i]
	if cs.has[i] {
		others--
	}
	c := t.claims[i]
	claim := t.claim()
	claimed := c.conn != 0 && c.conn != cs.id && now.Sub(c.at) < claim
	starved := now.Sub(cs.fed) >= originStarved
	if (others > 0 || claimed) && !starved {
		first, ok := cs.refused[i]
		if !ok {
			cs.refused[i] = now
			first = now
		}
		if now.Sub(first) < originRetry {
			p.rejected.Add(1)
			again := originRetry - now.Sub(first)
			if others == 0 {
				again = min(again, claim-now.Sub(c.at))
			}
			return false, again
		}
	}
	delete(cs.refused, i)
	cs.servedTo[i] = true
	t.markOut(i)
	if c.conn == 0 || now.Sub(c.at) >= claim {
		t.claims[i] = originClaimRecord{conn: cs.id, at: now}
	}
	return true, 0
}

// A client that was refused asks again only when something happens on the
// connection (anacrolix makes no new requests on a reject, and has no
// timer), and the seeder sends nothing of its own: a host that reaches no
// peer holding the pieces would wait for good. So when the peer would be
// served (its claim ended, or originRetry after a refusal) the seeder
// chokes and unchokes it, and the unchoke makes the client ask again. With
// the fast extension a choke drops no request.
var nudgeMessages = []byte{0, 0, 0, 1, 0, 0, 0, 0, 1, 1}

// nudgeIn makes the nudge due within d, or sooner if one already is.
func (c *originConn) nudgeIn(d time.Duration) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed.Load() {
		return
	}
	due := time.Now().Add(d)
	if c.nudge != nil && c.nudging && !c.nudgeDue.After(due) {
		return
	}
	c.nudging, c.nudgeDue = true, due
	if c.nudge == nil {
		c.nudge = time.AfterFunc(d, c.sendNudge)
	} else {
		c.nudge.Reset(d)
	}
}

// sendNudge runs when the timer fires. A nudgeIn that moved the timer on
// while this call waited for wmu keeps its nudge due.
func (c *originConn) sendNudge() {
	c.wmu.Lock()
	if !time.Now().Before(c.nudgeDue) {
		c.nudging = false
	}
	c.wmu.Unlock()
	c.writeOwn(nudgeMessages)
}

// BitTorrent message ids that originConn reads (BEP 3, BEP 6).
const (
	msgHave    = 4
	msgField   = 5
	msgRequest = 6
	msgCancel  = 8
	msgHaveAll = 0x0e
	msgReject  = 0x10
	msgExt     = 20 // BEP 10; extended message 0 is the extended handshake
)

var btProtocol = []byte("\x13BitTorrent protocol")

const handshakeLen = 68

// originConn is a peer's connection to the repository's seeder as the
// torrent client sees it: requests the policy refuses are answered with a
// reject here and never reach the client.
type originConn struct {
	net.Conn
	policy *originPolicy

	wmu sync.Mutex // anacrolix's writer and the rejects of Read

	// Read's state, used only by the goroutine that reads.
	in, out     []byte
	handshaken  bool
	passthrough bool
	state       atomic.Pointer[originConnState]
	closed      atomic.Bool
	rejected    map[[12]byte]bool // refused requests, whose cancels are dropped
	// The nudge's timer and when it fires, under wmu.
	nudge    *time.Timer
	nudging  bool
	nudgeDue time.Time
	// ownWriteTimeout, but for tests.
	ownWriteTimeout time.Duration
	buf             [32 << 10]byte
}

func newOriginConn(c net.Conn, p *originPolicy) *originConn {
	return &originConn{Conn: c, policy: p, ownWriteTimeout: ownWriteTimeout}
}

func (c *originConn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.Conn.Write(b)
}

// Close runs on another goroutine than Read: whichever of the two comes
// second leaves the policy (closed is set before state is taken). The
// socket closes first: a write blocked on a peer that reads nothing holds
// wmu until then.
func (c *originConn) Close() error {
	c.closed.Store(true)
	err := c.Conn.Close()
	c.wmu.Lock()
	if c.nudge != nil {
		c.nudge.Stop()
	}
	c.wmu.Unlock()
	if st := c.state.Swap(nil); st != nil {
		c.policy.leave(st)
	}
	return err
}

// ownWriteTimeout bounds the seeder's own messages (rejects, nudges): a
// peer that asks and never reads would otherwise hold the goroutine that
// reads its connection for good. The connection is closed instead.
const ownWriteTimeout = 30 * time.Second

// writeOwn writes a message of the policy's between the client's writes.
func (c *originConn) writeOwn(b []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.Conn.SetWriteDeadline(time.Now().Add(c.ownWriteTimeout))
	_, err := c.Conn.Write(b)
	c.Conn.SetWriteDeadline(time.Time{})
	if err != nil {
		// The client's next read fails, and it closes its side.
		c.Conn.Close()
	}
}

func (c *originConn) Read(p []byte) (int, error) {
	for len(c.out) == 0 {
		if c.passthrough && len(c.in) == 0 {
			return c.Conn.Read(p)
		}
		n, err := c.Conn.Read(c.buf[:])
		c.in = append(c.in, c.buf[:n]...)
		c.parse()
		if err != nil && len(c.out) == 0 {
			if len(c.in) > 0 {
				c.out, c.in = c.in, nil
				break
			}
			return 0, err
		}
	}
	n := copy(p, c.out)
	c.out = c.out[n:]
	if len(c.out) == 0 {
		c.out = nil
	}
	return n, nil
}

// parse moves the complete messages of c.in to c.out, keeping back the
// requests the policy refuses.
func (c *originConn) parse() {
	if c.passthrough {
		c.out = append(c.out, c.in...)
		c.in = c.in[:0]
		return
	}
	if !c.handshaken {
		if len(c.in) < handshakeLen {
			if !bytes.HasPrefix(btProtocol, c.in[:min(len(c.in), len(btProtocol))]) {
				c.passthrough = true
				c.parse()
			}
			return
		}
		if !bytes.HasPrefix(c.in, btProtocol) || c.in[27]&0x04 == 0 {
			// Encrypted, or no fast extension: nothing to reject with.
			c.passthrough = true
			c.parse()
			return
		}
		var ih [20]byte
		copy(ih[:], c.in[28:48])
		st := c.policy.join(ih)
		c.state.Store(st)
		if c.closed.Load() && c.state.Swap(nil) != nil {
			c.policy.leave(st)
		}
		c.rejected = make(map[[12]byte]bool)
		c.handshaken = true
		c.out = append(c.out, c.in[:handshakeLen]...)
		c.in = c.in[handshakeLen:]
	}
	for len(c.in) >= 4 {
		l := binary.BigEndian.Uint32(c.in)
		if l > maxOriginMessage {
			c.passthrough = true
			c.parse()
			return
		}
		if len(c.in) < 4+int(l) {
			return
		}
		msg := c.in[:4+l]
		c.in = c.in[4+l:]
		if c.keep(msg) {
			c.out = append(c.out, msg...)
		}
	}
}

// keep looks at one whole message and says whether the client gets it.
func (c *originConn) keep(msg []byte) bool {
	st := c.state.Load()
	if len(msg) < 5 || st == nil {
		return true
	}
	body := msg[5:]
	switch msg[4] {
	case msgHave:
		if len(body) == 4 {
			c.policy.announced(st, binary.BigEndian.Uint32(body))
		}
	case msgField:
		c.policy.announcedAll(st, body)
	case msgHaveAll:
		c.policy.announcedAll(st, nil)
	case msgRequest:
		if len(body) != 12 {
			return true
		}
		serve, again := c.policy.serve(st, binary.BigEndian.Uint32(body))
		if serve {
			delete(c.rejected, [12]byte(body))
			return true
		}
		if len(c.rejected) < 4096 {
			c.rejected[[12]byte(body)] = true
		}
		reject := make([]byte, 17)
		binary.BigEndian.PutUint32(reject, 13)
		reject[4] = msgReject
		copy(reject[5:], body)
		c.writeOwn(reject)
		c.nudgeIn(again)
		return false
	case msgExt:
		if len(body) > 1 && body[0] == 0 && len(c.policy.ignore) > 0 {
			var hs struct {
				V string `bencode:"v"`
			}
			// Undecodable: the peer's pieces count, as anyone's.
			if bencode.Unmarshal(body[1:], &hs) == nil && c.policy.ignores(hs.V) {
				c.policy.ignorePeer(st)
			}
		}
	case msgCancel:
		if len(body) == 12 && c.rejected[[12]byte(body)] {
			// Rejected already: the client never saw the request.
			delete(c.rejected, [12]byte(body))
			return false
		}
	}
	return true
}
