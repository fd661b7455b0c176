package publish

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"
)

// waitFor is the generous deadline of every wait in these tests: a
// condition holds long before it, or the test fails.
const waitFor = 10 * time.Second

// startLimited serves h on 127.0.0.1 with the limits lim.
func startLimited(t *testing.T, h http.Handler, lim ConnLimits) (*Server, string) {
	t.Helper()
	srv, err := ListenLimited("127.0.0.1:0", h, nil, lim)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return srv, srv.Addr()
}

// dialFrom connects to addr from the local address ip (any 127.0.0.x is
// this machine's).
func dialFrom(t *testing.T, ip, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: waitFor}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", ip, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(waitFor))
	return c
}

// ask sends GET path on c (keep-alive) and returns the answer's status and
// body, or the error when the server closed c instead.
func ask(c net.Conn, path string) (int, string, error) {
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: tpm\r\n\r\n", path); err != nil {
		return 0, "", fmt.Errorf("write request: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, "", fmt.Errorf("read answer: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// until waits, up to waitFor, for cond to hold, checking each time the
// server may have acted.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", waitFor, what)
		}
		<-tick.C
	}
}

// perAddr is the most connections the server counts from one address.
func perAddr(s *Server) int {
	s.ln.mu.Lock()
	defer s.ln.mu.Unlock()
	most := 0
	for _, cs := range s.ln.byAddr {
		most = max(most, len(cs))
	}
	return most
}

// TestIdleConnectionsCannotStarveHealthz is issue 29's fourth finding at a
// small scale: connections from many local addresses, one /healthz each,
// then idle, well past the caps (there 19,990 made accept fail with "too
// many open files" and /healthz went unanswered for 40 s). The server
// keeps within its caps by closing the idle ones, and a newcomer from
// another address is answered.
func TestIdleConnectionsCannotStarveHealthz(t *testing.T) {
	lim := ConnLimits{Total: 64, PerAddr: 8, Pressure: 48, Idle: time.Hour, PressureIdle: time.Hour}
	srv, addr := startLimited(t, healthyPublisher(t), lim)
	answered := 0
	for a := range 24 {
		ip := fmt.Sprintf("127.0.0.%d", 10+a)
		for range 12 {
			c := dialFrom(t, ip, addr)
			if code, _, err := ask(c, "/healthz"); err == nil && code == http.StatusOK {
				answered++
			}
			if s := srv.Conns(); s.Open > lim.Total || perAddr(srv) > lim.PerAddr {
				t.Fatalf("%d open, %d from one address: over the caps %d and %d", s.Open, perAddr(srv), lim.Total, lim.PerAddr)
			}
		}
	}
	s := srv.Conns()
	t.Logf("288 idle connections: %d answered, %d open, %d closed while idle, %d refused", answered, s.Open, s.Evicted, s.Refused)
	if s.Evicted < 288-int64(lim.Total) {
		t.Errorf("%d idle connections closed, want at least %d", s.Evicted, 288-lim.Total)
	}

	c := dialFrom(t, "127.0.0.200", addr)
	code, body, err := ask(c, "/healthz")
	if err != nil || code != http.StatusOK || !strings.HasPrefix(body, "ok generation=1") {
		t.Fatalf("/healthz from a newcomer: %d %q %v", code, body, err)
	}
}

// TestConnectionRefusedOnlyWhenAllWork: at a cap, with every connection in
// a request, a newcomer is closed at once; once they end, one is answered.
func TestConnectionRefusedOnlyWhenAllWork(t *testing.T) {
	for _, tc := range []struct {
		name       string
		lim        ConnLimits
		holders    []string // addresses holding a request each
		newcomer   string   // refused
		otherwhere string   // answered (empty: none is while the holders hold)
	}{
		{"total", ConnLimits{Total: 4, PerAddr: 4, Pressure: 4}, []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"}, "127.0.0.6", ""},
		{"per address", ConnLimits{Total: 16, PerAddr: 2, Pressure: 16}, []string{"127.0.0.9", "127.0.0.9"}, "127.0.0.9", "127.0.0.10"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			srv, addr := startLimited(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/hold" {
					<-release
				}
				io.WriteString(w, "ok")
			}), tc.lim)
			t.Cleanup(func() { close(release) }) // before the shutdown waits for them
			for _, ip := range tc.holders {
				fmt.Fprintf(dialFrom(t, ip, addr), "GET /hold HTTP/1.1\r\nHost: tpm\r\n\r\n")
			}
			until(t, "every holder in its request", func() bool {
				srv.ln.mu.Lock()
				defer srv.ln.mu.Unlock()
				return srv.ln.open == len(tc.holders) && srv.ln.quiet.Len() == 0
			})
			if _, _, err := ask(dialFrom(t, tc.newcomer, addr), "/healthz"); err == nil {
				t.Fatal("a newcomer over the cap was answered")
			}
			if s := srv.Conns(); s.Refused != 1 || s.Evicted != 0 {
				t.Errorf("%+v, want one refused, none closed", s)
			}
			if tc.otherwhere != "" {
				if code, _, err := ask(dialFrom(t, tc.otherwhere, addr), "/healthz"); err != nil || code != http.StatusOK {
					t.Errorf("another address was refused: %d %v", code, err)
				}
			}
		})
	}
}

