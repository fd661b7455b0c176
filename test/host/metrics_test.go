package host

import (
	"net/http"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// scrapeURL reads the figures at url with Prometheus' text parser.
func scrapeURL(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %s", url, resp.Status)
	}
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// figure is the sum of the family's values (counts, for histograms) over
// the metrics whose labels include want; 0 when there is none.
func figure(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	sum := 0.0
	f := fams[name]
	if f == nil {
		return 0
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
			sum += m.Gauge.GetValue()
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

// TestMetricsMoveWithTheWork: the server's and a host's /metrics, read
// with Prometheus' parser, count a scan, an install, its downloads and the
// bytes sent.
func TestMetricsMoveWithTheWork(t *testing.T) {
	r := newRepository(t)
	srv := startServer(t, r)
	h := newHost(t)
	addr := freeAddr(t)
	startClient(t, h, srv.url, r.pubPath, "--metrics-listen", addr)
	waitIndex(t, h.run, 3)
	server := scrapeURL(t, srv.url+"/metrics")
	if g, p := figure(server, "tpm_server_generation", nil), figure(server, "tpm_server_packages", nil); g != 1 || p != 3 {
		t.Fatalf("server: generation %v, %v packages", g, p)
	}
	if n := figure(server, "tpm_server_scan_duration_seconds", nil); n < 1 {
		t.Fatalf("server: %v scans", n)
	}
	host := scrapeURL(t, "http://"+addr+"/metrics")
	if g := figure(host, "tpm_host_index_generation", nil); g != 1 {
		t.Fatalf("host: index generation %v", g)
	}
	if n := figure(host, "tpm_host_transactions_total", nil); n != 0 {
		t.Fatalf("host: %v transactions before any", n)
	}

	ok(t, h.run, "install", []string{"hello"}, nil, nil)
	host = scrapeURL(t, "http://"+addr+"/metrics")
	if n := figure(host, "tpm_host_transactions_total", map[string]string{"verb": "install", "result": "ok"}); n != 1 {
		t.Fatalf("host: %v installs", n)
	}
	for name, want := range map[string]float64{"tpm_host_packages_installed": 3, "tpm_host_download_duration_seconds": 3} {
		if got := figure(host, name, nil); got != want {
			t.Errorf("host: %s = %v, want %v", name, got, want)
		}
	}
	// Packages whose downloads end together go in as one transaction.
	if n := figure(host, "tpm_host_install_duration_seconds", nil); n < 1 || n > 3 {
		t.Errorf("host: %v install transactions for 3 packages", n)
	}
	// The swarm's totals are told every 5 s.
	waitFor(t, "the host to count the bytes it downloaded", func() bool {
		return figure(scrapeURL(t, "http://"+addr+"/metrics"), "tpm_host_torrent_downloaded_bytes_total", nil) > 0
	})
	server = scrapeURL(t, srv.url+"/metrics")
	if n := figure(server, "tpm_server_http_requests_total", map[string]string{"route": "/index.db"}); n < 1 {
		t.Errorf("server: %v index requests", n)
	}
	if n := figure(server, "tpm_server_tracker_peers", nil); n < 1 {
		t.Errorf("server: %v tracker peers", n)
	}
	if n := figure(server, "tpm_server_package_seeders", nil) + figure(server, "tpm_server_package_leechers", nil); n < 1 {
		t.Errorf("server: no package swarm counted")
	}
	// The packages came from the server's seeder or its web seed.
	if up, web := figure(server, "tpm_server_torrent_uploaded_bytes_total", nil), figure(server, "tpm_server_http_response_bytes_total", map[string]string{"route": "/packages/"}); up+web == 0 {
		t.Errorf("server: nothing sent (seeder %v, web seed %v)", up, web)
	}
}
