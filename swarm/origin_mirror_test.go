package swarm

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	pp "github.com/anacrolix/torrent/peer_protocol"
)

// extHandshake is a BEP 10 handshake naming the client v.
func extHandshake(v string) pp.Message {
	return pp.Message{Type: pp.Extended, ExtendedID: pp.HandshakeExtendedID,
		ExtendedPayload: bencode.MustMarshal(pp.ExtendedHandshakeMessage{V: v, Reqq: 250})}
}

// seedingPeer starts a Peer (a mirror's when refuse) seeding the file
// data as name, and waits until its pieces are checked.
func seedingPeer(t *testing.T, refuse bool, name string, data []byte) (*Peer, *Torrent) {
	t.Helper()
	c, err := NewPeer(PeerConfig{CacheDir: t.TempDir(), StateDir: t.TempDir(), ListenAddr: "127.0.0.1:0", Refuse: refuse})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	tor := writePackage(t, c.cfg.CacheDir, name, data)
	spec := specOf(tor, "")
	spec.WebSeeds = nil
	if err := c.Seed(spec); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the seeded file checked", func() bool { return c.completion.isWhole(tor.InfoHash) })
	return c, tor
}

// awaitHolders waits until the policy counts n holders of piece i: peers'
// messages are read on the client's goroutines.
func awaitHolders(t *testing.T, p *originPolicy, ih [20]byte, i int, n int32) {
	t.Helper()
	if p == nil {
		t.Fatal("the client keeps no refusal policy")
	}
	waitFor(t, 30*time.Second, fmt.Sprintf("%d holders of piece %d", n, i), func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		ot := p.torrents[ih]
		return ot != nil && ot.holders[i] == n
	})
}

// A mirror's peer, through anacrolix and all, refuses as the repository's
// seeder does: a piece another connected peer announced is rejected, one
// nobody has is served, and a second copy of that one while it is on its
// way is rejected too. A host's peer serves whatever it is asked.
func TestMirrorPeerRefusesWhatAnotherPeerHas(t *testing.T) {
	data := randomBytes(256<<10, 31)
	m, tor := seedingPeer(t, true, "m-1-any.tpkg", data)
	pieceLen := uint32(PieceLength(tor.Size))
	a, b := dialRawPort(t, m.Port(), tor.InfoHash), dialRawPort(t, m.Port(), tor.InfoHash)
	b.send(t, pp.Message{Type: pp.Have, Index: 0})
	awaitHolders(t, m.policy, tor.InfoHash, 0, 1)
	for _, p := range []*rawPeer{a, b} {
		p.send(t, pp.Message{Type: pp.Interested})
		p.next(t, pp.Unchoke)
	}
	a.send(t, pp.Message{Type: pp.Request, Index: 0, Begin: 0, Length: 16 << 10})
	if m := a.next(t, pp.Reject, pp.Piece); m.Type != pp.Reject || m.Index != 0 {
		t.Fatalf("a asked for the piece b has: got %v %d", m.Type, m.Index)
	}
	a.send(t, pp.Message{Type: pp.Request, Index: 1, Begin: 0, Length: 16 << 10})
	if m := a.next(t, pp.Reject, pp.Piece); m.Type != pp.Piece || m.Index != 1 || !bytes.Equal(m.Piece, data[pieceLen:pieceLen+16<<10]) {
		t.Fatalf("a asked for a piece nobody has: got %v %d", m.Type, m.Index)
	}
	b.send(t, pp.Message{Type: pp.Request, Index: 1, Begin: 0, Length: 16 << 10})
	if m := b.next(t, pp.Reject, pp.Piece); m.Type != pp.Reject || m.Index != 1 {
		t.Fatalf("b asked for the piece on its way to a: got %v %d", m.Type, m.Index)
	}
	if m.Refused() != 2 {
		t.Fatalf("%d refusals counted, want 2", m.Refused())
	}

	h, htor := seedingPeer(t, false, "h-1-any.tpkg", data)
	a, b = dialRawPort(t, h.Port(), htor.InfoHash), dialRawPort(t, h.Port(), htor.InfoHash)
	b.send(t, pp.Message{Type: pp.Have, Index: 0})
	a.send(t, pp.Message{Type: pp.Interested})
	a.next(t, pp.Unchoke)
	a.send(t, pp.Message{Type: pp.Request, Index: 0, Begin: 0, Length: 16 << 10})
	if m := a.next(t, pp.Reject, pp.Piece); m.Type != pp.Piece || m.Index != 0 {
		t.Fatalf("a host asked for a piece another peer has: got %v %d", m.Type, m.Index)
	}
	if h.Refused() != 0 {
		t.Fatalf("a host counted %d refusals", h.Refused())
	}
}

