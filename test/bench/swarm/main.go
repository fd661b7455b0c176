// Command swarm measures how tpm feeds a fleet from a repository with a thin
// uplink, on a network of namespaces on this machine (run as root):
//
//   - one repository host and N client hosts (-n, default 4,8,16), veths on
//     a bridge in a private subnet that exists only inside the namespaces;
//   - tc limits the repository's uplink to U (-repo-up) and every client's
//     up and down link to u (-link), with -delay where the kernel has netem;
//   - a package set of total size S (-sizes) is published by tpmd server;
//     every client host runs tpmd client, and tpm install -y of the whole
//     set starts on all of them at once;
//   - the baseline in the same network: every client fetching the same files
//     with curl from the server's /packages/ at once, and the lower bound
//     max(S/U, N·S/(U+N·u), S/u);
//   - with -aria2 and -transmission (the defaults), standard BitTorrent
//     clients in the same network after tpm: aria2c, then transmission-cli,
//     on every client host at once with the set's torrents, peers only
//     (baseline.go);
//   - with -mirror (the default), at the largest N, a run with the origin
//     and one mirror (tpmd mirror, uplink U too; hosts name both with
//     --server, the origin names the mirror's tracker with --announce):
//     half-way through the bound for two sources, max(S/2U, N·S/(2U+N·u),
//     S/u), the origin is killed, and every host must still finish
//     (mirror.go).
//
// It prints a Markdown table and writes it, with a PNG plot of time against
// N, under -results. The namespaces are always deleted, also on failure,
// SIGINT or SIGTERM, and those of an earlier run that was killed are deleted
// at start. Usage: go run ./test/bench/swarm [flags] (make bench-swarm).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"tpm/messages/wire"
	"tpm/repo/repotest"
	"tpm/signing"
)

type options struct {
	ns               []int
	sizesMB          []int
	repoUpMbit, link float64
	delay            time.Duration
	results          string
	timeout          time.Duration
	http             bool
	keep             bool
	mirror           bool // also the run with the origin and one mirror, the origin killed half-way
	aria2            bool // also aria2c on every host with the same torrents, peers only
	transmission     bool // also transmission-cli on every host with the same torrents, peers only
}

// result is one N's row.
type result struct {
	n                int
	tpm, http, bound time.Duration
	finishes         []time.Duration // tpm, per client, sorted
	repoSentTPM      int64           // bytes the repository host sent during the tpm run
	repoSentHTTP     int64
	peerUp, peerDown int64   // sums over the clients of their torrent data counters
	seederUp         int64   // what the repository's BitTorrent seeder uploaded (the rest went over HTTP)
	cpuBusy          float64 // share of the machine's CPU time in use during the tpm run
	cpuSecsTPM       float64 // the machine's busy CPU seconds during the tpm run
	aria2            *baselineResult
	transmission     *baselineResult
	shaper           string
	totalBytes       int64
}

