package main

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// measured is a namespace run of test/bench/swarm: the last finish, what
// the repository sent over S, and the machine's CPU busy.
type measured struct {
	n       int
	last    float64
	originS float64
	cpuBusy float64
}

// runSet is the namespace runs of one tpm policy, as its results file has
// them.
type runSet struct {
	pol    Policy
	source string
	fitted bool // the parameters were fitted to these runs
	runs   []measured
}

// namespaceRuns are what the model is fitted to (tpm before 2026-12-02)
// and checked against, nothing refitted (tpm now).
func namespaceRuns() []runSet {
	return []runSet{
		{tpmPolicy(), "`test/bench/results/swarm.md` of 2026-11-25", true,
			[]measured{{4, 19.6, 1.17, 0.22}, {8, 19.8, 1.17, 0.52}, {16, 22.7, 1.28, 0.97}}},
		{nowPolicy(), "`test/bench/results/swarm-clients.md` of 2026-12-02, medians of three runs (CPU busy: the third run's)", false,
			[]measured{{4, 18.5, 1.04, 0.48}, {8, 18.9, 1.05, 0.83}, {16, 22.8, 1.07, 0.96}}},
	}
}

// The calibrated parameters. fixedTime and haveLat were fitted to N = 4
// and 8, where the CPU was mostly idle; machineCPU to N = 16, where it was
// saturated. machineCPU is also about what the runs imply: 16 hosts took
// 640 MB of useful piece data in 22.7 s at 97 % of 2 cores (800 MB sent,
// duplicates included), 8 hosts 320 MB in 19.8 s at 52 %. peerQueue made
// no difference between 32 and 128; the timestep none between 0.02 and
// 0.1 s at N = 4 to 16 (at N = 1,000 0.1 s is 5–10 % slower than 0.05 s).
const (
	fixedTime  = 0.6  // s: tracker, handshakes, sha256 and unpacking
	haveLat    = 0.6  // s
	peerQueue  = 64   // chunks per peer connection
	machineCPU = 30e6 // bytes/s of useful piece data, all hosts together
	timestep   = 0.1  // s
)

// base is the namespace benchmark's network: S = 40 MB in 20, 12 and 8 MB
// packages, U = 20 Mbit/s, u = 50 Mbit/s, anacrolix's connection caps.
func base(n int, pol Policy) Params {
	return Params{
		N: n, Sizes: []int64{20e6, 12e6, 8e6}, U: 20e6, Up: 50e6, Eff: 1448.0 / 1514,
		CPU: machineCPU, Lat: haveLat, Dt: timestep, PeerQueue: peerQueue, Conns: 50,
		Fixed: fixedTime, Policy: pol, Seed: uint64(n),
	}
}

// fleet is base on a fleet of machines: each host its own CPU.
func fleet(n int, pol Policy) Params {
	p := base(n, pol)
	p.CPU = 0
	// A run the web seed swamps would take hours of CPU to finish: it is
	// stopped at 7.5 times the bound, and its last finish is then "more
	// than".
	p.MaxTime = 120
	return p
}

// tpmPolicy is tpm's policy as the namespace runs of the calibration had
// it (before 2026-12-02): the web seed joining on a 3 s stall, the
// repository serving whatever it is asked.
func tpmPolicy() Policy {
	return Policy{Name: "tpm before 2026-12-02", OriginQueue: tpmQueue, WebSeedStall: 3, OriginConns: 50}
}

// policies are tpm's and the alternatives tried where time or egress grow:
// each of the first three adds one change to the one before; the last
// shows what the repository's connection cap is worth.
func policies() []Policy {
	tpm := tpmPolicy()
	noWeb := noWebSeedPolicy()
	super := nowPolicy()
	all := noWeb
	all.Name, all.OriginConns = "web seed only without a seed, seeder takes every host", 1<<30
	// At 10,000 hosts its 60,000 queued requests make a long run that
	// shows nothing new.
	all.MaxN = 1000
	quick := tpm
	quick.Name, quick.Lat, quick.MaxN = "tpm, reaction 0.2 s instead of 0.6", 0.2, 1000
	return []Policy{tpm, quick, noWeb, super, all}
}