// A mirror's peer does not count the pieces of the repository's seeder
// or of another mirror: both refuse too, and a host sent from one to the
// other would be refused by both. Any other peer's count.
func TestMirrorPeerIgnoresPeersThatRefuse(t *testing.T) {
	data := randomBytes(256<<10, 32)
	m, tor := seedingPeer(t, true, "i-1-any.tpkg", data)
	var info metainfo.Info
	if err := unmarshalInfo(tor.InfoBytes, &info); err != nil {
		t.Fatal(err)
	}
	// All but the last piece: a peer with all of them is dropped (both
	// complete).
	field := make([]bool, info.NumPieces())
	for i := range len(field) - 1 {
		field[i] = true
	}
	for _, name := range []string{RepositoryClientName, MirrorClientName + " 1.0"} {
		p := dialRawPort(t, m.Port(), tor.InfoHash)
		p.send(t, extHandshake(name))
		p.send(t, pp.Message{Type: pp.Bitfield, Bitfield: field})
	}
	host := dialRawPort(t, m.Port(), tor.InfoHash)
	host.send(t, extHandshake("aria2/1.37"))
	host.send(t, pp.Message{Type: pp.Have, Index: 1})
	awaitHolders(t, m.policy, tor.InfoHash, 1, 1)
	awaitHolders(t, m.policy, tor.InfoHash, 0, 0)

	a := dialRawPort(t, m.Port(), tor.InfoHash)
	a.send(t, pp.Message{Type: pp.Interested})
	a.next(t, pp.Unchoke)
	a.send(t, pp.Message{Type: pp.Request, Index: 0, Begin: 0, Length: 16 << 10})
	if m := a.next(t, pp.Reject, pp.Piece); m.Type != pp.Piece || m.Index != 0 {
		t.Fatalf("a piece only the seeder and a mirror announced: got %v %d", m.Type, m.Index)
	}
	a.send(t, pp.Message{Type: pp.Request, Index: 1, Begin: 0, Length: 16 << 10})
	if m := a.next(t, pp.Reject, pp.Piece); m.Type != pp.Reject || m.Index != 1 {
		t.Fatalf("a piece a host announced: got %v %d", m.Type, m.Index)
	}
}

// The extended handshake can come after a peer's pieces: what it
// announced is forgotten then. The repository's policy ignores no one.
func TestPolicyIgnoresAPeerNamedLate(t *testing.T) {
	ih := [20]byte{5}
	for _, tc := range []struct {
		p    *originPolicy
		want int32
	}{{newMirrorPolicy(), 0}, {newOriginPolicy(), 1}} {
		tc.p.track(ih, 4)
		c, peer := pipeOrigin(t, tc.p)
		go io.Copy(io.Discard, c)
		var sent bytes.Buffer
		sent.Write(handshake(ih, true))
		sent.Write(pp.Message{Type: pp.Have, Index: 2}.MustMarshalBinary())
		sent.Write(extHandshake(RepositoryClientName).MustMarshalBinary())
		sent.Write(pp.Message{Type: pp.Have, Index: 3}.MustMarshalBinary())
		if _, err := peer.Write(sent.Bytes()); err != nil {
			t.Fatal(err)
		}
		peer.Write([]byte{0, 0, 0, 0}) // taken once all before it was read
		tc.p.mu.Lock()
		h := tc.p.torrents[ih].holders
		tc.p.mu.Unlock()
		if h[2] != tc.want || h[3] != tc.want {
			t.Errorf("ignore %q: holders %v, want %d of pieces 2 and 3", tc.p.ignore, h, tc.want)
		}
		c.Close()
	}
}