func main() {
	var o options
	var ns, sizes string
	flag.StringVar(&ns, "n", "4,8,16", "numbers of client hosts, comma-separated")
	flag.StringVar(&sizes, "sizes", "20,12,8", "sizes of the packages of the set in MB (10^6 bytes), comma-separated")
	flag.Float64Var(&o.repoUpMbit, "repo-up", 20, "the repository host's uplink U in Mbit/s")
	flag.Float64Var(&o.link, "link", 50, "every client's uplink and downlink u in Mbit/s")
	flag.DurationVar(&o.delay, "delay", 5*time.Millisecond, "delay added on every host's uplink (needs netem in the kernel)")
	flag.StringVar(&o.results, "results", "test/bench/results", "folder for swarm.md and swarm.png")
	flag.DurationVar(&o.timeout, "timeout", 45*time.Minute, "limit for the whole run")
	flag.BoolVar(&o.http, "http", true, "measure the plain HTTP baseline (false: tpm only, for quick iterations)")
	flag.BoolVar(&o.keep, "keep", false, "keep the scratch folder (logs) after the run")
	flag.BoolVar(&o.mirror, "mirror", true, "also run, at the largest N, with the origin and one mirror (each with uplink U), the origin killed half-way")
	flag.BoolVar(&o.aria2, "aria2", true, "also run aria2c on every host with the same .torrent files (web seeds removed), a standard client's baseline")
	flag.BoolVar(&o.transmission, "transmission", true, "also run transmission-cli on every host with the same .torrent files (web seeds removed), a second standard client's baseline")
	flag.Parse()
	var err error
	if o.ns, err = ints(ns); err != nil {
		fail("-n: %v", err)
	}
	if o.sizesMB, err = ints(sizes); err != nil {
		fail("-sizes: %v", err)
	}
	if os.Geteuid() != 0 {
		fail("needs root, for network namespaces and tc (run: sudo make bench-swarm)")
	}
	for _, tool := range []string{"ip", "tc", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			fail("%s is not installed (apt-get install iproute2 curl)", tool)
		}
	}
	if _, err := exec.LookPath("aria2c"); o.aria2 && err != nil {
		fail("aria2c is not installed (apt-get install aria2, or -aria2=false)")
	}
	if _, err := exec.LookPath("transmission-cli"); o.transmission && err != nil {
		fail("transmission-cli is not installed (apt-get install transmission-cli, or -transmission=false)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	err = run(ctx, o)
	cancel()
	stop()
	if err != nil {
		fail("%v", err)
	}
}

func run(ctx context.Context, o options) error {
	removeStale()
	work, err := os.MkdirTemp("", "tpm-bench-swarm-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintf(os.Stderr, "scratch folder (kept): %s\n", work)
	} else {
		defer os.RemoveAll(work)
	}
	bin := filepath.Join(work, "bin")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin+"/", "tpm/cmd/tpmd", "tpm/cmd/tpm").CombinedOutput(); err != nil {
		return fmt.Errorf("building tpmd and tpm: %v\n%s", err, out)
	}
	set, err := makeSet(work, o.sizesMB)
	if err != nil {
		return err
	}
	keyPath, pubPath, err := signing.Keygen(filepath.Join(work, "keys"), false)
	if err != nil {
		return err
	}
	sh := shape{repoUp: int64(o.repoUpMbit * 1e6), clientLink: int64(o.link * 1e6), delay: o.delay}
	var results []result
	for _, n := range o.ns {
		fmt.Fprintf(os.Stderr, "N = %d ...\n", n)
		r, err := measure(ctx, o, sh, n, set, filepath.Join(work, fmt.Sprintf("n%d", n)), bin, keyPath, pubPath)
		if err != nil {
			return fmt.Errorf("run with N = %d: %w", n, err)
		}
		results = append(results, r)
		fmt.Fprintf(os.Stderr, "N = %d: tpm %v, HTTP %v, bound %v\n", n, r.tpm, r.http, r.bound)
		if r.aria2 != nil {
			fmt.Fprintf(os.Stderr, "N = %d: aria2c %v\n", n, r.aria2.last)
		}
		if r.transmission != nil {
			fmt.Fprintf(os.Stderr, "N = %d: transmission-cli %v\n", n, r.transmission.last)
		}
	}
	var mr *mirrorResult
	if o.mirror && len(o.ns) > 0 {
		n := slices.Max(o.ns)
		fmt.Fprintf(os.Stderr, "N = %d, origin and one mirror, the origin killed half-way ...\n", n)
		r, err := measureMirror(ctx, sh, n, set, filepath.Join(work, fmt.Sprintf("mirror-n%d", n)), bin, keyPath, pubPath)
		if err != nil {
			return fmt.Errorf("run with a mirror, N = %d: %w", n, err)
		}
		mr = &r
		fmt.Fprintf(os.Stderr, "N = %d with a mirror: tpm %v, bound for two sources %v\n", n, r.tpm, r.bound)
	}
	table := markdown(o, set, results)
	if mr != nil {
		table += mirrorMarkdown(set, *mr)
	}
	fmt.Print(table)
	if err := os.MkdirAll(o.results, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.results, "swarm.md"), []byte(table), 0o644); err != nil {
		return err
	}
	return plotResults(filepath.Join(o.results, "swarm.png"), o, results)
}

// packageSet is the published set: the packages' names and files.
type packageSet struct {
	dir   string
	names []string
	files []string
	bytes int64
}

