// Package metrics holds the figures tpmd exports in Prometheus' text format
// at /metrics: the repository server's and a host's. Each set has its own
// registry (no global one), so two daemons in one process, as in tests,
// never mix their figures.
//
// What changes as work happens (a scan, a request, a transaction) is pushed
// by whoever does it; what is a state of a part that owns it (the current
// generation, the tracker's peers) is read when scraped, through a function
// that part provides and that is safe to call from any goroutine.
package metrics

import (
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ServerFigures is the state of a repository server when scraped.
type ServerFigures struct {
	Generation      uint64
	Updated         time.Time // of the generation
	Packages        int
	Rejected        int
	Uploaded        int64 // bytes the seeder sent over BitTorrent
	Refused         int64 // piece requests the seeder refused: other hosts have the piece
	TrackerPeers    int
	TrackerTorrents int
	// Swarms are the packages the tracker knows peers of, by file.
	Swarms []Swarm
}

// Swarm is what the tracker counts of one package's peers.
type Swarm struct {
	File              string
	Seeders, Leechers int
}

// Server is the repository server's figures. Its methods may be called on
// a nil *Server (they do nothing).
type Server struct {
	reg      *prometheus.Registry
	scans    *prometheus.HistogramVec
	requests *prometheus.CounterVec
	bytes    *prometheus.CounterVec
}

// NewServer makes the server's figures; figures is called on every scrape.
func NewServer(figures func() ServerFigures) *Server {
	m := &Server{reg: prometheus.NewRegistry()}
	m.scans = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "tpm_server_scan_duration_seconds", Help: "Duration of package directory scans.",
		Buckets: prometheus.ExponentialBuckets(0.01, 4, 8),
	}, []string{"kind"})
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tpm_server_http_requests_total", Help: "HTTP requests answered, by route and status code.",
	}, []string{"route", "code"})
	m.bytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tpm_server_http_response_bytes_total", Help: "Bytes of HTTP response bodies, by route.",
	}, []string{"route"})
	m.reg.MustRegister(m.scans, m.requests, m.bytes, newServerState(figures),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the figures.
func (m *Server) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{MaxRequestsInFlight: 4, Timeout: 10 * time.Second})
}

// Scan records one scan (kind "scan" or "verify").
func (m *Server) Scan(kind string, d time.Duration) {
	if m == nil {
		return
	}
	m.scans.WithLabelValues(kind).Observe(d.Seconds())
}

// Request records one HTTP answer.
func (m *Server) Request(route string, code int, bytes int64) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(route, codeLabel(code)).Inc()
	m.bytes.WithLabelValues(route).Add(float64(bytes))
}

// serverState reads the server's state on each scrape.
type serverState struct {
	figures                                                                 func() ServerFigures
	generation, age, packages, rejected, uploaded, refused, peers, torrents *prometheus.Desc
	seeders, leechers                                                       *prometheus.Desc
}

func newServerState(figures func() ServerFigures) *serverState {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &serverState{
		figures:    figures,
		generation: d("tpm_server_generation", "Number of the published generation."),
		age:        d("tpm_server_generation_age_seconds", "Time since the published generation was made."),
		packages:   d("tpm_server_packages", "Packages of the published generation."),
		rejected:   d("tpm_server_rejected", "Files the last scan refused."),
		uploaded:   d("tpm_server_torrent_uploaded_bytes_total", "Package bytes the seeder sent over BitTorrent."),
		refused:    d("tpm_server_torrent_refused_requests_total", "Piece requests the seeder refused because other hosts have the piece or are getting it."),
		peers:      d("tpm_server_tracker_peers", "Peers the tracker knows."),
		torrents:   d("tpm_server_tracker_torrents", "Torrents the tracker knows peers of."),
		seeders:    d("tpm_server_package_seeders", "Seeders of a package as the tracker counts them (the server's own seeder aside).", "file"),
		leechers:   d("tpm_server_package_leechers", "Leechers of a package as the tracker counts them.", "file"),
	}
}

func (s *serverState) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{s.generation, s.age, s.packages, s.rejected, s.uploaded, s.refused, s.peers, s.torrents, s.seeders, s.leechers} {
		ch <- d
	}
}

func (s *serverState) Collect(ch chan<- prometheus.Metric) {
	f := s.figures()
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	gauge(s.generation, float64(f.Generation))
	if !f.Updated.IsZero() {
		gauge(s.age, time.Since(f.Updated).Seconds())
	}
	gauge(s.packages, float64(f.Packages))
	gauge(s.rejected, float64(f.Rejected))
	ch <- prometheus.MustNewConstMetric(s.uploaded, prometheus.CounterValue, float64(f.Uploaded))
	ch <- prometheus.MustNewConstMetric(s.refused, prometheus.CounterValue, float64(f.Refused))
	gauge(s.peers, float64(f.TrackerPeers))
	gauge(s.torrents, float64(f.TrackerTorrents))
	for _, sw := range f.Swarms {
		ch <- prometheus.MustNewConstMetric(s.seeders, prometheus.GaugeValue, float64(sw.Seeders), sw.File)
		ch <- prometheus.MustNewConstMetric(s.leechers, prometheus.GaugeValue, float64(sw.Leechers), sw.File)
	}
}

func codeLabel(code int) string {
	switch {
	case code < 200:
		return "1xx"
	case code < 300:
		return "2xx"
	case code < 400:
		return "3xx"
	case code < 500:
		return "4xx"
	}
	return "5xx"
}

// Endpoint serves figures on an address of their own (tpmd client
// --metrics-listen).
type Endpoint struct {
	srv *http.Server
	ln  net.Listener
}

// Listen serves h at /metrics on addr, on a goroutine, until Close.
func Listen(addr string, h http.Handler) (*Endpoint, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	e := &Endpoint{ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 15 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 8 << 10}}
	go e.srv.Serve(ln) // ends with Close
	return e, nil
}

// Addr is the address it listens on.
func (e *Endpoint) Addr() string { return e.ln.Addr().String() }

// Close stops serving.
func (e *Endpoint) Close() error { return e.srv.Close() }
