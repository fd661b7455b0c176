package publish

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"github.com/anacrolix/torrent/bencode"
)

// The tracker is our own rather than anacrolix's tracker/http/server: that
// handler always writes "failure reason" (empty) into successful answers,
// which clients such as aria2 take as a failure, answers errors with HTTP
// 500 instead of a bencoded reason, ignores numwant, and starts upstream
// "augmentation" goroutines for every announce with few peers. The peer
// store (peerstore.go) is what its AnnounceTracker interface would have
// been given.

// Tracker limits.
const (
	defaultNumWant = 50
	maxNumWant     = 200
	// maxPeers bounds the store's memory whatever announces arrive.
	maxPeers = 200_000
	// maxPeersPerIP bounds what one address holds, across torrents (an
	// entry is a peer of one torrent): a host seeding 16,000 packages, or
	// a NAT of hosts seeding fewer, fits; a flood from one address only
	// replaces its own oldest entries. At 1,024, a host seeding 3,000
	// packages was known for its last 1,024 only, and another host found
	// no peer for the others (test/bench/scale).
	maxPeersPerIP = 16384
)

// announceResponse is a BEP 3 tracker response with BEP 23 compact peers
// and BEP 7 peers6.
type announceResponse struct {
	Interval    int    `bencode:"interval"`
	MinInterval int    `bencode:"min interval"`
	Complete    int    `bencode:"complete"`
	Incomplete  int    `bencode:"incomplete"`
	Peers       []byte `bencode:"peers"`
	Peers6      []byte `bencode:"peers6,omitempty"`
}

type failureResponse struct {
	FailureReason string `bencode:"failure reason"`
}

// serveScrape is GET /scrape (BEP 48), which clients derive from the
// announce URL to show a swarm's size: complete, incomplete and downloaded
// (not counted: 0) for each info_hash asked about that the current
// generation has. A scrape of everything is refused: it would be as large as
// the repository.
func (p *Publisher) serveScrape(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Cache-Control", "no-store")
	hashes := r.URL.Query()["info_hash"]
	if len(hashes) == 0 || len(hashes) > maxNumWant {
		b, _ := bencode.Marshal(failureResponse{fmt.Sprintf("name 1 to %d info_hash parameters", maxNumWant)})
		w.Write(b)
		return
	}
	type counts struct {
		Complete   int `bencode:"complete"`
		Downloaded int `bencode:"downloaded"`
		Incomplete int `bencode:"incomplete"`
	}
	files := make(map[string]counts)
	g := p.gen.Load()
	ownSeed := 0
	if p.seederPeer(r).IsValid() {
		ownSeed = 1
	}
	for _, v := range hashes {
		var ih [20]byte
		if len(v) != len(ih) {
			continue
		}
		copy(ih[:], v)
		if g == nil || g.ByInfoHash(ih) == nil {
			continue
		}
		seeders, leechers := p.peers.Count(ih)
		files[v] = counts{Complete: seeders + ownSeed, Incomplete: leechers}
	}
	b, err := bencode.Marshal(struct {
		Files map[string]counts `bencode:"files"`
	}{files})
	if err != nil {
		b, _ = bencode.Marshal(failureResponse{"internal error"})
	}
	w.Write(b)
}

