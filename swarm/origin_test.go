package swarm

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"
	pp "github.com/anacrolix/torrent/peer_protocol"
)

func TestOriginPolicy(t *testing.T) {
	p := newOriginPolicy()
	now := time.Unix(1000, 0)
	p.now = func() time.Time { return now }
	ih := [20]byte{1}
	p.track(ih, 8)
	a, b := p.join(ih), p.join(ih)
	stranger := p.join([20]byte{2}) // a torrent the seeder does not know

	p.announced(b, 1)
	if serves(p, a, 1) {
		t.Error("served a piece another peer has")
	}
	if !serves(p, b, 1) {
		t.Error("refused a peer the piece it announced itself")
	}
	if !serves(p, a, 2) {
		t.Error("refused a piece nobody has")
	}
	if !serves(p, a, 2) {
		t.Error("refused the second chunk of a piece on its way to the same peer")
	}
	if ok, again := p.serve(b, 2); ok || again != originClaim {
		t.Errorf("a second copy of a piece on its way to another peer: served %v, again in %v (want the claim's end)", ok, again)
	}
	now = now.Add(originClaim / 2)
	if ok, again := p.serve(b, 2); ok || again != originClaim/2 {
		t.Errorf("asked again within the claim: served %v, again in %v", ok, again)
	}
	// a and b are fed by other peers: they announce pieces the seeder did
	// not send them.
	now = now.Add(originRetry - originClaim/2 - time.Millisecond)
	p.announced(a, 2)
	p.announced(a, 3)
	p.announced(a, 5)
	p.announced(b, 6)
	if ok, again := p.serve(b, 2); ok || again != time.Millisecond {
		t.Errorf("a piece another peer has, asked again before the retry time: served %v, again in %v", ok, again)
	}
	now = now.Add(time.Millisecond)
	if !serves(p, b, 2) || !serves(p, a, 1) {
		t.Error("refused a peer that asked again after the retry time")
	}

	// c is fed by nobody: refused while it may still be, then served what
	// others have.
	c := p.join(ih)
	p.announcedAll(c, []byte{0b0000_0001}) // piece 7, from before
	if serves(p, c, 5) {
		t.Error("served a newcomer a piece another peer has")
	}
	now = now.Add(originStarved - time.Millisecond)
	if serves(p, c, 6) {
		t.Error("served a peer that may still be fed by others")
	}
	now = now.Add(time.Millisecond)
	if !serves(p, c, 6) {
		t.Error("refused a peer that got nothing from others for originStarved")
	}
	p.announced(c, 6) // what the seeder sent feeds nobody
	if !serves(p, c, 3) {
		t.Error("a piece from the seeder counted as one from the peers")
	}
	p.announced(a, 4)
	if serves(p, a, 6) {
		t.Error("served a fed peer a piece another peer has")
	}

	p.leave(b)
	p.announcedAll(b, nil) // left: no effect
	p.mu.Lock()
	if h := p.torrents[ih].holders; h[1] != 0 || h[0] != 0 || h[6] != 1 {
		t.Errorf("holders after b left: %v", h)
	}
	p.mu.Unlock()
	for _, i := range []uint32{8, 1 << 31} {
		p.announced(a, i)
		if !serves(p, a, i) {
			t.Errorf("piece %d out of range: refused (the client answers it)", i)
		}
	}
	if !serves(p, stranger, 0) {
		t.Error("refused a request for a torrent the seeder does not know")
	}
	if p.Rejected() != 7 {
		t.Errorf("%d refusals counted, want 7", p.Rejected())
	}
	p.untrack(ih)
	if !serves(p, a, 6) {
		t.Error("a dropped torrent's old state still refuses")
	}
}

// serves is serve's first result.
func serves(p *originPolicy, cs *originConnState, i uint32) bool {
	ok, _ := p.serve(cs, i)
	return ok
}

func TestOriginClaims(t *testing.T) {
	p := newOriginPolicy()
	now := time.Unix(1000, 0)
	p.now = func() time.Time { return now }
	ih := [20]byte{1}
	p.track(ih, 4)
	a, b, c := p.join(ih), p.join(ih), p.join(ih)
	if !serves(p, a, 0) || !serves(p, a, 1) {
		t.Fatal("refused pieces nobody has")
	}
	now = now.Add(originClaim - time.Millisecond)
	if serves(p, b, 0) {
		t.Error("served a piece on its way to another peer within the claim")
	}
	now = now.Add(time.Millisecond)
	if !serves(p, b, 0) {
		t.Error("refused a piece whose claim ended, that nobody announced")
	}
	if serves(p, c, 0) {
		t.Error("the second copy's claim was not taken")
	}
	// A peer that leaves takes its claims with it: the piece it did not
	// finish is on its way to nobody.
	p.leave(a)
	if !serves(p, c, 1) {
		t.Error("refused a piece claimed by a peer that left")
	}
	if serves(p, b, 1) {
		t.Error("the claim of the peer that left was not passed on")
	}
}

