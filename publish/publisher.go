// Package publish is the repository server's HTTP side: the signed index,
// the package files (the torrents' web seed), the .torrent files, a
// BitTorrent tracker and a health check, all served from one immutable
// generation at a time.
//
// The current generation sits behind an atomic pointer: every request loads
// it once and answers from it alone, so a client never sees an index and
// torrents from different generations, and a swap never waits for a reader.
package publish

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"tpm/generation"
	"tpm/metrics"
	torrentfile "tpm/swarm"
)

// Config configures a Publisher.
type Config struct {
	// Dir is the package directory; files are opened through an os.Root on
	// it, so no request can read outside it.
	Dir string
	// NoTracker turns the built-in tracker off (/announce and /scrape
	// answer 404): the torrents name standard trackers instead.
	NoTracker bool
	// AnnounceInterval is the interval the tracker asks clients to keep;
	// peers expire after twice this. Zero means 10 minutes.
	AnnounceInterval time.Duration
	// OnStale is called (from a request's goroutine) when a published file
	// no longer matches its generation, at most once every StaleEvery
	// (zero: 5 s) however many requests notice; the server asks for a
	// rescan.
	OnStale    func(file string)
	StaleEvery time.Duration
	// OnDemand, when set, is called (from a request's goroutine) for each
	// announce of a host that wants a package (it has not got it all):
	// the seeder wakes the package's torrent.
	OnDemand func(infoHash [20]byte)
	// PeersFile, when set, keeps the tracker's peers across restarts: read
	// by New, written by Close.
	PeersFile string
	Logger    *slog.Logger
	Now       func() time.Time
	// Metrics, when set, is served at /metrics; OnRequest, when set, is
	// told of every answer: its route, status code and body bytes.
	Metrics   http.Handler
	OnRequest func(route string, code int, bytes int64)
	// What the pages say of the repository: its URL as hosts reach it, and
	// its signing key (id and one-line public key).
	PublicURL, KeyID, PublicKey string
	// Listing, when set, gives the first max files of the package whose
	// sha256 is sum, as its archive listed them, how many it has, and
	// whether they are known, for the package pages.
	Listing func(sum string, max int) (files []string, total int, ok bool)
}

// Publisher serves generations over HTTP. It is an http.Handler.
type Publisher struct {
	cfg   Config
	root  *os.Root
	gen   atomic.Pointer[generation.Generation]
	peers *PeerStore
	log   *slog.Logger
	// sigETag and jsonETag are derived once per generation.
	etags atomic.Pointer[etags]
	pages *template.Template
	// seeder is the server's own seeder while one runs (SetSeeder).
	seeder    atomic.Pointer[seeder]
	lastStale atomic.Int64 // unix ns of the last OnStale call
}

// SeederFigures are what /healthz and the metrics say of the server's
// seeder.
type SeederFigures struct {
	// Loaded and Complete are the numbers of torrents held and of
	// complete ones; Live of those live, not dormant.
	Loaded, Complete, Live int
	// Uploaded is the data bytes sent to peers.
	Uploaded int64
	// Refused is the piece requests refused because other peers have the
	// piece or are getting it.
	Refused int64
}

// SeederStats reads the seeder's figures, all at once: a read may ask the
// goroutine that owns the seeder, once per read.
type SeederStats interface {
	SeederFigures() SeederFigures
}

type seeder struct {
	port  int
	stats SeederStats
}

// SetSeeder tells the tracker the port of the server's own BitTorrent
// seeder, which it hands out as a peer, and /healthz where to read its
// figures; port 0 says no seeder runs.
func (p *Publisher) SetSeeder(port int, stats SeederStats) {
	if port <= 0 || stats == nil {
		p.seeder.Store(nil)
		return
	}
	p.seeder.Store(&seeder{port: port, stats: stats})
}

type etags struct {
	number     uint64
	sig, json_ string
}