// serveAnnounce is GET /announce. Only torrents of the current generation
// are tracked. The server's own seeder never announces (it seeds everything
// all the time); it is added to every answer at the address the client
// reached this HTTP server on, which is this machine.
func (p *Publisher) serveAnnounce(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Cache-Control", "no-store")
	fail := func(reason string) {
		b, _ := bencode.Marshal(failureResponse{reason})
		w.Write(b)
	}
	req, err := parseAnnounce(r.URL.Query())
	if err != nil {
		fail(err.Error())
		return
	}
	g := p.gen.Load()
	if g == nil || g.ByInfoHash(req.ih) == nil {
		fail("unknown torrent: this tracker serves only the repository's packages")
		return
	}
	self, ok := clientAddr(r, req.port)
	if !ok {
		fail("cannot tell your address")
		return
	}
	p.peers.Announce(req.ih, req.id, self, req.event, req.left)
	if req.left != 0 && req.event != "stopped" && p.cfg.OnDemand != nil {
		p.cfg.OnDemand(req.ih)
	}
	peers, seeders, leechers := p.peers.Peers(req.ih, self, req.numWant)
	if sp := p.seederPeer(r); sp.IsValid() && req.numWant > 0 && sp != self {
		peers = append([]netip.AddrPort{sp}, peers...)
		if len(peers) > req.numWant {
			peers = peers[:req.numWant]
		}
		seeders++
	}
	resp := announceResponse{
		Interval:    int(p.cfg.AnnounceInterval / time.Second),
		MinInterval: int(p.cfg.AnnounceInterval / time.Second / 2),
		Complete:    seeders,
		Incomplete:  leechers,
	}
	resp.Peers, resp.Peers6 = packPeers(peers)
	b, err := bencode.Marshal(resp)
	if err != nil {
		fail("internal error")
		return
	}
	w.Write(b)
}

// announceRequest is what an announce asks.
type announceRequest struct {
	ih, id  [20]byte
	port    uint16
	left    int64 // -1 when unknown
	event   string
	numWant int
}

// parseAnnounce reads the query of an announce; an error is the reason to
// give the client.
func parseAnnounce(q url.Values) (announceRequest, error) {
	var req announceRequest
	if v := q.Get("info_hash"); len(v) == len(req.ih) {
		copy(req.ih[:], v)
	} else {
		return req, errors.New("info_hash must be 20 bytes")
	}
	if v := q.Get("peer_id"); len(v) == len(req.id) {
		copy(req.id[:], v)
	} else {
		return req, errors.New("peer_id must be 20 bytes")
	}
	port, err := strconv.ParseUint(q.Get("port"), 10, 16)
	if err != nil || port == 0 {
		return req, errors.New("port must be 1 to 65535")
	}
	req.port = uint16(port)
	req.left, err = strconv.ParseInt(q.Get("left"), 10, 64)
	if err != nil {
		req.left = -1 // unknown: counted as a leecher
	}
	req.event = q.Get("event")
	switch req.event {
	case "", "started", "completed", "stopped", "paused":
	default:
		return req, errors.New("unknown event")
	}
	req.numWant = defaultNumWant
	if v, err := strconv.Atoi(q.Get("numwant")); err == nil && v >= 0 {
		req.numWant = min(v, maxNumWant)
	}
	return req, nil
}

// clientAddr is where the client r announced from, at its port. It is the
// connection's, never the "ip" parameter, so nobody can point a swarm at a
// third party.
func clientAddr(r *http.Request, port uint16) (netip.AddrPort, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return netip.AddrPort{}, false
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip.Unmap().WithZone(""), port), true
}

// packPeers packs peers as BEP 23 (IPv4) and BEP 7 (IPv6) compact
// lists; v4 is never nil, so the answer always has its "peers".
func packPeers(peers []netip.AddrPort) (v4, v6 []byte) {
	v4 = []byte{}
	for _, a := range peers {
		if a.Addr().Is4() {
			ip4 := a.Addr().As4()
			v4 = append(v4, ip4[:]...)
			v4 = append(v4, byte(a.Port()>>8), byte(a.Port()))
		} else {
			ip6 := a.Addr().As16()
			v6 = append(v6, ip6[:]...)
			v6 = append(v6, byte(a.Port()>>8), byte(a.Port()))
		}
	}
	return v4, v6
}

// seederPeer is the server's own seeder as the client r can reach it: the
// local address of r's connection with the seeder's port.
func (p *Publisher) seederPeer(r *http.Request) netip.AddrPort {
	sd := p.seeder.Load()
	if sd == nil {
		return netip.AddrPort{}
	}
	port := sd.port
	local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return netip.AddrPort{}
	}
	ap, err := netip.ParseAddrPort(local.String())
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), uint16(port))
}
