package swarm

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/storage"
	"golang.org/x/time/rate"
)

// listenAddr is a parsed "host:port" for a torrent client.
type listenAddr struct {
	text string
	host string
	port int
}

func parseListenAddr(s string) (listenAddr, error) {
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		return listenAddr{}, fmt.Errorf("torrent listen address %q: %w", s, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return listenAddr{}, fmt.Errorf("torrent listen address %q: bad port", s)
	}
	return listenAddr{text: s, host: host, port: int(port)}, nil
}

// trackerDial dials trackers from the address the client listens on, when
// that is one address: the tracker names a peer by the address its announce
// came from, so a host that listens on one of several addresses must
// announce from it to be found. nil (the default dialer) otherwise.
func (l listenAddr) trackerDial() func(ctx context.Context, network, addr string) (net.Conn, error) {
	ip, err := netip.ParseAddr(l.host)
	if err != nil || ip.IsUnspecified() {
		return nil
	}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip.AsSlice()}}
	return d.DialContext
}

// newTorrentConfig is what the seeder and the hosts' clients share: TCP
// only on one address (one socket, no cgo, what every client speaks), no
// DHT, WebTorrent or port mapping, uploads to anyone interested.
// dialsPerSecond bounds the connections a torrent client opens.
const dialsPerSecond = 500

func newTorrentConfig(l listenAddr, st storage.ClientImpl, log *slog.Logger) *torrent.ClientConfig {
	tc := torrent.NewDefaultClientConfig()
	tc.DefaultStorage = st
	tc.Seed = true
	tc.NoDHT = true
	tc.DisableWebtorrent = true
	tc.DisableUTP = true
	// Handshakes in clear: the repository's seeder reads the requests it
	// gets (origin.go), and an obfuscated handshake (anacrolix's default)
	// costs a Diffie-Hellman exchange per connection for nothing, since the
	// data is signed and not secret. Peers that require obfuscation are
	// still answered.
	tc.HeaderObfuscationPolicy = torrent.HeaderObfuscationPolicy{Preferred: false, RequirePreferred: false}
	tc.NoDefaultPortForwarding = true
	// anacrolix/torrent v1.59.1 reads the data of a peer's queued requests on
	// one goroutine that may wait for a per-connection allocation
	// reservation which, being FIFO, is only granted after requests that
	// same goroutine has not read yet: uploads to a peer that queues more
	// than this allowance stall for good (aria2 hits it at once). Allowing
	// the whole request queue (1024 requests of 16 KiB) means no well-behaved
	// peer ever waits; the memory is only held for requests actually queued.
	tc.MaxAllocPeerRequestDataPerConn = 1024 * 16 << 10
	tc.KeepAliveTimeout = writerWake
	// anacrolix dials at most 10 peers a second (burst 10), a guard for home
	// routers. A transaction of hundreds of packages is hundreds of
	// torrents, each needing its own connection: at 10 a second the
	// downloads of small packages finished one every 100 ms whatever the
	// network (test/bench/scale). Still bounded, so one host cannot flood
	// another with connection attempts.
	tc.DialRateLimiter = rate.NewLimiter(dialsPerSecond, dialsPerSecond)
	// A client whose torrents are all dormant still takes connections: the
	// handshake wakes the torrent (handshake.go). And anacrolix refuses
	// every connection from a /24 for 15 minutes after one handshake for a
	// torrent it does not have (or an obfuscated one it cannot read): one
	// stray or hostile peer, or a peer trying obfuscation first with a
	// dormant torrent, would cut off every host of the subnet. A
	// connection costs little until its handshake, which has a deadline.
	tc.AlwaysWantConns = true
	tc.DisableAcceptRateLimiting = true
	tc.ListenPort = l.port
	if addr, err := netip.ParseAddr(l.host); err == nil {
		tc.DisableIPv6 = addr.Is4()
		tc.DisableIPv4 = addr.Is6()
	}
	host := l.host
	tc.ListenHost = func(string) string { return host }
	// tpm announces, not anacrolix (announcer.go): anacrolix tells every
	// tracker "stopped" when a torrent is dropped, so each torrent going
	// dormant would take its seeder off the trackers.
	tc.DisableTrackers = true
	tc.Slogger = log
	return tc
}

// newTorrentClient starts the client on a TCP socket of its own, closing
// st if it cannot. wrap, when set, sees every connection; wake, when set,
// is given the infohash of each plain handshake a peer opens a connection
// with, before anacrolix reads it (handshake.go).
func newTorrentClient(tc *torrent.ClientConfig, l listenAddr, st storage.ClientImplCloser, wrap func(net.Conn) net.Conn, wake wakeFunc) (*torrent.Client, error) {
	network := "tcp"
	if addr, err := netip.ParseAddr(l.host); err == nil && addr.Is4() {
		network = "tcp4"
	} else if err == nil {
		network = "tcp6"
	}
	// What anacrolix's own TCP socket does: no keep-alives (the protocol
	// has its own), no dual-stack fallback.
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), network, l.text)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("torrent client on %s: %w", l.text, err)
	}
	tc.DisableTCP = true
	cl, err := torrent.NewClient(tc)
	if err != nil {
		ln.Close()
		st.Close()
		return nil, fmt.Errorf("torrent client on %s: %w", l.text, err)
	}
	go func() {
		<-cl.Closed()
		ln.Close()
	}()
	if wrap == nil {
		wrap = func(c net.Conn) net.Conn { return c }
	}
	cl.AddListener(wrappingListener{ln, wrap, wake})
	cl.AddDialer(wrappingDialer{network, &net.Dialer{KeepAlive: -1, FallbackDelay: -1}, wrap})
	return cl, nil
}

type wrappingListener struct {
	net.Listener
	wrap func(net.Conn) net.Conn
	wake wakeFunc
}

func (l wrappingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if l.wake != nil {
		// Under wrap, which on the seeder parses the handshake too and
		// must find the torrent live.
		c = newWakeConn(c, l.wake)
	}
	return l.wrap(c), nil
}

type wrappingDialer struct {
	network string
	d       *net.Dialer
	wrap    func(net.Conn) net.Conn
}

func (d wrappingDialer) DialerNetwork() string { return d.network }

func (d wrappingDialer) Dial(ctx context.Context, addr string) (net.Conn, error) {
	c, err := d.d.DialContext(ctx, d.network, addr)
	if err != nil {
		return nil, err
	}
	return d.wrap(c), nil
}

// writerWake bounds how long a connection's writer sleeps while it has
// something to send. anacrolix/torrent v1.59.1's writer fills its buffer
// under the client lock, lets go of it, and only then takes the channel that
// a wake-up closes: a piece read from storage in between (its
// servePeerRequest) wakes nobody, and the piece waits for the next event on
// the connection, a minute's keepalive or the peer giving up. Measured: one
// download in a hundred, of a transaction of 500 small packages, waited
// about 9 s with its request answered by no piece; the transaction took 10.5
// s instead of 2.5. Upstream fixed it in v1.62.0 (issue 1070), whose new
// dependencies could not be fetched for this build. The keepalive timer is
// the writer's only other wake-up, so it rings this often: a connection with
// nothing to send sends nothing unless it is useful to the peer (a 4-byte
// keepalive a second, then), and an idle host's writers are not woken at all
// (the timer is re-armed only by a write).
const writerWake = time.Second
