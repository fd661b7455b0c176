package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A small run of the benchmark (two clients, 3 MB) keeps it working: it
// builds the namespaces, installs through the swarm, measures HTTP, writes
// the table and the plot, and leaves no namespace behind.
func TestSmallSwarm(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the swarm benchmark needs root (network namespaces and tc)")
	}
	for _, tool := range []string{"ip", "tc", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (apt-get install iproute2 curl)", tool)
		}
	}
	results := t.TempDir()
	t.Setenv("TMPDIR", t.TempDir())
	_, noAria2 := exec.LookPath("aria2c")
	_, noTransmission := exec.LookPath("transmission-cli")
	o := options{ns: []int{2}, sizesMB: []int{2, 1}, repoUpMbit: 20, link: 50, delay: 2 * time.Millisecond,
		results: results, http: true, aria2: noAria2 == nil, transmission: noTransmission == nil}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := run(ctx, o); err != nil {
		t.Fatal(err)
	}
	table, err := os.ReadFile(filepath.Join(results, "swarm.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(table), "\n| 2 | ") {
		t.Fatalf("no row for N = 2 in the table:\n%s", table)
	}
	if o.aria2 && !strings.Contains(string(table), "aria2c, last finish") {
		t.Fatalf("no aria2c table:\n%s", table)
	}
	if o.transmission && !strings.Contains(string(table), "transmission-cli, last finish") {
		t.Fatalf("no transmission-cli columns:\n%s", table)
	}
	png, err := os.ReadFile(filepath.Join(results, "swarm.png"))
	if err != nil || !strings.HasPrefix(string(png), "\x89PNG") {
		t.Fatalf("swarm.png is not a PNG (%v)", err)
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	if mine := fmt.Sprintf("%s%d-", nsPrefix, os.Getpid()); strings.Contains(string(out), mine) {
		t.Fatalf("namespaces left behind:\n%s", out)
	}
}

// The standard clients' table has a cell under every heading, with one
// client or both.
func TestBaselineTable(t *testing.T) {
	a := &baselineResult{last: 20 * time.Second, repoSent: 50e6, cpuSecs: 10}
	tr := &baselineResult{last: 25 * time.Second, repoSent: 60e6, cpuSecs: 12}
	for _, r := range []result{
		{n: 4, tpm: 18 * time.Second, bound: 16 * time.Second, totalBytes: 40e6, repoSentTPM: 41e6, cpuSecsTPM: 9, aria2: a},
		{n: 4, tpm: 18 * time.Second, bound: 16 * time.Second, totalBytes: 40e6, repoSentTPM: 41e6, cpuSecsTPM: 9, transmission: tr},
		{n: 4, tpm: 18 * time.Second, bound: 16 * time.Second, totalBytes: 40e6, repoSentTPM: 41e6, cpuSecsTPM: 9, aria2: a, transmission: tr},
	} {
		table := baselineMarkdown([]result{r})
		lines := strings.Split(strings.TrimSpace(table), "\n")
		head, rule, row := lines[len(lines)-3], lines[len(lines)-2], lines[len(lines)-1]
		want := 2 + 5*(len(r.baselines())) + 3
		for _, l := range []string{head, rule, row} {
			if got := strings.Count(l, "|") - 1; got != want {
				t.Errorf("%d columns, want %d, in:\n%s", got, want, table)
			}
		}
		if r.transmission != nil && !strings.Contains(row, "| 25.0 s |") {
			t.Errorf("no transmission-cli time in the row:\n%s", table)
		}
	}
}