// Once every piece has left the repository, a claim holds originEndClaim:
// at the end of a download every host waits for the last pieces, and one
// claimant slow to announce its piece held them all for originClaim.
func TestOriginEndClaim(t *testing.T) {
	p := newOriginPolicy()
	now := time.Unix(1000, 0)
	p.now = func() time.Time { return now }
	ih := [20]byte{1}
	p.track(ih, 3)
	a, b, c := p.join(ih), p.join(ih), p.join(ih)
	if !serves(p, a, 0) {
		t.Fatal("refused a piece nobody has")
	}
	now = now.Add(originEndClaim)
	if serves(p, b, 0) {
		t.Error("a piece still to leave the repository, and the claim on piece 0 already short")
	}
	p.announced(c, 1) // a peer brought piece 1 from elsewhere
	if !serves(p, a, 2) {
		t.Fatal("refused a piece nobody has")
	}
	// Every piece is out: the claim on piece 2 is short.
	if ok, again := p.serve(b, 2); ok || again != originEndClaim {
		t.Errorf("within the end's claim: served %v, again in %v, want refused for %v", ok, again, originEndClaim)
	}
	now = now.Add(originEndClaim)
	if !serves(p, b, 2) {
		t.Error("refused a piece whose end claim ran out")
	}
	// A piece a connected peer has is still refused.
	if serves(p, b, 1) {
		t.Error("served a piece another connected peer has")
	}
}

func handshake(ih [20]byte, fast bool) []byte {
	h := append([]byte{19}, "BitTorrent protocol"...)
	reserved := make([]byte, 8)
	if fast {
		reserved[7] |= 0x04
	}
	h = append(h, reserved...)
	h = append(h, ih[:]...)
	return append(h, "-XX0000-originpeer00"...)
}

func request(i, begin, length uint32) []byte {
	return pp.Message{Type: pp.Request, Index: pp.Integer(i), Begin: pp.Integer(begin), Length: pp.Integer(length)}.MustMarshalBinary()
}

// pipeOrigin is an originConn on one end of a connection whose other end,
// returned, is the peer.
func pipeOrigin(t *testing.T, p *originPolicy) (*originConn, net.Conn) {
	t.Helper()
	client, peer := net.Pipe()
	c := newOriginConn(client, p)
	t.Cleanup(func() { c.Close(); peer.Close() })
	return c, peer
}

// What a peer sends is read by the torrent client as it was sent, but for
// the requests refused, which the peer has rejected instead; garbage and
// encrypted streams pass through untouched.
func TestOriginConnFraming(t *testing.T) {
	ih := [20]byte{7}
	p := newOriginPolicy()
	p.track(ih, 8)
	holder := p.join(ih)
	p.announced(holder, 3)

	c, peer := pipeOrigin(t, p)
	have := pp.Message{Type: pp.Have, Index: 5}.MustMarshalBinary()
	cancelRefused := pp.Message{Type: pp.Cancel, Index: 3, Begin: 0, Length: 16 << 10}.MustMarshalBinary()
	var sent, want bytes.Buffer
	for _, part := range [][]byte{handshake(ih, true), have, request(3, 0, 16<<10), cancelRefused, request(4, 0, 16<<10), {0, 0, 0, 0}} {
		sent.Write(part)
	}
	for _, part := range [][]byte{handshake(ih, true), have, request(4, 0, 16<<10), {0, 0, 0, 0}} {
		want.Write(part)
	}
	go func() {
		// A byte at a time: the framing holds across reads.
		for _, b := range sent.Bytes() {
			peer.Write([]byte{b})
		}
	}()
	got := make([]byte, want.Len())
	rejects := make(chan []byte, 1)
	go func() {
		b := make([]byte, 17)
		io.ReadFull(peer, b)
		rejects <- b
	}()
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("the client read\n%x\nwant\n%x", got, want.Bytes())
	}
	wantReject := pp.Message{Type: pp.Reject, Index: 3, Begin: 0, Length: 16 << 10}.MustMarshalBinary()
	if r := <-rejects; !bytes.Equal(r, wantReject) {
		t.Fatalf("the peer got %x, want the reject %x", r, wantReject)
	}

	for name, stream := range map[string][]byte{
		"not BitTorrent":      []byte("GET / HTTP/1.1\r\n\r\n" + string(make([]byte, 100))),
		"no fast extension":   append(handshake(ih, false), request(3, 0, 16<<10)...),
		"encrypted":           bytes.Repeat([]byte{0x9c, 0x41}, 200),
		"huge length":         append(handshake(ih, true), append([]byte{0xff, 0xff, 0xff, 0xff, 6}, request(3, 0, 16<<10)...)...),
		"short request":       append(handshake(ih, true), 0, 0, 0, 5, 6, 0, 0, 0, 3),
		"bitfield of garbage": append(handshake(ih, true), append([]byte{0, 0, 0, 101, 5}, bytes.Repeat([]byte{0xff}, 100)...)...),
	} {
		c, peer := pipeOrigin(t, p)
		go peer.Write(stream)
		got := make([]byte, len(stream))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(got, stream) {
			t.Errorf("%s: the stream was changed", name)
		}
	}
}