// New opens the package directory and returns a Publisher with no
// generation yet (the index answers 503 until Swap).
func New(cfg Config) (*Publisher, error) {
	root, err := os.OpenRoot(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("package directory: %w", err)
	}
	if cfg.AnnounceInterval <= 0 {
		cfg.AnnounceInterval = 10 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.StaleEvery <= 0 {
		cfg.StaleEvery = 5 * time.Second
	}
	p := &Publisher{
		cfg:   cfg,
		root:  root,
		peers: NewPeerStore(2*cfg.AnnounceInterval, cfg.Now),
		log:   cfg.Logger,
		pages: pages(),
	}
	if cfg.PeersFile != "" {
		if err := p.peers.Load(cfg.PeersFile); err != nil {
			// Only a head start is lost: peers announce again anyway.
			cfg.Logger.Warn("tracker peers of the last run not loaded", "err", err)
		}
	}
	return p, nil
}

// Swap makes g the generation every new request sees. An older generation
// than the current one is ignored (a late message after a restart).
func (p *Publisher) Swap(g *generation.Generation) bool {
	for {
		old := p.gen.Load()
		if old != nil && g.Number < old.Number {
			return false
		}
		if p.gen.CompareAndSwap(old, g) {
			break
		}
	}
	sig := sha256.Sum256(g.IndexSig)
	p.etags.Store(&etags{
		number: g.Number,
		sig:    `"` + hex.EncodeToString(sig[:]) + `"`,
		// index.json is a function of index.db's content alone.
		json_: strings.TrimSuffix(g.IndexETag, `"`) + `-json"`,
	})
	p.peers.Forget(func(ih [20]byte) bool { return g.ByInfoHash(ih) != nil })
	return true
}

// Current is the generation being served, or nil.
func (p *Publisher) Current() *generation.Generation { return p.gen.Load() }

// Peers is the tracker's peer store.
func (p *Publisher) Peers() *PeerStore { return p.peers }

// SavePeers saves the tracker's peers to the PeersFile, if they changed
// since the last save.
func (p *Publisher) SavePeers() error {
	if p.cfg.PeersFile == "" {
		return nil
	}
	return p.peers.SaveIfChanged(p.cfg.PeersFile)
}

// Close releases the package directory.
func (p *Publisher) Close() error {
	var err error
	if p.cfg.PeersFile != "" {
		err = p.peers.Save(p.cfg.PeersFile)
	}
	return errors.Join(err, p.root.Close())
}

// Response deadlines: small documents must be written within smallWrite;
// a package download may take as long as it keeps moving, with at most
// stallWrite between two writes.
const (
	smallWrite = 30 * time.Second
	stallWrite = 60 * time.Second
)

// maxRanges bounds the ranges of one request.
const maxRanges = 8

// ServeHTTP routes a request, and counts it when asked to.
func (p *Publisher) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.cfg.OnRequest == nil {
		p.serve(w, r)
		return
	}
	rec := &recorder{ResponseWriter: w, code: http.StatusOK}
	p.serve(rec, r)
	p.cfg.OnRequest(route(r.URL.Path), rec.code, rec.bytes)
}

// recorder notes the status and body size of an answer.
type recorder struct {
	http.ResponseWriter
	code  int
	bytes int64
}

func (r *recorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection (deadlines).
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// route is a request's path as a label of few values.
func route(path string) string {
	switch {
	case strings.HasPrefix(path, "/packages/"):
		return "/packages/"
	case strings.HasPrefix(path, "/torrents/"):
		return "/torrents/"
	case strings.HasPrefix(path, "/p/"):
		return "/p/"
	}
	switch path {
	case "/", "/rejected", "/style.css", "/index.db", "/index.db.sig", "/index.json", "/announce", "/scrape", "/healthz", "/metrics":
		return path
	}
	return "other"
}

// Figures is what the server's metrics read of the publisher when scraped.
func (p *Publisher) Figures() metrics.ServerFigures {
	var f metrics.ServerFigures
	if g := p.gen.Load(); g != nil {
		f.Generation, f.Updated, f.Packages, f.Rejected = g.Number, g.Updated, len(g.Packages), len(g.Rejected)
	}
	if sd := p.seeder.Load(); sd != nil {
		sf := sd.stats.SeederFigures()
		f.Uploaded, f.Refused = sf.Uploaded, sf.Refused
	}
	f.TrackerPeers, f.TrackerTorrents = p.peers.Len(), p.peers.Torrents()
	if g := p.gen.Load(); g != nil {
		p.peers.Counts(func(ih [20]byte, seeders, leechers int) {
			if pk := g.ByInfoHash(ih); pk != nil {
				f.Swarms = append(f.Swarms, metrics.Swarm{File: pk.File, Seeders: seeders, Leechers: leechers})
			}
		})
	}
	return f
}

func (p *Publisher) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if rng := r.Header.Get("Range"); strings.Count(rng, ",") >= maxRanges {
		// Many small ranges make a multipart answer many times the request
		// (1,300 one-byte ranges: 16 times); no client asks for that many.
		http.Error(w, fmt.Sprintf("at most %d ranges in one request", maxRanges), http.StatusRequestedRangeNotSatisfiable)
		return
	}
	path := r.URL.Path
	if file, ok := strings.CutPrefix(path, "/packages/"); ok {
		p.servePackage(w, r, file)
		return
	}
	http.NewResponseController(w).SetWriteDeadline(time.Now().Add(smallWrite))
	if file, ok := strings.CutPrefix(path, "/torrents/"); ok {
		p.serveTorrent(w, r, file)
		return
	}
	if strings.HasPrefix(path, "/p/") {
		p.servePage(w, r, path)
		return
	}
	switch path {
	case "/index.db", "/index.db.sig", "/index.json":
		p.serveIndex(w, r, path)
	case "/", "/rejected", "/style.css":
		p.servePage(w, r, path)
	case "/metrics":
		if p.cfg.Metrics == nil {
			http.NotFound(w, r)
			return
		}
		p.cfg.Metrics.ServeHTTP(w, r)
	case "/announce", "/scrape":
		if p.cfg.NoTracker {
			http.Error(w, "this server runs no tracker: the torrents name the trackers", http.StatusNotFound)
		} else if path == "/announce" {
			p.serveAnnounce(w, r)
		} else {
			p.serveScrape(w, r)
		}
	case "/healthz":
		p.serveHealth(w)
	default:
		http.NotFound(w, r)
	}
}