func makeSet(work string, sizesMB []int) (packageSet, error) {
	s := packageSet{dir: filepath.Join(work, "packages")}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return s, err
	}
	for i, mb := range sizesMB {
		name := fmt.Sprintf("bulk%d", i+1)
		path, err := repotest.MakeErr(work, s.dir, repotest.Package{Name: name, Version: "1.0", PayloadBytes: mb * 1e6, Seed: uint64(i + 1)})
		if err != nil {
			return s, err
		}
		fi, err := os.Stat(path)
		if err != nil {
			return s, err
		}
		s.names = append(s.names, name)
		s.files = append(s.files, filepath.Base(path))
		s.bytes += fi.Size()
	}
	return s, nil
}

// measure builds the network for n clients, runs the HTTP baseline and the
// tpm install on it, and tears it down.
func measure(ctx context.Context, o options, sh shape, n int, set packageSet, dir, bin, keyPath, pubPath string) (result, error) {
	r := result{n: n, totalBytes: set.bytes}
	nw, err := newNetwork(ctx, n, sh, false)
	if err != nil {
		return r, err
	}
	defer nw.teardown()
	r.shaper = nw.shaper
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return r, err
	}
	// The expected HTTP time N·S/U, three times over plus a minute, bounds
	// every phase.
	phase := time.Duration(float64(n)*float64(set.bytes*8)/float64(sh.repoUp)*3*float64(time.Second)) + time.Minute

	url := repoURL(nw)
	srv, err := startRepository(ctx, nw, dir, "server", bin, keyPath, set)
	if err != nil {
		return r, err
	}
	defer srv.stop()

	if o.http {
		before, err := txBytes(ctx, nw.repo)
		if err != nil {
			return r, err
		}
		pctx, cancel := context.WithTimeout(ctx, phase)
		times, err := everyClient(pctx, nw, func(ctx context.Context, i int, h host) error {
			args := []string{"-sf", "--no-progress-meter", "--parallel"}
			for _, f := range set.files {
				args = append(args, "-o", "/dev/null", url+"/packages/"+f)
			}
			out, err := inNS(ctx, h, "curl", args...).CombinedOutput()
			if err != nil {
				return fmt.Errorf("curl on %s: %v %s", h.ns, err, out)
			}
			return nil
		})
		cancel()
		if err != nil {
			return r, err
		}
		r.http = times[len(times)-1]
		after, err := txBytes(ctx, nw.repo)
		if err != nil {
			return r, err
		}
		r.repoSentHTTP = after - before
	}

	clients, runDirs, err := startClients(ctx, nw, dir, bin, pubPath, set, url)
	defer func() {
		for _, c := range clients {
			c.stop()
		}
	}()
	if err != nil {
		return r, err
	}

	before, err := txBytes(ctx, nw.repo)
	if err != nil {
		return r, err
	}
	seederBefore, err := seederUploaded(ctx, nw.clients[0], url)
	if err != nil {
		return r, err
	}
	busy0, total0 := cpuTicks()
	pctx, cancel := context.WithTimeout(ctx, phase)
	times, err := everyClient(pctx, nw, func(ctx context.Context, i int, h host) error {
		args := append([]string{"--run-dir", runDirs[i], "install", "-y"}, set.names...)
		out, err := inNS(ctx, h, bin+"/tpm", args...).CombinedOutput()
		if err != nil {
			return errors.Join(fmt.Errorf("tpm install on %s: %v %s", h.ns, err, out), clients[i].logTail())
		}
		return nil
	})
	cancel()
	if err != nil {
		return r, err
	}
	r.tpm, r.finishes = times[len(times)-1], times
	busy1, total1 := cpuTicks()
	r.cpuBusy = float64(busy1-busy0) / float64(max(1, total1-total0))
	r.cpuSecsTPM = cpuSeconds(busy1 - busy0)
	after, err := txBytes(ctx, nw.repo)
	if err != nil {
		return r, err
	}
	r.repoSentTPM = after - before
	seederAfter, err := seederUploaded(ctx, nw.clients[0], url)
	if err != nil {
		return r, err
	}
	r.seederUp = seederAfter - seederBefore
	for i := range nw.clients {
		st, err := status(ctx, bin, runDirs[i])
		if err != nil {
			return r, err
		}
		r.peerUp += st.BytesUp
		r.peerDown += st.BytesDown
	}

	S, U, u := float64(set.bytes*8), float64(sh.repoUp), float64(sh.clientLink)
	N := float64(n)
	r.bound = time.Duration(max(S/U, N*S/(U+N*u), S/u) * float64(time.Second))
	if !o.aria2 && !o.transmission {
		return r, nil
	}
	// Nobody else in the swarm: tpm's hosts and server stop first, and each
	// standard client's processes stop before the next one starts.
	for _, c := range clients {
		c.stop()
	}
	clients = nil
	srv.stop()
	if o.aria2 {
		a, err := measureAria2(ctx, nw, set, dir, bin, keyPath, phase)
		if err != nil {
			return r, fmt.Errorf("aria2c: %w", err)
		}
		r.aria2 = &a
	}
	if o.transmission {
		t, err := measureTransmission(ctx, nw, set, dir, bin, keyPath, phase)
		if err != nil {
			return r, fmt.Errorf("transmission-cli: %w", err)
		}
		r.transmission = &t
	}
	return r, nil
}