// A peer that asks for thousands of refused requests and never cancels
// holds a bounded record.
func TestOriginConnRefusalsAreBounded(t *testing.T) {
	ih := [20]byte{8}
	p := newOriginPolicy()
	now := time.Now()
	p.now = func() time.Time { return now } // every refusal within originRetry
	p.track(ih, 1)
	p.announced(p.join(ih), 0)
	c, peer := pipeOrigin(t, p)
	go io.Copy(io.Discard, peer) // the rejects
	go func() {
		peer.Write(handshake(ih, true))
		for i := range uint32(10000) {
			peer.Write(request(0, i*16, 16))
		}
		peer.Write([]byte{0, 0, 0, 0})
	}()
	got := make([]byte, handshakeLen+4)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if len(c.rejected) > 4096 {
		t.Fatalf("%d refusals held", len(c.rejected))
	}
	if p.Rejected() != 10000 {
		t.Fatalf("%d refused, want 10000", p.Rejected())
	}
}

// A peer that asks for a piece others hold and never reads: the reject
// cannot be written, and the connection is closed after ownWriteTimeout
// rather than holding the goroutine that reads it.
func TestOriginConnPeerThatNeverReads(t *testing.T) {
	ih := [20]byte{9}
	p := newOriginPolicy()
	p.track(ih, 1)
	p.announced(p.join(ih), 0)
	c, peer := pipeOrigin(t, p)
	c.ownWriteTimeout = 50 * time.Millisecond
	go func() {
		peer.Write(handshake(ih, true))
		peer.Write(request(0, 0, 16<<10))
	}()
	done := make(chan error, 1)
	go func() {
		_, err := io.ReadFull(c, make([]byte, handshakeLen+1))
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the client read past a request whose reject was never written")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the connection of a peer that never reads was not closed")
	}
}

// rawPeer is a BitTorrent peer written by hand, to see exactly what the
// seeder answers.
type rawPeer struct {
	conn net.Conn
	dec  *pp.Decoder
}

func dialRaw(t *testing.T, s *Seeder, ih [20]byte) *rawPeer {
	t.Helper()
	return dialRawPort(t, s.Port(), ih)
}

// dialRawPort is dialRaw for any client's port.
func dialRawPort(t *testing.T, port int, ih [20]byte) *rawPeer {
	t.Helper()
	conn, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := conn.Write(handshake(ih, true)); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	if _, err := io.ReadFull(r, make([]byte, handshakeLen)); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return &rawPeer{conn, &pp.Decoder{R: r, MaxLength: 1 << 20}}
}

func (r *rawPeer) send(t *testing.T, m pp.Message) {
	t.Helper()
	if _, err := r.conn.Write(m.MustMarshalBinary()); err != nil {
		t.Fatal(err)
	}
}

// next returns the next message of one of the types, skipping others.
func (r *rawPeer) next(t *testing.T, types ...pp.MessageType) pp.Message {
	t.Helper()
	for {
		var m pp.Message
		if err := r.dec.Decode(&m); err != nil {
			t.Fatalf("waiting for %v: %v", types, err)
		}
		for _, ty := range types {
			if !m.Keepalive && m.Type == ty {
				return m
			}
		}
	}
}

// seeding starts a seeder of tor's file in src and waits until it seeds.
func seeding(ctx context.Context, t *testing.T, src string, tor *Torrent) *Seeder {
	t.Helper()
	s := newTestSeeder(t, src)
	if _, err := s.Sync(ctx, []Item{{InfoHash: tor.InfoHash, InfoBytes: tor.InfoBytes}}); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitComplete(ctx, tor.InfoHash); err != nil {
		t.Fatal(err)
	}
	return s
}

