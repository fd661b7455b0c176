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
	if len(rs) > 0 && len(rs[0].baselines()) > 0 {
		b.WriteString(baselineMarkdown(rs))
	}
	return b.String()
}

// baselineMarkdown is the table of tpm against the standard clients, a
// group of columns per figure with tpm's first where it has one.
func baselineMarkdown(rs []result) string {
	var b strings.Builder
	bs := rs[0].baselines()
	var names []string
	for _, bl := range bs {
		names = append(names, "`"+bl.name+"`")
	}
	clients := strings.Join(names, " then ")
	if len(names) > 1 {
		clients += ", one after the other, each"
	}
	fmt.Fprintf(&b, "\ntpm against standard BitTorrent clients in the same network: %s on every host at once with the same `.torrent` files, their url-list removed (peers only, as tpm's default), a tpmd server started afresh as tracker and seed; each seeds what it has until every host has the set.", clients)
	if rs[0].transmission != nil {
		b.WriteString(" `transmission-cli` takes one torrent a process, so every host runs one per package.")
	}
	b.WriteString(" tpm's time includes installing; theirs is the download only. CPU is the whole machine's busy time during the run over the data delivered (N·S):\n\n")

	type column struct {
		head string
		cell func(r result, gb float64) string
	}
	cols := []column{
		{"N", func(r result, _ float64) string { return fmt.Sprint(r.n) }},
		{"tpm, last finish", func(r result, _ float64) string { return secs(r.tpm) }},
	}
	// perClient adds a column for every client, f of the client's result.
	perClient := func(head string, f func(r result, bl namedBaseline, gb float64) string) {
		for k, bl := range bs {
			cols = append(cols, column{fmt.Sprintf(head, bl.name), func(r result, gb float64) string { return f(r, r.baselines()[k], gb) }})
		}
	}
	perClient("%s, last finish", func(_ result, bl namedBaseline, _ float64) string { return secs(bl.last) })
	perClient("tpm / %s", func(r result, bl namedBaseline, _ float64) string {
		return fmt.Sprintf("%.2f", r.tpm.Seconds()/bl.last.Seconds())
	})
	cols = append(cols, column{"tpm / bound", func(r result, _ float64) string { return fmt.Sprintf("%.2f", r.tpm.Seconds()/r.bound.Seconds()) }})
	perClient("%s / bound", func(r result, bl namedBaseline, _ float64) string {
		return fmt.Sprintf("%.2f", bl.last.Seconds()/r.bound.Seconds())
	})
	cols = append(cols, column{"repository sent, tpm / S", func(r result, _ float64) string {
		return fmt.Sprintf("%.2f", float64(r.repoSentTPM)/float64(r.totalBytes))
	}})
	perClient("repository sent, %s / S", func(r result, bl namedBaseline, _ float64) string {
		return fmt.Sprintf("%.2f", float64(bl.repoSent)/float64(r.totalBytes))
	})
	cols = append(cols, column{"CPU s per GB, tpm", func(r result, gb float64) string { return fmt.Sprintf("%.1f", r.cpuSecsTPM/gb) }})
	perClient("CPU s per GB, %s", func(_ result, bl namedBaseline, gb float64) string { return fmt.Sprintf("%.1f", bl.cpuSecs/gb) })

	for _, c := range cols {
		b.WriteString("| " + c.head + " ")
	}
	b.WriteString("|\n" + strings.Repeat("|---:", len(cols)) + "|\n")
	for _, r := range rs {
		if len(r.baselines()) != len(bs) {
			continue
		}
		gb := float64(r.totalBytes) * float64(r.n) / 1e9
		for _, c := range cols {
			b.WriteString("| " + c.cell(r, gb) + " ")
		}
		b.WriteString("|\n")
	}
	return b.String()
}

// namedBaseline is one standard client's result with the client's name.
type namedBaseline struct {
	name string
	*baselineResult
}

// baselines are the standard clients' results that r has, in the order
// they ran.
func (r result) baselines() []namedBaseline {
	var bs []namedBaseline
	if r.aria2 != nil {
		bs = append(bs, namedBaseline{"aria2c", r.aria2})
	}
	if r.transmission != nil {
		bs = append(bs, namedBaseline{"transmission-cli", r.transmission})
	}
	return bs
}

// plotResults draws time to the last finish against N for tpm, HTTP, the
// standard clients and the bound.
func plotResults(path string, o options, rs []result) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Time until every client has the set (U = %g Mbit/s, u = %g Mbit/s)", o.repoUpMbit, o.link)
	p.X.Label.Text = "client hosts N"
	p.Y.Label.Text = "seconds"
	p.Y.Min = 0
	var tpmXY, httpXY, boundXY plotter.XYs
	var clientXY []plotter.XYs
	var clientNames []string
	for _, r := range rs {
		for k, bl := range r.baselines() {
			if k == len(clientXY) {
				clientXY = append(clientXY, nil)
				clientNames = append(clientNames, bl.name)
			}
			clientXY[k] = append(clientXY[k], plotter.XY{X: float64(r.n), Y: bl.last.Seconds()})
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
	for k, xy := range clientXY {
		lines = append(lines, clientNames[k]+", peers only", xy)
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
