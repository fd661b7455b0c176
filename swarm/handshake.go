package swarm

import (
	"bytes"
	"io"
	"net"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
)

// A plain BitTorrent handshake begins with the protocol's name, eight
// reserved bytes and the infohash: 48 bytes that name the torrent a
// connecting peer wants before anacrolix reads them. anacrolix drops a
// connection for a torrent it does not have, so a dormant torrent must be
// live by the time it looks: wakeConn reads those bytes first, wakes the
// torrent, then hands them on unchanged.
//
// An obfuscated handshake (MSE) hides the infohash behind a key exchange;
// finding it would mean trying every dormant torrent's key, so obfuscated
// connections reach live torrents only. tpm's peers send plain handshakes
// (newTorrentConfig), and so do aria2 and Transmission unless told to
// require encryption.
const handshakePrefix = "\x13BitTorrent protocol"

// plainHandshakeLen is the part of a plain handshake that names the
// torrent: the prefix, the reserved bytes and the infohash.
const plainHandshakeLen = len(handshakePrefix) + 8 + 20

// wakeFunc makes a dormant torrent live for a peer that asks for it, and
// returns it; false when the client does not hold it, or has no room.
type wakeFunc func(metainfo.Hash) (*torrent.Torrent, bool)

// wakeConn is an accepted connection whose first read wakes the torrent its
// handshake names.
type wakeConn struct {
	net.Conn
	wake    wakeFunc
	pending []byte // read ahead, not yet handed on
	err     error  // what ended the read ahead, once pending is handed on
	peeked  bool
}

func newWakeConn(c net.Conn, wake wakeFunc) net.Conn {
	return &wakeConn{Conn: c, wake: wake}
}

// Read runs on the goroutine anacrolix reads the handshake with, under the
// deadline it set, so the read ahead waits no longer than its own read.
func (c *wakeConn) Read(b []byte) (int, error) {
	if !c.peeked {
		c.peeked = true
		head := make([]byte, plainHandshakeLen)
		n, err := io.ReadFull(c.Conn, head)
		if n == len(head) && bytes.HasPrefix(head, []byte(handshakePrefix)) {
			c.wake(metainfo.Hash(head[len(handshakePrefix)+8:]))
		}
		c.pending, c.err = head[:n], err
	}
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	if c.err != nil {
		return 0, c.err
	}
	return c.Conn.Read(b)
}