// TestIdleTimeoutShortensUnderPressure: connections that go idle while
// the server holds Pressure or more wait PressureIdle, not Idle; and once
// a newcomer brings it to Pressure, those idle longer are closed.
func TestIdleTimeoutShortensUnderPressure(t *testing.T) {
	lim := ConnLimits{Total: 16, PerAddr: 16, Pressure: 4, Idle: time.Hour, PressureIdle: 50 * time.Millisecond}
	srv, addr := startLimited(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }), lim)
	for i := range 8 {
		if _, _, err := ask(dialFrom(t, "127.0.0.20", addr), "/"); err != nil {
			t.Fatal(err)
		}
		if i < 3 {
			// The server reports a connection idle a moment after its
			// answer: the first three must be quiet before the 4th
			// comes, or the last of them goes idle under pressure too.
			until(t, "the first connections quiet", func() bool { return quietConns(srv) == i+1 })
		}
	}
	// The 4th to 8th went idle under pressure: they close by themselves.
	until(t, "those idle under pressure closed", func() bool { return srv.Conns().Open <= 3 })
	// The first three went idle before: a newcomer brings the server to
	// Pressure again, and they have been idle longer than PressureIdle.
	c := dialFrom(t, "127.0.0.21", addr)
	if _, _, err := ask(c, "/"); err != nil {
		t.Fatal(err)
	}
	until(t, "the older idle ones closed under pressure", func() bool { return srv.Conns().Open == 1 })
	if _, _, err := ask(c, "/"); err != nil {
		t.Fatalf("the newcomer's connection was closed: %v", err)
	}
}

// TestDefaultConnLimits: the default caps leave most descriptors to the
// rest of the process.
func TestDefaultConnLimits(t *testing.T) {
	lim := DefaultConnLimits()
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	t.Logf("RLIMIT_NOFILE %d: %+v", rl.Cur, lim)
	if rl.Cur >= 64 && uint64(lim.Total) > rl.Cur/4 {
		t.Errorf("%d connections in all of %d descriptors: no reserve", lim.Total, rl.Cur)
	}
	if lim.Total < 16 || lim.Total > maxConns || lim.PerAddr > lim.Total || lim.Pressure >= lim.Total || lim.PressureIdle >= lim.Idle {
		t.Errorf("limits out of shape: %+v", lim)
	}
}

// TestAddrKey: the per-address cap counts an IPv6 /64 as one address, and
// an IPv4-mapped address as its IPv4 one.
func TestAddrKey(t *testing.T) {
	key := func(s string) netip.Addr { return addrKey(net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s))) }
	if a, b := key("[2001:db8:1:2::1]:80"), key("[2001:db8:1:2:ffff::9]:81"); a != b {
		t.Errorf("one /64, two keys: %v %v", a, b)
	}
	if a, b := key("[2001:db8:1:2::1]:80"), key("[2001:db8:1:3::1]:80"); a == b {
		t.Errorf("two /64s, one key: %v", a)
	}
	if k := key("[::ffff:192.0.2.1]:80"); k != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("IPv4-mapped: %v", k)
	}
}

// quietConns is how many connections srv counts as quiet.
func quietConns(srv *Server) int {
	srv.ln.mu.Lock()
	defer srv.ln.mu.Unlock()
	return srv.ln.quiet.Len()
}