// awaitHolder waits until the seeder's policy counts a holder of piece i:
// peers' messages are read on the seeder's goroutines.
func awaitHolder(ctx context.Context, t *testing.T, s *Seeder, ih [20]byte, i int) {
	t.Helper()
	for {
		s.policy.mu.Lock()
		held := s.policy.torrents[ih].holders[i] > 0
		s.policy.mu.Unlock()
		if held {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("the seeder never counted a holder of piece %d", i)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The repository's seeder, through anacrolix and all: a peer asking for a
// piece another connected peer has announced is rejected, and served one
// nobody has; a second peer asking for that one while it is on its way is
// rejected too.
func TestSeederRefusesWhatAnotherPeerHas(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	src := t.TempDir()
	data := randomBytes(256<<10, 11)
	tor := writePackage(t, src, "o-1-any.tpkg", data)
	s := seeding(ctx, t, src, tor)
	pieceLen := uint32(PieceLength(tor.Size))
	a, b := dialRaw(t, s, tor.InfoHash), dialRaw(t, s, tor.InfoHash)
	b.send(t, pp.Message{Type: pp.Have, Index: 0})
	awaitHolder(ctx, t, s, tor.InfoHash, 0)
	for _, p := range []*rawPeer{a, b} {
		p.send(t, pp.Message{Type: pp.Interested})
		p.next(t, pp.Unchoke)
	}
	a.send(t, pp.Message{Type: pp.Request, Index: 0, Begin: 0, Length: pp.Integer(min(pieceLen, 16<<10))})
	if m := a.next(t, pp.Reject, pp.Piece); m.Type != pp.Reject || m.Index != 0 {
		t.Fatalf("a asked for the piece b has: got %v %d", m.Type, m.Index)
	}
	a.send(t, pp.Message{Type: pp.Request, Index: 1, Begin: 0, Length: 16 << 10})
	m := a.next(t, pp.Reject, pp.Piece)
	if m.Type != pp.Piece || m.Index != 1 || !bytes.Equal(m.Piece, data[pieceLen:pieceLen+16<<10]) {
		t.Fatalf("a asked for a piece nobody has: got %v %d", m.Type, m.Index)
	}
	b.send(t, pp.Message{Type: pp.Request, Index: 1, Begin: 0, Length: 16 << 10})
	if m := b.next(t, pp.Reject, pp.Piece); m.Type != pp.Reject || m.Index != 1 {
		t.Fatalf("b asked for the piece on its way to a: got %v %d", m.Type, m.Index)
	}
	if s.Refused() != 2 {
		t.Fatalf("%d refusals counted, want 2", s.Refused())
	}
	// Nothing else happens on a's connection: originRetry after the
	// refusal the seeder chokes and unchokes it, and asked again, the
	// piece is served.
	a.next(t, pp.Choke)
	a.next(t, pp.Unchoke)
	a.send(t, pp.Message{Type: pp.Request, Index: 0, Begin: 0, Length: 16 << 10})
	if m := a.next(t, pp.Reject, pp.Piece); m.Type != pp.Piece || m.Index != 0 {
		t.Fatalf("a asked again after the retry time: got %v %d", m.Type, m.Index)
	}
}

// The attack on the policy: a peer tells the seeder it holds (all but one
// of) the pieces and serves nobody, and a host reaches only the seeder. The
// host's first requests are refused, the web seed stays out all the same
// (a seed is connected), and the seeder's nudge and the starvation rule
// (originStarved) bound the delay: the download completes.
func TestRefusedHostIsServedWithoutTheWebSeed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	src := t.TempDir()
	tor := writePackage(t, src, "r-1-any.tpkg", randomBytes(300<<10, 12))
	s := seeding(ctx, t, src, tor)
	// All but the last piece: a peer with all of them is dropped by the
	// seeder (both complete).
	holder := dialRaw(t, s, tor.InfoHash)
	var info metainfo.Info
	if err := unmarshalInfo(tor.InfoBytes, &info); err != nil {
		t.Fatal(err)
	}
	field := make([]bool, info.NumPieces())
	for i := range len(field) - 1 {
		field[i] = true
	}
	holder.send(t, pp.Message{Type: pp.Bitfield, Bitfield: field})
	awaitHolder(ctx, t, s, tor.InfoHash, 0)
	seed, requests := countingWebSeed(t, src)
	spec := specOf(tor, seed)
	spec.Trackers = []string{fakeTracker(t, s.Port())}
	c, err := NewPeer(PeerConfig{CacheDir: t.TempDir(), StateDir: t.TempDir(), ListenAddr: "127.0.0.1:0",
		StallTimeout: 45 * time.Second, WebSeedStall: 100 * time.Millisecond, QuietPeers: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Download(ctx, spec, func(Progress) {}); err != nil {
		t.Fatal(err)
	}
	if s.Refused() == 0 {
		t.Fatal("the seeder refused nothing: the test tests nothing")
	}
	if n := requests.Load(); n != 0 {
		t.Fatalf("the web seed got %d requests while the seeder was connected", n)
	}
}
