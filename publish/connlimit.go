package publish

import (
	"container/list"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// Idle keep-alive connections cost a descriptor each and about 25 KB: 19,990
// of them from local addresses made accept fail with "too many open files",
// left /healthz unanswered for 40 s and the server at 491 MB. So the HTTP
// listener counts what it holds open: in all and per remote address, each
// well under RLIMIT_NOFILE (the seeder's files and peers, the DHT and the
// databases need the rest). At a cap a connection that is not working (idle
// between requests, or new and still silent) makes room, the one quiet
// longest first; only when every one is working is the newcomer closed at
// once. Above the pressure mark, quiet connections wait PressureIdle rather
// than the idle timeout.

// ConnLimits bounds the connections a Server keeps open.
type ConnLimits struct {
	// Total is the most open at once; PerAddr the most from one address
	// (an IPv6 /64, what one host is usually given, counts as one).
	Total, PerAddr int
	// Pressure is the number open from which a quiet connection is closed
	// after PressureIdle instead of Idle, the keep-alive idle timeout.
	Pressure           int
	Idle, PressureIdle time.Duration
}

// Connection limits by default.
const (
	// maxConns bounds the total whatever the descriptor limit: 4,096
	// connections are about 100 MB.
	maxConns        = 4096
	maxConnsPerAddr = 128
	idleTimeout     = 2 * time.Minute
	pressureIdle    = 5 * time.Second
)

// DefaultConnLimits are the limits for this process: a quarter of its
// descriptor limit (RLIMIT_NOFILE; at most maxConns) in all, the rest kept
// for everything else it opens.
func DefaultConnLimits() ConnLimits {
	nofile := uint64(1024) // the usual soft limit, if it cannot be read
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil {
		nofile = rl.Cur
	}
	total := int(min(nofile/4, maxConns))
	total = max(total, 16)
	return ConnLimits{
		Total:        total,
		PerAddr:      min(max(total/16, 8), maxConnsPerAddr),
		Pressure:     total / 2,
		Idle:         idleTimeout,
		PressureIdle: pressureIdle,
	}
}

// withDefaults fills the zero fields of lim from DefaultConnLimits.
func (lim ConnLimits) withDefaults() ConnLimits {
	def := DefaultConnLimits()
	if lim.Total <= 0 {
		lim.Total = def.Total
	}
	if lim.PerAddr <= 0 {
		lim.PerAddr = min(def.PerAddr, lim.Total)
	}
	if lim.Pressure <= 0 {
		lim.Pressure = lim.Total / 2
	}
	if lim.Idle <= 0 {
		lim.Idle = def.Idle
	}
	if lim.PressureIdle <= 0 {
		lim.PressureIdle = def.PressureIdle
	}
	return lim
}

// ConnStats are a Server's connection figures.
type ConnStats struct {
	Open int
	// Refused connections were closed at once (every one at the cap was
	// working); Evicted were closed while quiet to make room or under
	// pressure.
	Refused, Evicted int64
}

// connLimiter is a net.Listener that keeps the limits; the Server's
// ConnState hook tells it which connections are quiet.
type connLimiter struct {
	net.Listener
	lim ConnLimits
	log *slog.Logger

	mu     sync.Mutex
	open   int
	byAddr map[netip.Addr]map[*limitedConn]struct{}
	// quiet are the connections with no request in progress, the one quiet
	// longest first.
	quiet            list.List
	refused, evicted int64
	// What was refused and evicted since the last warning, which is
	// written at most every warnEvery.
	unwarnedRefused, unwarnedEvicted int64
	lastWarn                         time.Time
}

const warnEvery = 10 * time.Second

func newConnLimiter(ln net.Listener, lim ConnLimits, log *slog.Logger) *connLimiter {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &connLimiter{Listener: ln, lim: lim, log: log, byAddr: make(map[netip.Addr]map[*limitedConn]struct{})}
}

// limitedConn is a connection the limiter counts.
type limitedConn struct {
	net.Conn
	l     *connLimiter
	addr  netip.Addr
	since time.Time     // quiet since
	elem  *list.Element // in l.quiet while quiet
	done  bool          // no longer counted (closed or evicted)
}

// addrKey is what the per-address cap counts by.
func addrKey(a net.Addr) netip.Addr {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}
	}
	ip := tcp.AddrPort().Addr().Unmap().WithZone("")
	if ip.Is6() {
		return netip.PrefixFrom(ip, 64).Masked().Addr()
	}
	return ip
}

// Accept returns the next connection within the limits, making room by
// closing quiet ones, and closes at once those it cannot make room for.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if lc := l.admit(c); lc != nil {
			return lc, nil
		}
	}
}

