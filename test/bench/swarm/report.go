package main

import (
	"fmt"
	"runtime"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

func markdown(o options, set packageSet, rs []result) string {
	var b strings.Builder
	shaper := ""
	if len(rs) > 0 {
		shaper = rs[0].shaper
	}
	fmt.Fprintf(&b, "# Swarm benchmark (`make bench-swarm`), %s\n\n", time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(&b, "S = %s in %d packages; U = %g Mbit/s (repository uplink); u = %g Mbit/s (each client, up and down); links limited with %s; %d CPU cores for all hosts.\n\n",
		mb(set.bytes), len(set.files), o.repoUpMbit, o.link, shaper, runtime.NumCPU())
	b.WriteString("| N | tpm, last finish | HTTP, last finish | bound | tpm / bound | HTTP / tpm | repository sent per client, tpm | repository sent per client, HTTP | repository sent in all, tpm / S |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rs {
		httpT, ratio, httpSent := "—", "—", "—"
		if r.http > 0 {
			httpT = secs(r.http)
			ratio = fmt.Sprintf("%.1f", r.http.Seconds()/r.tpm.Seconds())
			httpSent = mb(r.repoSentHTTP / int64(r.n))
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %.2f | %s | %s | %s | %.2f |\n", r.n, secs(r.tpm), httpT, secs(r.bound),
			r.tpm.Seconds()/r.bound.Seconds(), ratio, mb(r.repoSentTPM/int64(r.n)), httpSent, float64(r.repoSentTPM)/float64(r.totalBytes))
	}
	b.WriteString("\ntpm finish times per client (first / median / last), and what the clients' torrent clients counted:\n\n")
	b.WriteString("| N | first | median | last | repository's BitTorrent seeder uploaded | data uploaded by clients, in all | useful data downloaded by clients, in all | machine CPU busy |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rs {
		f := r.finishes
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s | %s | %.0f %% |\n", r.n, secs(f[0]), secs(f[len(f)/2]), secs(f[len(f)-1]), mb(r.seederUp), mb(r.peerUp), mb(r.peerDown), r.cpuBusy*100)
	}
	if len(rs) > 0 && rs[0].aria2 != nil {
		b.WriteString("\ntpm against a standard BitTorrent client in the same network: `aria2c` on every host at once with the same `.torrent` files, their url-list removed (peers only, as tpm's default), a tpmd server started afresh as tracker and seed; aria2c seeds what it has until every host has the set. tpm's time includes installing; aria2c's is the download only. CPU is the whole machine's busy time during the run over the data delivered (N·S):\n\n")
		b.WriteString("| N | tpm, last finish | aria2c, last finish | tpm / aria2c | tpm / bound | aria2c / bound | repository sent, tpm / S | repository sent, aria2c / S | CPU s per GB, tpm | CPU s per GB, aria2c |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, r := range rs {
			a := r.aria2
			if a == nil {
				continue
			}
			gb := float64(r.totalBytes) * float64(r.n) / 1e9
			fmt.Fprintf(&b, "| %d | %s | %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.1f | %.1f |\n", r.n, secs(r.tpm), secs(a.last),
				r.tpm.Seconds()/a.last.Seconds(), r.tpm.Seconds()/r.bound.Seconds(), a.last.Seconds()/r.bound.Seconds(),
				float64(r.repoSentTPM)/float64(r.totalBytes), float64(a.repoSent)/float64(r.totalBytes), r.cpuSecsTPM/gb, a.cpuSecs/gb)
		}
	}
	return b.String()
}

// plotResults draws time to the last finish against N for tpm, HTTP and the
// bound.
func plotResults(path string, o options, rs []result) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Time until every client has the set (U = %g Mbit/s, u = %g Mbit/s)", o.repoUpMbit, o.link)
	p.X.Label.Text = "client hosts N"
	p.Y.Label.Text = "seconds"
	p.Y.Min = 0
	var tpmXY, httpXY, boundXY, aria2XY plotter.XYs
	for _, r := range rs {
		if r.aria2 != nil {
			aria2XY = append(aria2XY, plotter.XY{X: float64(r.n), Y: r.aria2.last.Seconds()})
		}
		tpmXY = append(tpmXY, plotter.XY{X: float64(r.n), Y: r.tpm.Seconds()})
		boundXY = append(boundXY, plotter.XY{X: float64(r.n), Y: r.bound.Seconds()})
		if r.http > 0 {
			httpXY = append(httpXY, plotter.XY{X: float64(r.n), Y: r.http.Seconds()})
		}
	}
	lines := []any{"tpm", tpmXY, "lower bound", boundXY}
	if len(httpXY) > 0 {
		lines = append(lines, "plain HTTP (curl)", httpXY)
	}
	if len(aria2XY) > 0 {
		lines = append(lines, "aria2c, peers only", aria2XY)
	}
	if err := plotutil.AddLinePoints(p, lines...); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	p.Legend.Top, p.Legend.Left = true, true
	if err := p.Save(7*vg.Inch, 4.5*vg.Inch, path); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	return nil
}

func secs(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }
