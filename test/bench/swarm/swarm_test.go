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
	o := options{ns: []int{2}, sizesMB: []int{2, 1}, repoUpMbit: 20, link: 50, delay: 2 * time.Millisecond,
		results: results, http: true, aria2: noAria2 == nil}
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