// admit counts c in, or closes it when no room can be made.
func (l *connLimiter) admit(c net.Conn) *limitedConn {
	now := time.Now()
	lc := &limitedConn{Conn: c, l: l, addr: addrKey(c.RemoteAddr()), since: now}
	l.mu.Lock()
	var victims []*limitedConn
	if l.open+1 >= l.lim.Pressure {
		// Under pressure, with the newcomer: what has been quiet
		// PressureIdle goes, as if that were the idle timeout.
		for e := l.quiet.Front(); e != nil; e = e.Next() {
			v := e.Value.(*limitedConn)
			if now.Sub(v.since) < l.lim.PressureIdle {
				break
			}
			victims = append(victims, v)
		}
		for _, v := range victims {
			l.releaseLocked(v)
		}
	}
	mine := l.byAddr[lc.addr]
	if len(mine) >= l.lim.PerAddr {
		v := l.quietestLocked(mine)
		if v == nil {
			return l.refuse(c, victims)
		}
		l.releaseLocked(v)
		victims = append(victims, v)
	}
	if l.open >= l.lim.Total {
		if l.quiet.Len() == 0 {
			return l.refuse(c, victims)
		}
		v := l.quiet.Front().Value.(*limitedConn)
		l.releaseLocked(v)
		victims = append(victims, v)
	}
	l.open++
	if l.byAddr[lc.addr] == nil {
		l.byAddr[lc.addr] = make(map[*limitedConn]struct{})
	}
	l.byAddr[lc.addr][lc] = struct{}{}
	lc.elem = l.quiet.PushBack(lc) // new: quiet until its first request
	l.evicted += int64(len(victims))
	l.unwarnedEvicted += int64(len(victims))
	warn := l.warnLocked(now)
	l.mu.Unlock()
	closeAll(victims)
	warn()
	return lc
}

// refuse closes c, which found no room, and the victims chosen before that
// was known; it is called with l.mu held and releases it.
func (l *connLimiter) refuse(c net.Conn, victims []*limitedConn) *limitedConn {
	l.refused++
	l.unwarnedRefused++
	l.evicted += int64(len(victims))
	l.unwarnedEvicted += int64(len(victims))
	warn := l.warnLocked(time.Now())
	l.mu.Unlock()
	c.Close()
	closeAll(victims)
	warn()
	return nil
}

func closeAll(cs []*limitedConn) {
	for _, c := range cs {
		c.Conn.Close()
	}
}

// warnLocked returns what logs the refusals and evictions since the last
// warning, if one is due, to be called once the lock is released.
func (l *connLimiter) warnLocked(now time.Time) func() {
	if l.unwarnedRefused+l.unwarnedEvicted == 0 || now.Sub(l.lastWarn) < warnEvery {
		return func() {}
	}
	refused, evicted, open := l.unwarnedRefused, l.unwarnedEvicted, l.open
	l.unwarnedRefused, l.unwarnedEvicted, l.lastWarn = 0, 0, now
	return func() {
		l.log.Warn("HTTP connections at their limits: quiet ones closed, new ones refused when none was quiet",
			"open", open, "total_cap", l.lim.Total, "per_address_cap", l.lim.PerAddr, "closed_quiet", evicted, "refused", refused)
	}
}

// quietestLocked is the connection of cs quiet longest, or nil when every
// one is working.
func (l *connLimiter) quietestLocked(cs map[*limitedConn]struct{}) *limitedConn {
	var best *limitedConn
	for c := range cs {
		if c.elem != nil && (best == nil || c.since.Before(best.since)) {
			best = c
		}
	}
	return best
}

// releaseLocked stops counting c.
func (l *connLimiter) releaseLocked(c *limitedConn) {
	if c.done {
		return
	}
	c.done = true
	if c.elem != nil {
		l.quiet.Remove(c.elem)
		c.elem = nil
	}
	l.open--
	if mine := l.byAddr[c.addr]; mine != nil {
		delete(mine, c)
		if len(mine) == 0 {
			delete(l.byAddr, c.addr)
		}
	}
}

// connState is the Server's ConnState hook: a connection is quiet from
// when it is accepted until its first request is read, and again while
// idle between requests.
func (l *connLimiter) connState(c net.Conn, st http.ConnState) {
	lc, ok := c.(*limitedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if lc.done {
		return
	}
	switch st {
	case http.StateActive:
		if lc.elem != nil {
			l.quiet.Remove(lc.elem)
			lc.elem = nil
		}
	case http.StateIdle:
		if lc.elem == nil {
			lc.since = time.Now()
			lc.elem = l.quiet.PushBack(lc)
		}
	case http.StateClosed:
		l.releaseLocked(lc)
	case http.StateHijacked:
		// Counted until whoever took it closes it.
		if lc.elem != nil {
			l.quiet.Remove(lc.elem)
			lc.elem = nil
		}
	}
}

// Stats are the limiter's figures.
func (l *connLimiter) Stats() ConnStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return ConnStats{Open: l.open, Refused: l.refused, Evicted: l.evicted}
}

// Close closes the connection and stops counting it.
func (c *limitedConn) Close() error {
	c.l.mu.Lock()
	c.l.releaseLocked(c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// SetReadDeadline shortens the wait of a quiet connection to PressureIdle
// under pressure. The server sets the idle deadline just after it reports
// the connection idle, and the header deadline when a request begins, both
// through here.
func (c *limitedConn) SetReadDeadline(t time.Time) error {
	c.l.mu.Lock()
	if c.elem != nil && c.l.open >= c.l.lim.Pressure {
		if limit := time.Now().Add(c.l.lim.PressureIdle); t.IsZero() || t.After(limit) {
			t = limit
		}
	}
	c.l.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

// ReadFrom keeps the server's sendfile path for package files: net/http
// looks for it on the connection it accepted.
func (c *limitedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// CloseWrite keeps net/http's half-close before it closes a connection
// whose request body it did not read.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