func (p *Publisher) serveIndex(w http.ResponseWriter, r *http.Request, path string) {
	g := p.gen.Load()
	if g == nil {
		w.Header().Set("Retry-After", "5")
		http.Error(w, "no index yet: the first scan is running", http.StatusServiceUnavailable)
		return
	}
	var body io.ReadSeeker
	var etag, ctype string
	switch path {
	case "/index.db":
		body, etag, ctype = g.Index.Reader(), g.IndexETag, "application/octet-stream"
	case "/index.db.sig":
		if g.IndexSig == nil {
			http.NotFound(w, r)
			return
		}
		body, ctype = bytes.NewReader(g.IndexSig), "text/plain; charset=utf-8"
		etag = p.etagsFor(g).sig
	case "/index.json":
		doc, err := g.IndexJSON.Get()
		if err != nil {
			p.log.Error("index.json", "err", err)
			http.Error(w, "index.json could not be made; see the server's log", http.StatusInternalServerError)
			return
		}
		body, ctype = doc.Reader(), "application/json"
		etag = p.etagsFor(g).json_
	}
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("ETag", etag)
	// Clients poll the index: they must revalidate every time, and with
	// If-None-Match an unchanged index costs a 304 and no body.
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Tpm-Generation", strconv.FormatUint(g.Number, 10))
	http.ServeContent(w, r, "", g.Updated, body)
}

// etagsFor returns the derived ETags of g, even in the instant between a
// Swap's pointer store and its ETag store.
func (p *Publisher) etagsFor(g *generation.Generation) *etags {
	if e := p.etags.Load(); e != nil && e.number == g.Number {
		return e
	}
	sig := sha256.Sum256(g.IndexSig)
	return &etags{number: g.Number, sig: `"` + hex.EncodeToString(sig[:]) + `"`,
		json_: strings.TrimSuffix(g.IndexETag, `"`) + `-json"`}
}

// published is file's package in the current generation, or nil.
func (p *Publisher) published(file string) *generation.Package {
	if g := p.gen.Load(); g != nil {
		return g.Package(file)
	}
	return nil
}

func (p *Publisher) serveTorrent(w http.ResponseWriter, r *http.Request, name string) {
	file, ok := strings.CutSuffix(name, ".torrent")
	pkg := p.published(file)
	if !ok || pkg == nil {
		http.NotFound(w, r)
		return
	}
	// Made on request (a few hundred bytes): kept for every package, the
	// .torrents of 100,000 held 26 MB.
	g := p.gen.Load()
	tor, err := torrentfile.MetaInfoFile(pkg.InfoBytes, g.Trackers, g.WebSeeds)
	if err != nil {
		http.Error(w, "torrent: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/x-bittorrent")
	h.Set("ETag", `"`+hex.EncodeToString(pkg.InfoHash[:])+`"`)
	h.Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, "", time.Unix(0, pkg.MTimeNS), bytes.NewReader(tor))
}

