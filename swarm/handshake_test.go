package swarm

import (
	"bytes"
	"net"
	"testing"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
)

// readThrough writes sent into a wakeConn and returns what reading it in
// small pieces gives (until an error, if the writer closes after), the
// infohashes woken, and the error that ended the reading.
func readThrough(t *testing.T, sent []byte, closeAfter bool) ([]byte, []metainfo.Hash, error) {
	t.Helper()
	client, server := net.Pipe()
	defer server.Close()
	var woken []metainfo.Hash
	c := newWakeConn(server, func(ih metainfo.Hash) (*torrent.Torrent, bool) {
		woken = append(woken, ih)
		return nil, false
	})
	go func() {
		client.Write(sent)
		if closeAfter {
			client.Close()
		}
	}()
	var got []byte
	buf := make([]byte, 7)
	for closeAfter || len(got) < len(sent) {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			return got, woken, err
		}
	}
	client.Close()
	return got, woken, nil
}

// A plain handshake wakes the torrent it names, once, before its bytes
// reach the reader, and they reach it unchanged.
func TestWakeConnReadsAPlainHandshake(t *testing.T) {
	ih := metainfo.Hash{0xab, 1, 2, 3}
	msg := append([]byte(handshakePrefix), make([]byte, 8)...)
	msg = append(msg, ih[:]...)
	msg = append(msg, bytes.Repeat([]byte{'p'}, 20)...)   // the peer id
	msg = append(msg, 0, 0, 0, 1, 2, 0, 0, 0, 5, 1, 2, 3) // and what follows
	got, woken, err := readThrough(t, msg, false)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("read %q, %v; want the bytes sent", got, err)
	}
	if len(woken) != 1 || woken[0] != ih {
		t.Fatalf("woken %x; want %x once", woken, ih)
	}
}

// An obfuscated handshake (random bytes) wakes nothing and goes through
// unchanged; so does a connection that ends before a handshake's length,
// with its error after its bytes.
func TestWakeConnLeavesOtherBytesAlone(t *testing.T) {
	mse := bytes.Repeat([]byte{0x5c, 0x13, 0xee}, 40)
	got, woken, err := readThrough(t, mse, false)
	if err != nil || !bytes.Equal(got, mse) || len(woken) != 0 {
		t.Fatalf("obfuscated: read %d bytes (%v), woken %x", len(got), err, woken)
	}
	short := []byte(handshakePrefix)[:10]
	got, woken, err = readThrough(t, short, true)
	if !bytes.Equal(got, short) || err == nil || len(woken) != 0 {
		t.Fatalf("short: read %q, %v, woken %x", got, err, woken)
	}
}
