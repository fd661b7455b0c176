package swarm

import (
	"context"
	"testing"
	"time"

	pp "github.com/anacrolix/torrent/peer_protocol"
)

// A connection's writer wakes on its own every writerWake while it is
// useful to the peer, so a wake-up anacrolix loses (see writerWake) holds
// a piece back that long at most. Seen from a peer that is interested and
// asks for nothing: the seeder's keepalives come every writerWake, where
// anacrolix's default sends the first after a minute (and this test, which
// waits 20 s for it, fails).
func TestIdleWriterWakesOnItsOwn(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	src := t.TempDir()
	tor := writePackage(t, src, "w-1-any.tpkg", randomBytes(64<<10, 13))
	s := seeding(ctx, t, src, tor)
	p := dialRaw(t, s, tor.InfoHash)
	p.send(t, pp.Message{Type: pp.Interested})
	p.next(t, pp.Unchoke)
	p.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	for range 2 {
		var m pp.Message
		for !m.Keepalive {
			m = pp.Message{}
			if err := p.dec.Decode(&m); err != nil {
				t.Fatalf("no keepalive from the seeder's idle writer: %v", err)
			}
		}
	}
}
