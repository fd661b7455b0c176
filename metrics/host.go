package metrics

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Host is a host's figures (tpmd client --metrics-listen). Its methods are
// safe to call from any goroutine, and on a nil *Host (they do nothing);
// the actors call them as things happen.
type Host struct {
	reg          *prometheus.Registry
	generation   prometheus.Gauge
	updated      prometheus.Gauge
	validUntil   prometheus.Gauge
	installed    prometheus.Gauge
	seeding      prometheus.Gauge
	transactions *prometheus.CounterVec
	txDuration   *prometheus.HistogramVec
	downloads    prometheus.Histogram
	installs     prometheus.Histogram
	up, down     atomic.Int64
}

// NewHost makes a host's figures.
func NewHost() *Host {
	m := &Host{reg: prometheus.NewRegistry()}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	}
	m.generation = gauge("tpm_host_index_generation", "Generation of the index this host installs from.")
	m.updated = gauge("tpm_host_index_updated_timestamp_seconds", "When the server made that index (its age is time() minus this).")
	m.validUntil = gauge("tpm_host_index_valid_until_timestamp_seconds", "When that index expires.")
	m.installed = gauge("tpm_host_packages_installed", "Packages installed in the daemon's prefix.")
	m.seeding = gauge("tpm_host_packages_seeded", "Packages this host seeds.")
	m.transactions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tpm_host_transactions_total", Help: "Transactions by verb and result (ok or failed).",
	}, []string{"verb", "result"})
	m.txDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "tpm_host_transaction_duration_seconds", Help: "Duration of transactions, from request to answer.",
		Buckets: prometheus.ExponentialBuckets(0.01, 4, 9),
	}, []string{"verb"})
	m.downloads = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "tpm_host_download_duration_seconds", Help: "Duration of package downloads that finished.",
		Buckets: prometheus.ExponentialBuckets(0.01, 4, 9),
	})
	m.installs = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "tpm_host_install_duration_seconds", Help: "Duration of one install transaction, scripts included: a package, or the packages of a request that were ready together.",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
	})
	m.reg.MustRegister(m.generation, m.updated, m.validUntil, m.installed, m.seeding, m.transactions, m.txDuration,
		m.downloads, m.installs, newTraffic(m),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the figures.
func (m *Host) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{MaxRequestsInFlight: 4, Timeout: 10 * time.Second})
}

// Index records the index the host now installs from.
func (m *Host) Index(generation uint64, updated, validUntil time.Time) {
	if m == nil {
		return
	}
	m.generation.Set(float64(generation))
	m.updated.Set(unix(updated))
	m.validUntil.Set(unix(validUntil))
}

// Installed records how many packages the prefix has.
func (m *Host) Installed(n int) {
	if m == nil {
		return
	}
	m.installed.Set(float64(n))
}

// Seeding records how many packages the host seeds.
func (m *Host) Seeding(n int) {
	if m == nil {
		return
	}
	m.seeding.Set(float64(n))
}

// Traffic records the torrent client's totals so far.
func (m *Host) Traffic(up, down int64) {
	if m == nil {
		return
	}
	m.up.Store(up)
	m.down.Store(down)
}

// Transaction records one finished install, upgrade or remove.
func (m *Host) Transaction(verb string, failed bool, d time.Duration) {
	if m == nil {
		return
	}
	result := "ok"
	if failed {
		result = "failed"
	}
	m.transactions.WithLabelValues(verb, result).Inc()
	m.txDuration.WithLabelValues(verb).Observe(d.Seconds())
}

// Download records one finished download.
func (m *Host) Download(d time.Duration) {
	if m == nil {
		return
	}
	m.downloads.Observe(d.Seconds())
}

// Install records one install transaction.
func (m *Host) Install(d time.Duration) {
	if m == nil {
		return
	}
	m.installs.Observe(d.Seconds())
}

func unix(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

// traffic exports the totals the swarm pushed as counters.
type traffic struct {
	m        *Host
	up, down *prometheus.Desc
}

func newTraffic(m *Host) *traffic {
	return &traffic{m: m,
		up:   prometheus.NewDesc("tpm_host_torrent_uploaded_bytes_total", "Bytes this host's torrent client sent.", nil, nil),
		down: prometheus.NewDesc("tpm_host_torrent_downloaded_bytes_total", "Bytes this host's torrent client received, from peers and the web seed.", nil, nil),
	}
}

func (t *traffic) Describe(ch chan<- *prometheus.Desc) { ch <- t.up; ch <- t.down }

func (t *traffic) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(t.up, prometheus.CounterValue, float64(t.m.up.Load()))
	ch <- prometheus.MustNewConstMetric(t.down, prometheus.CounterValue, float64(t.m.down.Load()))
}
