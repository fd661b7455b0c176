package swarm

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	pp "github.com/anacrolix/torrent/peer_protocol"
)

// dropRounds is how many times each test drops a torrent under a peer's
// download. Before the storage answered a dropped torrent's reads,
// anacrolix v1.59.1 panicked here within the first few drops.
const dropRounds = 60

// hammer downloads tor from the client at port over one connection,
// keeping many requests queued there so that the client's goroutine that
// reads them from the disk never rests, and reports on busy once chunks
// have come back. It returns when the client closes the connection.
func hammer(ctx context.Context, port int, tor *Torrent, busy chan<- struct{}) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := conn.Write(handshake(tor.InfoHash, true)); err != nil {
		return err
	}
	r := bufio.NewReader(conn)
	if _, err := io.ReadFull(r, make([]byte, handshakeLen)); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	if _, err := conn.Write(pp.Message{Type: pp.Interested}.MustMarshalBinary()); err != nil {
		return err
	}
	h := hammering{conn: conn, chunks: chunksOf(tor), pieceLen: PieceLength(tor.Size), outstanding: make(map[int]bool)}
	dec := &pp.Decoder{R: r, MaxLength: 1 << 20}
	for {
		var m pp.Message
		if err := dec.Decode(&m); err != nil {
			return nil // the client closed the connection: the torrent is gone
		}
		if m.Keepalive {
			continue
		}
		switch m.Type {
		case pp.Unchoke:
			h.unchoked = true
		case pp.Piece, pp.Reject:
			delete(h.outstanding, h.index(m.Index, m.Begin))
			if h.received++; h.received == 32 && busy != nil {
				busy <- struct{}{}
			}
		}
		if err := h.fill(); err != nil {
			return nil
		}
	}
}

// hammering is one hammer's requests.
type hammering struct {
	conn        net.Conn
	chunks      []pp.Message
	pieceLen    int64
	outstanding map[int]bool
	next        int
	unchoked    bool
	received    int
}

const hammerQueue = 128

// chunksOf lists the requests of every 16 KiB chunk of tor.
func chunksOf(tor *Torrent) []pp.Message {
	pl := PieceLength(tor.Size)
	var chunks []pp.Message
	for off := int64(0); off < tor.Size; off += 16 << 10 {
		n := min(16<<10, tor.Size-off)
		chunks = append(chunks, pp.Message{Type: pp.Request, Index: pp.Integer(off / pl), Begin: pp.Integer(off % pl), Length: pp.Integer(n)})
	}
	return chunks
}

// index is the chunk of a piece's message.
func (h *hammering) index(piece, begin pp.Integer) int {
	return int((int64(piece)*h.pieceLen + int64(begin)) >> 14)
}

// fill queues requests up to hammerQueue, never one already queued (a
// duplicate closes the connection).
func (h *hammering) fill() error {
	if !h.unchoked {
		return nil
	}
	for len(h.outstanding) < hammerQueue {
		i := h.next
		h.next = (h.next + 1) % len(h.chunks)
		if h.outstanding[i] {
			continue
		}
		h.outstanding[i] = true
		if _, err := h.conn.Write(h.chunks[i].MustMarshalBinary()); err != nil {
			return err
		}
	}
	return nil
}

// dropUnderDownload drops a torrent rounds times while a peer downloads
// it: start makes the torrent available and returns the port to hammer,
// drop drops it.
func dropUnderDownload(t *testing.T, tor *Torrent, start func() int, drop func()) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for round := range dropRounds {
		port := start()
		busy, done := make(chan struct{}, 1), make(chan error, 1)
		go func() { done <- hammer(ctx, port, tor, busy) }()
		select {
		case <-busy:
		case err := <-done:
			t.Fatalf("round %d: the download ended before the drop: %v", round, err)
		case <-ctx.Done():
			t.Fatalf("round %d: no chunk came: %v", round, ctx.Err())
		}
		drop()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		case <-ctx.Done():
			t.Fatalf("round %d: the connection of a dropped torrent stayed open", round)
		}
	}
}

// The repository's seeder drops a package that left the index (Sync)
// while a peer is downloading it, again and again: no panic.
func TestSeederDropsUnderADownload(t *testing.T) {
	dir := t.TempDir()
	tor := writePackage(t, dir, "d-1-any.tpkg", randomBytes(4<<20, 21))
	s := newTestSeeder(t, dir)
	st := stampOf(filepath.Join(dir, tor.Name))
	item := Item{InfoHash: tor.InfoHash, InfoBytes: tor.InfoBytes, Size: st.size, MTimeNS: st.mtime, CTimeNS: st.ctime, Inode: st.inode}
	ctx := context.Background()
	dropUnderDownload(t, tor, func() int {
		if _, err := s.Sync(ctx, []Item{item}); err != nil {
			t.Fatal(err)
		}
		return s.Port()
	}, func() {
		if st, err := s.Sync(ctx, nil); err != nil || st.Dropped != 1 {
			t.Fatalf("sync: %+v, %v", st, err)
		}
	})
}

// A host drops a package it seeds (the package was removed) while a peer
// is downloading it, again and again: no panic.
func TestPeerDropsUnderADownload(t *testing.T) {
	c := newTestPeer(t)
	tor := writePackage(t, c.cfg.CacheDir, "d-1-any.tpkg", randomBytes(4<<20, 22))
	spec := specOf(tor, "")
	spec.WebSeeds = nil
	dropUnderDownload(t, tor, func() int {
		if err := c.Seed(spec); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "the seeded file checked", func() bool { return c.completion.isWhole(tor.InfoHash) })
		return c.Port()
	}, func() { c.Drop(tor.InfoHash) })
}

// A client that closes while a peer downloads from it (the daemon stops)
// closes every torrent the same way: no panic.
func TestClientClosesUnderADownload(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	tor := writePackage(t, dir, "d-1-any.tpkg", randomBytes(4<<20, 23))
	st := stampOf(filepath.Join(dir, tor.Name))
	item := Item{InfoHash: tor.InfoHash, InfoBytes: tor.InfoBytes, Size: st.size, MTimeNS: st.mtime, CTimeNS: st.ctime, Inode: st.inode}
	for round := range dropRounds / 4 {
		s, err := NewSeeder(SeederConfig{Dir: dir, StateDir: t.TempDir(), ListenAddr: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Sync(ctx, []Item{item}); err != nil {
			t.Fatal(err)
		}
		busy, done := make(chan struct{}, 1), make(chan error, 1)
		go func() { done <- hammer(ctx, s.Port(), tor, busy) }()
		select {
		case <-busy:
		case err := <-done:
			t.Fatalf("round %d: the download ended before the close: %v", round, err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if err := <-done; err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
}
