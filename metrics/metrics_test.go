package metrics

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// scrape reads h's figures with Prometheus' own text parser.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("scrape: %d", rec.Code)
	}
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// value is the value of the family's metric whose labels include want.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("no %s", name)
	}
next:
	for _, m := range f.Metric {
		for _, l := range m.Label {
			if v, ok := want[l.GetName()]; ok && v != l.GetValue() {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Fatalf("no %s with %v", name, want)
	return 0
}

func TestServerFigures(t *testing.T) {
	figures := ServerFigures{Generation: 7, Updated: time.Now().Add(-time.Minute), Packages: 3, Rejected: 1, Uploaded: 1000, Refused: 9, TrackerPeers: 4, TrackerTorrents: 2,
		Swarms: []Swarm{{File: "a-1-any.tpkg", Seeders: 3, Leechers: 1}}}
	m := NewServer(func() ServerFigures { return figures })
	m.Request("/packages/", 200, 500)
	m.Request("/packages/", 206, 100)
	m.Request("/index.db", 304, 0)
	m.Scan("scan", time.Second)
	fams := scrape(t, m.Handler())
	for name, want := range map[string]float64{
		"tpm_server_generation": 7, "tpm_server_packages": 3, "tpm_server_rejected": 1,
		"tpm_server_torrent_uploaded_bytes_total": 1000, "tpm_server_torrent_refused_requests_total": 9, "tpm_server_tracker_peers": 4, "tpm_server_tracker_torrents": 2,
	} {
		if got := value(t, fams, name, nil); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if n := value(t, fams, "tpm_server_package_seeders", map[string]string{"file": "a-1-any.tpkg"}); n != 3 {
		t.Errorf("seeders of a: %v", n)
	}
	if age := value(t, fams, "tpm_server_generation_age_seconds", nil); age < 59 || age > 3600 {
		t.Errorf("age %v", age)
	}
	if n := value(t, fams, "tpm_server_http_requests_total", map[string]string{"route": "/packages/", "code": "2xx"}); n != 2 {
		t.Errorf("package requests %v", n)
	}
	if b := value(t, fams, "tpm_server_http_response_bytes_total", map[string]string{"route": "/packages/"}); b != 600 {
		t.Errorf("package bytes %v", b)
	}
	if n := value(t, fams, "tpm_server_scan_duration_seconds", map[string]string{"kind": "scan"}); n != 1 {
		t.Errorf("scans %v", n)
	}
	// The figures move with the state.
	figures.Generation = 8
	if g := value(t, scrape(t, m.Handler()), "tpm_server_generation", nil); g != 8 {
		t.Errorf("generation after a change: %v", g)
	}
}

func TestHostFigures(t *testing.T) {
	m := NewHost()
	valid := time.Now().Add(time.Hour)
	m.Index(5, time.Now(), valid)
	m.Installed(3)
	m.Seeding(2)
	m.Traffic(100, 2000)
	m.Transaction("install", false, time.Second)
	m.Transaction("install", true, time.Second)
	m.Download(time.Second)
	m.Install(time.Millisecond)
	fams := scrape(t, m.Handler())
	for name, want := range map[string]float64{
		"tpm_host_index_generation": 5, "tpm_host_packages_installed": 3, "tpm_host_packages_seeded": 2,
		"tpm_host_torrent_uploaded_bytes_total": 100, "tpm_host_torrent_downloaded_bytes_total": 2000,
		"tpm_host_download_duration_seconds": 1, "tpm_host_install_duration_seconds": 1,
	} {
		if got := value(t, fams, name, nil); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if v := value(t, fams, "tpm_host_index_valid_until_timestamp_seconds", nil); int64(v) != valid.Unix() {
		t.Errorf("valid until %v", v)
	}
	for _, result := range []string{"ok", "failed"} {
		if n := value(t, fams, "tpm_host_transactions_total", map[string]string{"verb": "install", "result": result}); n != 1 {
			t.Errorf("installs %s: %v", result, n)
		}
	}
}

func TestEndpoint(t *testing.T) {
	m := NewHost()
	ep, err := Listen("127.0.0.1:0", m.Handler())
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Close()
	resp, err := http.Get("http://" + ep.Addr() + "/metrics")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %v", err)
	}
	resp.Body.Close()
	if resp, err := http.Get("http://" + ep.Addr() + "/other"); err != nil || resp.StatusCode != 404 {
		t.Fatalf("GET /other: %v %v", resp, err)
	}
}