func repoURL(nw *network) string { return "http://" + nw.repo.ip + ":8080" }

// startRepository starts tpmd server on the repository host, its state in
// dir/name and its log in dir/name.log, and waits until it publishes.
func startRepository(ctx context.Context, nw *network, dir, name, bin, keyPath string, set packageSet, extra ...string) (*daemon, error) {
	url := repoURL(nw)
	args := append([]string{"server", "--packages", set.dir, "--state-dir", filepath.Join(dir, name), "--key", keyPath,
		"--http", nw.repo.ip + ":8080", "--public-url", url, "--torrent-listen", nw.repo.ip + ":6881", "--log-level", "warn"}, extra...)
	srv, err := startDaemon(ctx, nw.repo, filepath.Join(dir, name+".log"), bin+"/tpmd", args...)
	if err != nil {
		return nil, err
	}
	if err := waitFor(ctx, 60*time.Second, "the server's index", func() bool {
		return inNS(ctx, nw.clients[0], "curl", "-sf", "-o", "/dev/null", url+"/index.db.sig").Run() == nil
	}); err != nil {
		srv.stop()
		return nil, errors.Join(err, srv.logTail())
	}
	// A server's seeder checks every package it has not recorded before
	// serving it, and a fresh one has recorded none: the clients start
	// once it has checked the set (with 16 busy hosts on the 2 cores, the
	// check took up to 22 s, during which no host got a byte of that
	// package), as they would from a server that has been running.
	want := fmt.Sprintf("%d/%d", len(set.files), len(set.files))
	if err := waitFor(ctx, 60*time.Second, "the server's seeder to check the set", func() bool {
		v, err := healthz(ctx, nw.clients[0], url, "seeding")
		return err == nil && v == want
	}); err != nil {
		srv.stop()
		return nil, errors.Join(err, srv.logTail())
	}
	return srv, nil
}

// startClients starts tpmd client on every client host, naming servers,
// and waits until each has the set's index. It returns the daemons it
// started (the caller stops them, also on error) and their run folders.
func startClients(ctx context.Context, nw *network, dir, bin, pubPath string, set packageSet, servers ...string) ([]*daemon, []string, error) {
	var clients []*daemon
	runDirs := make([]string, len(nw.clients))
	for i, h := range nw.clients {
		cdir := filepath.Join(dir, fmt.Sprintf("c%02d", i+1))
		runDirs[i] = filepath.Join(cdir, "run")
		args := []string{"client"}
		for _, s := range servers {
			args = append(args, "--server", s)
		}
		args = append(args, "--trusted-key", pubPath,
			"--state-dir", filepath.Join(cdir, "state"), "--cache-dir", filepath.Join(cdir, "cache"), "--run-dir", runDirs[i],
			"--prefix", filepath.Join(cdir, "root"), "--build-dir", filepath.Join(cdir, "build"),
			"--torrent-listen", h.ip+":6881", "--log-level", "warn")
		c, err := startDaemon(ctx, h, cdir+".log", bin+"/tpmd", args...)
		if err != nil {
			return clients, runDirs, err
		}
		clients = append(clients, c)
	}
	for i, h := range nw.clients {
		var last any
		if err := waitFor(ctx, 60*time.Second, h.ns+"'s index", func() bool {
			st, err := status(ctx, bin, runDirs[i])
			last = st
			if err != nil {
				last = err
			}
			return err == nil && st.IndexPackages == len(set.names)
		}); err != nil {
			return clients, runDirs, errors.Join(fmt.Errorf("%w (last status: %+v)", err, last), clients[i].logTail())
		}
	}
	return clients, runDirs, nil
}

