// Command swarmsim is a model of tpm's swarm: a seeded fixed-timestep
// simulation of hosts, their links, the repository's uplink and tpm's
// policies (the request queue at the repository, the web-seed fallback,
// anacrolix's piece selection), calibrated against the namespace runs of
// test/bench/swarm at N = 4, 8, 16 and then run for fleets no machine here
// can hold. It writes test/bench/results/swarmsim.md.
//
// Usage: go run ./test/bench/swarmsim [-n 100,1000,10000] [-results dir]
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

func main() {
	var ns, only string
	results := flag.String("results", "test/bench/results", "folder for swarmsim.md")
	flag.StringVar(&ns, "n", "100,1000,10000", "fleet sizes to project, comma-separated")
	flag.StringVar(&only, "policies", "", "run only these policies (comma-separated names; empty: all)")
	calOnly := flag.Bool("calibrate", false, "print the calibration only")
	flag.Parse()
	fleets, err := ints(ns)
	if err != nil {
		fail(fmt.Errorf("-n: %w", err))
	}
	start := time.Now()
	cal, err := calibrate()
	if err != nil {
		fail(err)
	}
	for _, c := range cal {
		fmt.Fprintf(os.Stderr, "%s, N=%d: model %.1f s (measured %.1f s), origin %.2f S (measured %.2f S)\n",
			c.set.pol.Name, c.m.n, c.r.Last, c.m.last, float64(c.r.OriginSent)/float64(c.r.S), c.m.originS)
	}
	if *calOnly {
		return
	}
	var rows []projection
	for _, pol := range policies() {
		if only != "" && !strings.Contains(","+only+",", ","+pol.Name+",") {
			continue
		}
		for _, n := range fleets {
			if n > pol.MaxN && pol.MaxN > 0 {
				continue
			}
			p := fleet(n, pol)
			t0 := time.Now()
			r, err := Run(p)
			if err != nil {
				fail(err)
			}
			fmt.Fprintf(os.Stderr, "%-14s N=%-6d last %.1f s (%.2f bound), origin %.2f S, web seeds %d, %.1f s\n",
				pol.Name, n, r.Last, r.Last/r.Bound, float64(r.OriginSent)/float64(r.S), r.WebSeeds, time.Since(t0).Seconds())
			rows = append(rows, projection{pol, n, r})
		}
	}
	path := filepath.Join(*results, "swarmsim.md")
	if err := os.WriteFile(path, []byte(markdown(cal, rows, time.Since(start))), 0o644); err != nil {
		fail(fmt.Errorf("results: %w", err))
	}
	fmt.Fprintln(os.Stderr, "wrote", path)
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 1 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, v)
	}
	return out, nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "swarmsim:", err)
	os.Exit(1)
}
