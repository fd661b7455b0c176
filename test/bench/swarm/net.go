package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// nsPrefix names every namespace this benchmark makes, followed by the pid
// of the run that made it, so a later run can tell a dead run's leftovers
// from a live run's network.
const nsPrefix = "tpmsw-"

// subnet is the private test subnet. It exists only on the veths inside
// this run's namespaces: the bridge lives in a namespace of its own, so no
// address or route is added to the machine's own network.
const subnet = "10.201.0."

// network is one repository host and N client hosts, each a namespace with
// an eth0 whose other end sits on a bridge in a separate namespace.
type network struct {
	run     string // this run's prefix: tpmsw-PID-
	bridge  string
	repo    host
	mirror  *host // a mirror's host, with the repository's uplink; nil without one
	clients []host
	shaper  string // how links are limited, for the results
}

type host struct {
	ns   string
	ip   string
	port string // the bridge-side veth, in the bridge namespace
}

// shape is the link limits in bits per second.
type shape struct {
	repoUp, clientLink int64
	delay              time.Duration
}

func newNetwork(ctx context.Context, n int, s shape, withMirror bool) (*network, error) {
	run := fmt.Sprintf("%s%d-", nsPrefix, os.Getpid())
	nw := &network{run: run, bridge: run + "br"}
	nw.repo = host{ns: run + "repo", ip: subnet + "1", port: "p-repo"}
	if withMirror {
		nw.mirror = &host{ns: run + "mirror", ip: subnet + "2", port: "p-mirror"}
	}
	for i := range n {
		nw.clients = append(nw.clients, host{ns: fmt.Sprintf("%sc%02d", run, i+1), ip: fmt.Sprintf("%s%d", subnet, 11+i), port: fmt.Sprintf("p-c%02d", i+1)})
	}
	if err := nw.build(ctx, s); err != nil {
		nw.teardown()
		return nil, err
	}
	return nw, nil
}

func (nw *network) hosts() []host {
	hs := []host{nw.repo}
	if nw.mirror != nil {
		hs = append(hs, *nw.mirror)
	}
	return append(hs, nw.clients...)
}

func (nw *network) build(ctx context.Context, s shape) error {
	steps := [][]string{{"netns", "add", nw.bridge}, {"-n", nw.bridge, "link", "add", "br0", "type", "bridge"}, {"-n", nw.bridge, "link", "set", "br0", "up"}}
	for _, h := range nw.hosts() {
		steps = append(steps,
			[]string{"netns", "add", h.ns},
			[]string{"link", "add", "eth0", "netns", h.ns, "type", "veth", "peer", "name", h.port, "netns", nw.bridge},
			[]string{"-n", nw.bridge, "link", "set", h.port, "master", "br0", "up"},
			[]string{"-n", h.ns, "addr", "add", h.ip + "/24", "dev", "eth0"},
			[]string{"-n", h.ns, "link", "set", "lo", "up"},
			[]string{"-n", h.ns, "link", "set", "eth0", "up"})
	}
	for _, st := range steps {
		if err := sh(ctx, "ip", st...); err != nil {
			return err
		}
	}
	// The repository's uplink is U; each client's uplink and downlink are
	// u (its downlink is the bridge port's egress towards it).
	var err error
	if nw.shaper, err = limit(ctx, nw.repo.ns, "eth0", s.repoUp, s.delay); err != nil {
		return err
	}
	if nw.mirror != nil { // the mirror's uplink is as thin as the origin's
		if _, err = limit(ctx, nw.mirror.ns, "eth0", s.repoUp, s.delay); err != nil {
			return err
		}
	}
	for _, h := range nw.clients {
		if _, err := limit(ctx, h.ns, "eth0", s.clientLink, s.delay); err != nil {
			return err
		}
		if _, err := limit(ctx, nw.bridge, h.port, s.clientLink, 0); err != nil {
			return err
		}
	}
	return nil
}

// limit shapes dev's egress in ns to rate bits/s, with delay when the
// kernel has netem. Without netem (some minimal kernels) it falls back to
// tbf alone, whose queue adds only the latency of a full bucket.
func limit(ctx context.Context, ns, dev string, rate int64, delay time.Duration) (string, error) {
	r := strconv.FormatInt(rate, 10) + "bit"
	if delay > 0 {
		err := sh(ctx, "tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "netem",
			"delay", fmt.Sprintf("%dus", delay.Microseconds()), "rate", r, "limit", "1000")
		if err == nil {
			return fmt.Sprintf("netem rate and %v delay", delay), nil
		}
	}
	// A bucket of at least 64 KiB lets a full GSO segment through; the
	// queue holds 50 ms at the rate.
	burst := max(rate/8/100, 64<<10)
	if err := sh(ctx, "tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "tbf", "rate", r,
		"burst", strconv.FormatInt(burst, 10), "latency", "50ms"); err != nil {
		return "", err
	}
	if delay > 0 {
		return "tbf (no added delay: this kernel has no netem)", nil
	}
	return "tbf", nil
}

// txBytes is what h's eth0 has sent.
func txBytes(ctx context.Context, h host) (int64, error) {
	out, err := exec.CommandContext(ctx, "ip", "-n", h.ns, "-j", "-s", "link", "show", "dev", "eth0").Output()
	if err != nil {
		return 0, fmt.Errorf("ip link show in %s: %w", h.ns, err)
	}
	var links []struct {
		Stats64 struct {
			TX struct {
				Bytes int64 `json:"bytes"`
			} `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		return 0, fmt.Errorf("ip link show in %s: unexpected output %q", h.ns, out)
	}
	return links[0].Stats64.TX.Bytes, nil
}

// teardown kills what runs in the namespaces and deletes them (which
// deletes their veths and the bridge). It runs with its own deadline, so it
// also works after the run's context was cancelled.
func (nw *network) teardown() {
	removeNamespaces(func(name string) bool { return strings.HasPrefix(name, nw.run) })
}

// removeStale deletes the namespaces of earlier runs whose process is gone
// (a run killed with SIGKILL cannot clean up after itself).
func removeStale() {
	removeNamespaces(func(name string) bool {
		rest, ok := strings.CutPrefix(name, nsPrefix)
		if !ok {
			return false
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		return err == nil && pid != os.Getpid() && !alive(pid)
	})
}

// alive tells whether pid runs; a zombie (killed, not yet reaped) does not.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) == syscall.ESRCH {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z' && s[i+2] != 'X'
	}
	return true
}

func removeNamespaces(match func(string) bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && match(f[0]) {
			names = append(names, f[0])
		}
	}
	for _, name := range names {
		pids, _ := exec.CommandContext(ctx, "ip", "netns", "pids", name).Output()
		for _, p := range strings.Fields(string(pids)) {
			if pid, err := strconv.Atoi(p); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	for _, name := range names {
		exec.CommandContext(ctx, "ip", "netns", "del", name).Run()
	}
}

func sh(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// inNS is a command that runs bin in h's namespace.
func inNS(ctx context.Context, h host, bin string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.ns, bin}, args...)...)
	// ip netns exec execs bin in place, so the signal reaches it.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	return cmd
}
