// Package benchkit is what the benchmark commands under test/bench share:
// building tpmd (from the working tree or from another revision, for a
// "before" row in the same run), starting and stopping daemons, asking
// tpmd client as tpm does, and reading a process's CPU and memory.
// Everything stays on 127.0.0.1 and in the caller's temporary directory.
package benchkit

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"tpm/local"
	"tpm/messages/wire"
)

// Fail prints the error and ends the benchmark.
func Fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	os.Exit(1)
}

// Check ends the benchmark on err.
func Check(err error) {
	if err != nil {
		Fail("%v", err)
	}
}

// Build builds tpm and tpmd into dir as the tree's own Makefile does
// (make build: its Go flags and environment, cgo or not). With rev set, it
// builds them from a worktree of that git revision (removed afterwards),
// so a benchmark can set the code before a change beside the code after
// it; "" builds the working tree.
func Build(dir, rev string) {
	Check(os.MkdirAll(dir, 0o755))
	src := "."
	if rev != "" {
		src = filepath.Join(dir, "src")
		if out, err := exec.Command("git", "worktree", "add", "--detach", "-f", src, rev).CombinedOutput(); err != nil {
			Fail("git worktree add %s: %v\n%s", rev, err, out)
		}
		defer exec.Command("git", "worktree", "remove", "--force", src).Run()
	}
	abs, err := filepath.Abs(dir)
	Check(err)
	cmd := exec.Command("make", "-s", "build", "BIN="+abs)
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		Fail("make build at %q: %v\n%s", rev, err, out)
	}
}

// Call sends one request as tpm does (local.Client) and decodes the
// result into data.
func Call(run, verb string, args []string, mod func(*wire.Request), data any) error {
	req := wire.Request{Verb: verb, Args: args}
	if mod != nil {
		mod(&req)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cl := &local.Client{RunDir: run}
	r, err := cl.Call(ctx, req, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", verb, err)
	}
	if data != nil {
		return json.Unmarshal(r.Data, data)
	}
	return nil
}

// Start starts bin with its output in logPath.
func Start(bin, logPath string, args ...string) *exec.Cmd {
	logf, err := os.Create(logPath)
	Check(err)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	Check(cmd.Start())
	return cmd
}

// Stop interrupts cmd and kills it when it has not ended 10 s later.
func Stop(cmd *exec.Cmd) {
	cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
	}
}

// WaitHTTP waits up to 30 s for url to answer 200.
func WaitHTTP(url string) {
	for range 600 {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	Fail("%s never answered", url)
}

// WaitSeeding waits up to 10 minutes until the repository at url seeds
// n packages, every one checked (/healthz says seeding=n/n): a fresh
// server hashes its files first, and a host that asks meanwhile waits for
// that, not for the code measured.
func WaitSeeding(url string, n int) {
	want := fmt.Sprintf("seeding=%d/%d", n, n)
	for deadline := time.Now().Add(10 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get(url + "/healthz")
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if strings.Contains(string(b), want) {
			return
		}
	}
	Fail("%s did not say %s within 10 minutes", url, want)
}

// FreeAddr is a free loopback address.
func FreeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	Check(err)
	defer ln.Close()
	return ln.Addr().String()
}

// Median of d.
func Median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// MS is d in milliseconds, two decimals.
func MS(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

// CPUTicks is utime+stime of pid in clock ticks (100 a second on Linux).
func CPUTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	Check(err)
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

// ProcStatus is the value of key in /proc/PID/status ("?" when absent).
func ProcStatus(pid int, key string) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	Check(err)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}