// noWebSeedPolicy is tpm's before 2026-12-02 without the web seed while
// the tracker counts a seed.
func noWebSeedPolicy() Policy {
	p := tpmPolicy()
	p.Name, p.WebSeedStall = "web seed only without a seed", 0
	return p
}

// nowPolicy is what swarm does now: no web seed while a seed is connected,
// and the repository refusing pieces other hosts have or are getting
// (swarm/origin.go), which is super-seeding enforced on requests.
func nowPolicy() Policy {
	p := noWebSeedPolicy()
	p.Name, p.SuperSeed = "tpm now: … and super-seeding", true
	return p
}

type calibration struct {
	set     runSet
	m       measured
	r, free Result // with the machine's CPU, and unlimited
}

func calibrate() ([]calibration, error) {
	var out []calibration
	for _, set := range namespaceRuns() {
		for _, m := range set.runs {
			r, err := Run(base(m.n, set.pol))
			if err != nil {
				return nil, fmt.Errorf("calibration: %w", err)
			}
			free, err := Run(fleet(m.n, set.pol))
			if err != nil {
				return nil, fmt.Errorf("calibration: %w", err)
			}
			out = append(out, calibration{set, m, r, free})
		}
	}
	return out, nil
}

type projection struct {
	pol Policy
	n   int
	r   Result
}

