package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"sort"
	"strings"
	"time"

	"tpm/cli"
)

func main() {
	type acc struct {
		d     time.Duration
		n     int
		first time.Duration
	}
	start := time.Now()
	last, lastKind := start, "startup+plan"
	m := map[string]*acc{}
	add := func(kind string, now time.Time) {
		a := m[kind]
		if a == nil {
			a = &acc{first: last.Sub(start)}
			m[kind] = a
		}
		a.d += now.Sub(last)
		a.n++
	}
	step := func(s string) {
		now := time.Now()
		add(lastKind, now)
		kind, _, _ := strings.Cut(s, " ")
		last, lastKind = now, kind
	}
	pf, _ := os.Create(os.Getenv("CPUPROF"))
	pprof.StartCPUProfile(pf)
	code := cli.Main(context.Background(), os.Args[1:], cli.Env{Stdin: os.Stdin, Stdout: io.Discard, Stderr: os.Stderr, Getenv: os.Getenv, Step: step})
	pprof.StopCPUProfile()
	pf.Close()
	add(lastKind+" (to exit)", time.Now())
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool { return m[ks[i]].first < m[ks[j]].first })
	for _, k := range ks {
		fmt.Printf("%-26s %8.1f ms  (%d steps, from %.1f ms)\n", k, float64(m[k].d.Microseconds())/1000, m[k].n, float64(m[k].first.Microseconds())/1000)
	}
	fmt.Printf("total %.1f ms, exit %d\n", float64(time.Since(start).Microseconds())/1000, code)
}