// everyClient runs f on every client at once and returns how long each
// took from the common start, sorted.
func everyClient(ctx context.Context, nw *network, f func(context.Context, int, host) error) ([]time.Duration, error) {
	type done struct {
		took time.Duration
		err  error
	}
	ch := make(chan done, len(nw.clients))
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	t0 := time.Now()
	for i, h := range nw.clients {
		go func() {
			err := f(ctx, i, h)
			ch <- done{time.Since(t0), err}
		}()
	}
	var times []time.Duration
	var errs []error
	for range nw.clients {
		d := <-ch
		if d.err != nil {
			cancel() // one failure ends the others
			errs = append(errs, d.err)
		}
		times = append(times, d.took)
	}
	if len(errs) > 0 {
		if parent.Err() != nil { // interrupted or out of time: the clients' errors only echo it
			return nil, fmt.Errorf("stopped before every client finished: %w", parent.Err())
		}
		return nil, errs[0]
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	return times, nil
}

// daemon is a tpmd running in a namespace, its output in a log file.
type daemon struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startDaemon(ctx context.Context, h host, logPath, bin string, args ...string) (*daemon, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := inNS(ctx, h, bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", filepath.Base(bin), h.ns, err)
	}
	d := &daemon{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); close(d.done) }()
	return d, nil
}

// stop asks the daemon to stop (SIGTERM) and kills it after 10 s.
func (d *daemon) stop() {
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
	}
}

func (d *daemon) logTail() error {
	b, _ := os.ReadFile(d.log)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return fmt.Errorf("%s:\n%s", d.log, b)
}

func waitFor(ctx context.Context, limit time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("waited %v for %s", limit, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// cpuTicks is the machine's busy and total CPU time from /proc/stat: the
// hosts share this machine's cores, so a run near 100 % is limited by CPU,
// not by the network.
func cpuTicks() (busy, total int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseInt(f, 10, 64)
		total += v
		if i != 3 && i != 4 { // idle and iowait
			busy += v
		}
	}
	return busy, total
}

// seederUploaded reads the bytes the repository's seeder uploaded from the
// server's /healthz.
func seederUploaded(ctx context.Context, h host, url string) (int64, error) {
	v, err := healthz(ctx, h, url, "uploaded")
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(v, 10, 64)
}

// healthz is the value of name=VALUE in the server's /healthz line.
func healthz(ctx context.Context, h host, url, name string) (string, error) {
	out, err := inNS(ctx, h, "curl", "-sf", url+"/healthz").Output()
	if err != nil {
		return "", fmt.Errorf("curl %s/healthz: %w", url, err)
	}
	for _, f := range strings.Fields(string(out)) {
		if v, ok := strings.CutPrefix(f, name+"="); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("%s/healthz says no %s=: %q", url, name, out)
}

func status(ctx context.Context, bin, runDir string) (wire.Status, error) {
	var st wire.Status
	out, err := exec.CommandContext(ctx, bin+"/tpm", "--run-dir", runDir, "--json", "status").CombinedOutput()
	if err != nil {
		return st, fmt.Errorf("tpm status: %v: %s", err, out)
	}
	// --json prints reply lines (wire.Reply); status's only one is its
	// result, with the Status as data.
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var reply wire.Reply
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &reply); err != nil {
		return st, fmt.Errorf("tpm status: %w", err)
	}
	if reply.Type != wire.ReplyResult {
		return st, fmt.Errorf("tpm status: a %s reply, not the result: %s", reply.Type, lines[len(lines)-1])
	}
	if err := json.Unmarshal(reply.Data, &st); err != nil {
		return st, fmt.Errorf("tpm status: %w", err)
	}
	return st, nil
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("%q is not a list of positive numbers", s)
		}
		out = append(out, v)
	}
	return out, nil
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench swarm: "+format+"\n", args...)
	os.Exit(1)
}