// servePackage serves a published file from the package directory, with
// ranges (the web seed reads pieces) and its SHA-256 as ETag. Only names of
// the current generation are served; anything else, "../" included, is 404
// before the file system is touched.
func (p *Publisher) servePackage(w http.ResponseWriter, r *http.Request, file string) {
	pkg := p.published(file)
	if pkg == nil {
		http.NotFound(w, r)
		return
	}
	f, err := p.root.Open(pkg.File)
	if err != nil {
		p.stale(w, pkg.File, err)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		p.stale(w, pkg.File, err)
		return
	}
	// A file replaced or rewritten since the scan would not match the
	// index's sha256: serve nothing rather than the wrong bytes.
	if !matches(fi, pkg) {
		p.stale(w, pkg.File, errors.New("changed since the last scan"))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("ETag", `"`+pkg.SHA256+`"`)
	h.Set("Cache-Control", "no-cache")
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Now().Add(stallWrite))
	http.ServeContent(&progressWriter{ResponseWriter: w, rc: rc}, r, "", fi.ModTime(), f)
}

func matches(fi os.FileInfo, pkg *generation.Package) bool {
	if fi.Size() != pkg.Size || fi.ModTime().UnixNano() != pkg.MTimeNS {
		return false
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino == pkg.Inode && st.Ctim.Sec*1e9+st.Ctim.Nsec == pkg.CTimeNS
	}
	return true
}

func (p *Publisher) stale(w http.ResponseWriter, file string, err error) {
	p.log.Warn("published package is unavailable; asking for a rescan", "file", file, "err", err)
	now, last := p.cfg.Now().UnixNano(), p.lastStale.Load()
	if p.cfg.OnStale != nil && now-last >= int64(p.cfg.StaleEvery) && p.lastStale.CompareAndSwap(last, now) {
		p.cfg.OnStale(file)
	}
	w.Header().Set("Retry-After", "10")
	http.Error(w, "package changed since the last scan; try again shortly", http.StatusServiceUnavailable)
}

// progressWriter pushes the write deadline on after every write, so a
// download may take any time as long as it moves.
type progressWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
}

func (pw *progressWriter) Write(b []byte) (int, error) {
	n, err := pw.ResponseWriter.Write(b)
	pw.rc.SetWriteDeadline(time.Now().Add(stallWrite))
	return n, err
}

func (p *Publisher) serveHealth(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	g := p.gen.Load()
	if g == nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "starting: no generation yet")
		return
	}
	fmt.Fprintf(w, "ok generation=%d packages=%d rejected=%d", g.Number, len(g.Packages), len(g.Rejected))
	if sd := p.seeder.Load(); sd != nil {
		sf := sd.stats.SeederFigures()
		fmt.Fprintf(w, " seeding=%d/%d live=%d uploaded=%d refused=%d", sf.Complete, sf.Loaded, sf.Live, sf.Uploaded, sf.Refused)
	}
	fmt.Fprintln(w)
}

// Server is the HTTP server around a handler, with timeouts on every
// connection and limits on how many it keeps open (connlimit.go).
type Server struct {
	srv *http.Server
	ln  *connLimiter
}

// Listen binds addr ("host:port"; port 0 picks one) for h, with the
// connection limits of DefaultConnLimits.
func Listen(addr string, h http.Handler, errorLog *slog.Logger) (*Server, error) {
	return ListenLimited(addr, h, errorLog, DefaultConnLimits())
}

// ListenLimited is Listen with the connection limits lim; a zero field
// takes its default.
func ListenLimited(addr string, h http.Handler, errorLog *slog.Logger, lim ConnLimits) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http listen: %w", err)
	}
	lim = lim.withDefaults()
	limiter := newConnLimiter(ln, lim, errorLog)
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second, // requests have no body
		IdleTimeout:       lim.Idle,
		MaxHeaderBytes:    16 << 10,
		ConnState:         limiter.connState,
		// No WriteTimeout: responses set their own deadlines (see
		// smallWrite and stallWrite), since a package download may be long.
	}
	if errorLog != nil {
		srv.ErrorLog = slog.NewLogLogger(errorLog.Handler(), slog.LevelWarn)
	}
	return &Server{srv: srv, ln: limiter}, nil
}

// Conns are the server's connection figures.
func (s *Server) Conns() ConnStats { return s.ln.Stats() }

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve serves until Shutdown; it returns nil after a shutdown.
func (s *Server) Serve() error {
	err := s.srv.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil // stopped by Shutdown or CloseListener
	}
	return err
}

// CloseListener stops accepting connections at once, so the address can be
// bound again (by a restarted publisher) while Shutdown drains.
func (s *Server) CloseListener() error {
	err := s.ln.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting, waits for in-flight requests until ctx ends,
// then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if ctx.Err() != nil {
		s.srv.Close()
		return fmt.Errorf("http: connections still open at the deadline were closed: %w", ctx.Err())
	}
	if errors.Is(err, net.ErrClosed) {
		return nil // CloseListener came first
	}
	return err
}