func markdown(cal []calibration, rows []projection, took time.Duration) string {
	var b strings.Builder
	p := base(1, tpmPolicy())
	fmt.Fprintf(&b, "# Swarm model (`go run ./test/bench/swarmsim`), %s\n\n", time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(&b, `A seeded fixed-timestep simulation (Δt = %g s) of the namespace benchmark (%s): S = %.0f MB in packages of %s MB, each one torrent of pieces of `+"`swarm.PieceLength`"+`; the repository's uplink U = %g Mbit/s, every host u = %g Mbit/s up and down, %.1f %% of the bits carrying piece data; all hosts start at once. Modelled, as tpm and anacrolix/torrent v1.59.1 do it:

- hosts connect at random to at most %d others (anacrolix's EstablishedConnsPerTorrent; the three torrents share one model link); the repository's seeder takes the first hosts to announce, up to its own cap of 50, and a finished host's seat goes to the next;
- requests: rarest first among the pieces a neighbour shows, ties broken by a per-host random order (anacrolix's pieceRequestOrder); %d chunks outstanding per peer connection, and tpm's queue at the repository of 64/d² chunks per torrent, at least 2, d being the downloaders the tracker had counted when the host announced; a connection with two requests fewer than the repository's may take over one of them (anacrolix's request stealing);
- uploads: each uploader's link shared fairly between its busy connections, each downloader's link capping the sum; a host that is still downloading stops uploading on a connection that gave it 100 KiB less than it took (anacrolix's PeerConn.uploadAllowed; the other side's requests are then dropped), a finished host seeds to anyone;
- a piece counts at the neighbours %.1f s after it is complete (verification, HAVE, their request update: the fitted reaction time);
- the web seed joins a host's torrent that got no piece for 3 s (swarm.Peer.Download) and fetches its missing pieces in order, one HTTP connection sharing U with the seeder's; pieces peers bring meanwhile still arrive and are wasted;
- a host finishes %.1f s (fitted: tracker, handshakes, sha256, unpacking) after its last piece;
- CPU: the namespace runs had 2 cores for all hosts. The model gives the machine %.0f MB/s of piece data in all (fitted to N = 16; the runs imply about that: 640 MB of useful data in 22.7 s at 97 %% busy), the repository's bytes first. The fleet projections give every host its own machine.

Fitted: the reaction time and fixed time to N = 4 and 8, the machine's throughput to N = 16; nothing else was tuned.

`, p.Dt, "`test/bench/results/swarm.md`", float64(sum(p.Sizes))/1e6, sizesMB(p.Sizes), p.U/1e6, p.Up/1e6, p.Eff*100,
		p.Conns, p.PeerQueue, p.Lat, p.Fixed, p.CPU/1e6)
	for i, c := range cal {
		if i == 0 || cal[i-1].set.pol.Name != c.set.pol.Name {
			what := "checked, nothing refitted"
			if c.set.fitted {
				what = "fitted"
			}
			fmt.Fprintf(&b, "## Calibration: %s (%s), against %s\n\n", c.set.pol.Name, what, c.set.source)
			b.WriteString("| N | measured, last finish | model | model / measured | measured, repository sent / S | model | model with unlimited CPU: last finish, sent / S | measured CPU busy |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		}
		fmt.Fprintf(&b, "| %d | %.1f s | %.1f s | %.2f | %.2f | %.2f | %.1f s, %.2f | %.0f %% |\n", c.m.n, c.m.last, c.r.Last, c.r.Last/c.m.last, c.m.originS,
			ratio(c.r.OriginSent, c.r.S), c.free.Last, ratio(c.free.OriginSent, c.free.S), c.m.cpuBusy*100)
		if i+1 == len(cal) || cal[i+1].set.pol.Name != c.set.pol.Name {
			b.WriteString("\n")
		}
	}
	b.WriteString("## Projections (same S, U, u; every host its own CPU)\n\n")
	fmt.Fprintf(&b, "The bound is test/bench/swarm's, max(S/U, N·S/(U+N·u), S/u) = %.1f s for every N here. \"Web seeds\" counts the torrents (hosts × 3) where the web seed joined. A run still going at %.0f s was stopped: its last finish reads \"> %.0f s\".\n\n", bound(sum(p.Sizes), 100, p.U, p.Up), fleet(1, tpmPolicy()).MaxTime, fleet(1, tpmPolicy()).MaxTime)
	b.WriteString("| policy | N | last finish | last / bound | median | repository sent / S | of which web seed | web seeds | wasted / (N·S) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		last := fmt.Sprintf("%.1f s", r.r.Last)
		if r.r.Unfinished > 0 {
			last = fmt.Sprintf("> %.0f s (%d unfinished)", r.r.Last, r.r.Unfinished)
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %.2f | %.1f s | %.2f | %.2f | %d | %.3f |\n", r.pol.Name, r.n, last, r.r.Last/r.r.Bound, r.r.Pct50,
			ratio(r.r.OriginSent, r.r.S), ratio(r.r.WebSent, r.r.S), r.r.WebSeeds, ratio(r.r.Wasted, int64(r.n)*r.r.S))
	}
	reading(&b, rows, cal)
	fmt.Fprintf(&b, "\nThe whole run took %.0f s of one core, of which 1.5 to 2.5 minutes for each run of 10,000 hosts.\n", took.Seconds())
	return b.String()
}

// reading is what the tables say, with their numbers.
func reading(b *strings.Builder, rows []projection, cal []calibration) {
	get := func(name string, n int) (Result, bool) {
		for _, r := range rows {
			if r.pol.Name == name && r.n == n {
				return r.r, true
			}
		}
		return Result{}, false
	}
	pols := policies()
	tpm, noWeb, super, all := pols[0].Name, pols[2].Name, pols[3].Name, pols[4].Name
	t, ok1 := get(tpm, 10000)
	w, ok2 := get(noWeb, 10000)
	s, ok3 := get(super, 10000)
	a, ok4 := get(all, 1000)
	w1, ok5 := get(noWeb, 1000)
	q, ok6 := get(pols[1].Name, 1000)
	t1, ok7 := get(tpm, 1000)
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 || !ok7 {
		return
	}
	extra := func(n int) float64 {
		x, _ := get(tpm, n)
		y, _ := get(noWeb, n)
		return ratio(x.OriginSent-y.OriginSent, x.S)
	}
	b.WriteString("\n## Reading\n\n")
	fmt.Fprintf(b, `- **tpm before 2026-12-02, 10,000 hosts: the web-seed fallback swamps the repository.** Only 50 hosts at a time have a connection to the repository's seeder; a host further than a couple of hops from them gets no piece of some torrent in its first 3 s, adds the web seed, and fetches that whole file over HTTP: the web seed joined %d of %d torrents, the repository had sent %.1f S after %.0f s and %d hosts were unfinished. At 100 and 1,000 hosts it joins for some hosts only (a race of the first 3 s and of the last pieces, so the numbers jump between N and with the reaction time), and already costs the repository %.2f S (N = 100) and %.2f S (N = 1,000) more than without it.
- **Without that fallback while the tracker counts a seed** the fleet of 10,000 finishes in %.1f s, %.2f times the bound, with the repository sending %.2f S; 1,000 hosts %.1f s and %.2f S. Time and egress then grow slowly with N: the last pieces cross more hops, and more hosts ask the repository for the same rare piece before its HAVEs arrive.
- **Super-seeding at the repository** (serve a piece a second time only once every piece went out once) takes 10,000 hosts to %.1f s (%.2f × bound) and %.2f S.
- **The seeder's connection cap is what keeps egress down**: with every host connected (the 64/d² queue floors at 2 chunks a torrent, so N hosts queue 6N chunks) 1,000 hosts take %.1f s and %.2f S, against %.1f s and %.2f S with anacrolix's 50.
- **Built**, from the model (2026-12-02, tpm now): no web seed on a stall while a seed is connected, or before the quiet connections were made again when the tracker counted one (it was a cliff: a little more latency or larger pieces and every host of a fleet added it; with a reaction of 0.2 s instead of the fitted 0.6 s, 1,000 hosts add it %d times instead of %d), and the repository refusing pieces other hosts have or are getting, which is super-seeding enforced on requests (swarm/origin.go); the seeder's connection cap stays at 50. The queue formula 64/d² no longer matters past 8 hosts, where it is at its floor of 2. A fleet of 10,000 hosts now has the set in about %.0f s, %.1f times the bound, for %.1f S from the repository.
%s- What the model leaves out: the seeder's claims (swarm/origin.go holds a piece it sent for 2 s, and releases it when its peer leaves; the model's super-seeding serves a piece again only once every piece went out once), the seeder dropping its worst connection for a new one (anacrolix may; here the first 50 keep their seats), peers' duplicate chunks and endgame, per-torrent connections (one link carries the three torrents), latency beyond the fitted reaction time, and any host slower than the others.
`, t.WebSeeds, 3*len(t.Finish), ratio(t.OriginSent, t.S), t.Last, t.Unfinished, extra(100), extra(1000),
		w.Last, w.Last/w.Bound, ratio(w.OriginSent, w.S), w1.Last, ratio(w1.OriginSent, w1.S),
		s.Last, s.Last/s.Bound, ratio(s.OriginSent, s.S),
		a.Last, ratio(a.OriginSent, a.S), w1.Last, ratio(w1.OriginSent, w1.S),
		q.WebSeeds, t1.WebSeeds, s.Last, s.Last/s.Bound, ratio(s.OriginSent, s.S), checked(cal))
}

// checked reads the calibration of tpm now: how close the model came.
func checked(cal []calibration) string {
	var timeOff, sentLo, sentHi float64
	sentLo = math.Inf(1)
	for _, c := range cal {
		if c.set.fitted {
			continue
		}
		timeOff = max(timeOff, math.Abs(c.r.Last/c.m.last-1))
		sent := ratio(c.r.OriginSent, c.r.S)/c.m.originS - 1
		sentLo, sentHi = min(sentLo, sent), max(sentHi, sent)
	}
	if math.IsInf(sentLo, 1) {
		return ""
	}
	egress := ""
	if sentLo >= 0 {
		egress = ", and are, if anything, pessimistic about the repository's egress"
	}
	return fmt.Sprintf("- **Checked against tpm now** (the second calibration table, nothing refitted): within %.0f %% of the measured last finish at every N; what the model's repository sends differs from the runs' by %+.0f to %+.0f %% (the model's super-seeding has no claims, below). So the fleet rows of \"tpm now\" rest on a model that matches the policy as built%s.\n",
		100*timeOff, 100*sentLo, 100*sentHi, egress)
}

func ratio(a, b int64) float64 { return float64(a) / float64(b) }

func sum(xs []int64) int64 {
	var t int64
	for _, x := range xs {
		t += x
	}
	return t
}

func sizesMB(xs []int64) string {
	var parts []string
	for _, x := range xs {
		parts = append(parts, fmt.Sprintf("%g", float64(x)/1e6))
	}
	return strings.Join(parts, ", ")
}
