package main

// The repository rows (issue 27): a real tpmd server over -repo-n real
// packages of -payload bytes, each its own file and torrent, made once
// and kept under -repo-cache (making 100,000 takes minutes; the server
// reads every one at its first start, as it would in production). What is
// measured: how soon the signed index is published and every package
// seeded, after a first start and after a restart; the server's memory
// after start, after serving a few hundred installs and under a flood; a
// host without web seed installing packages nobody asked for before; a
// rescan that finds one new file. The flood sends plain BitTorrent
// handshakes to the seeder and leecher announces to the tracker for every
// package, from 127.0.0.2 to 127.0.0.13, while a host installs.

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/anacrolix/torrent/tracker"

	"tpm/messages/wire"
	"tpm/repo"
	"tpm/repo/repotest"
	"tpm/signing"
	"tpm/test/bench/benchkit"
)

var (
	repoN     = flag.Int("repo-n", 100000, "packages the repository rows publish and seed (0: no repository rows)")
	repoCache = flag.String("repo-cache", filepath.Join(os.TempDir(), "tpm-bench-scale-repo"), "where the repository rows' packages are made once and kept")
	served    = flag.Int("served", 300, "packages a host installs from the repository before its memory is measured again")
	floodFor  = flag.Duration("flood", 60*time.Second, "how long the flood row floods")
	seedWait  = flag.Duration("seed-wait", 5*time.Minute, "how long the repository rows wait for every package seeded")
)

// repoRun adds the repository rows of every build.
func repoRun(work string, builds []build, add func(what, who, figure string)) {
	if *repoN <= 0 {
		return
	}
	n := *repoN
	pkgs := makeRepo(work, n)
	for _, b := range builds {
		r := repoServerRun(work, b, pkgs, n)
		add(fmt.Sprintf("tpmd server over %d packages of %d B, first start: signed index published (scan included)", n, *payload), b.name, r.published.Round(time.Millisecond).String())
		add(fmt.Sprintf("tpmd server over %d packages, first start: every package seeded (/healthz seeding=%d/%d)", n, n, n), b.name, r.seeded)
		add(fmt.Sprintf("tpmd server VmRSS over %d packages after start (%v after every package is seeded)", n, startSettle), b.name, r.rssStart)
		add(fmt.Sprintf("/index.db over %d packages: bytes every host fetches", n), b.name, r.indexSize)
		add("a host with --web-seed=false installs a package nobody asked for before (median of 3)", b.name, r.fresh)
		add(fmt.Sprintf("a host installs %d more packages from the repository (one request, --web-seed=false)", *served), b.name, r.servedTook)
		add(fmt.Sprintf("tpmd server VmRSS after serving %d installs", *served+3), b.name, r.rssServed)
		add(fmt.Sprintf("flood of handshakes and announces for all %d packages over %v (%s): tpmd server peak VmRSS", n, *floodFor, r.floodSent), b.name, r.floodPeak)
		add("the same flood: most torrents live at once (/healthz live=)", b.name, r.floodLive)
		add("the same flood: a host with --web-seed=false installs a package nobody asked for before (median of 3)", b.name, r.floodInstall)
		add("rescan finding one new package file, right after the flood (SIGHUP to the new generation, median of 3)", b.name, r.rescan.Round(time.Millisecond).String())
		add(fmt.Sprintf("tpmd server over %d packages, restart: signed index published", n), b.name, r.restarted.Round(time.Millisecond).String())
	}
}

// makeRepo makes n packages under -repo-cache once, and returns the folder.
func makeRepo(work string, n int) string {
	dir := filepath.Join(*repoCache, fmt.Sprintf("%d-%d", n, *payload))
	done := filepath.Join(dir, ".complete")
	if _, err := os.Stat(done); err == nil {
		return dir
	}
	benchkit.Check(os.MkdirAll(dir, 0o755))
	t0 := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				name := repoName(i)
				if _, err := os.Stat(filepath.Join(dir, name+"-1.0-any.tpkg")); err == nil {
					continue
				}
				_, err := repotest.MakeErr(work, dir, repotest.Package{Name: name, Version: "1.0", PayloadBytes: *payload, Seed: uint64(i)})
				benchkit.Check(err)
			}
		}()
	}
	wg.Wait()
	benchkit.Check(os.WriteFile(done, nil, 0o644))
	fmt.Fprintf(os.Stderr, "bench: %d repository packages made in %v (kept in %s)\n", n, time.Since(t0).Round(time.Second), dir)
	return dir
}

func repoName(i int) string { return fmt.Sprintf("repo%06d", i) }

// repoResult is what one repository run measured.
type repoResult struct {
	published, rescan, restarted       time.Duration
	seeded                             string
	fresh, servedTook                  string
	rssStart, rssServed, floodPeak     string
	indexSize                          string
	floodLive, floodInstall, floodSent string
}

// repoServerRun serves pkgs with build b's server from a fresh state and
// measures it (see the top of this file).
// startSettle is how long after start the server's memory is measured.
const startSettle = 5 * time.Second

func repoServerRun(work string, b build, pkgs string, n int) repoResult {
	dir := filepath.Join(work, "repo-run-"+filepath.Base(b.dir))
	bin := filepath.Join(b.dir, "tpmd")
	keyPath, pubPath, err := signing.Keygen(filepath.Join(dir, "keys"), false)
	benchkit.Check(err)
	addr := benchkit.FreeAddr()
	base := "http://" + addr
	args := []string{"server", "--packages", pkgs, "--state-dir", filepath.Join(dir, "server"),
		"--key", keyPath, "--http", addr, "--public-url", base, "--torrent-listen", "127.0.0.1:0", "--log-level", "warn"}
	var r repoResult
	t0 := time.Now()
	srv := benchkit.Start(bin, filepath.Join(dir, "server.log"), args...)
	waitHealth(base, fmt.Sprintf("packages=%d ", n), 20*time.Minute)
	r.published = time.Since(t0)
	// An old build checks every package before it counts it: the row says
	// when it gave up waiting.
	r.seeded = fmt.Sprintf("not within %v", *seedWait)
	if tryHealth(base, fmt.Sprintf("seeding=%d/%d ", n, n), *seedWait) {
		r.seeded = time.Since(t0).Round(time.Millisecond).String()
	}
	// Sampled the moment /healthz counts every package seeded, the figure
	// caught the server before or after it handed its start's garbage back
	// (one build gave 204 and 284 MB in two runs, another 241 and 326).
	time.Sleep(startSettle)
	r.rssStart = benchkit.ProcStatus(srv.Process.Pid, "VmRSS")
	r.indexSize = indexSize(base)

	run := filepath.Join(dir, "run")
	host := benchkit.Start(bin, filepath.Join(dir, "client.log"), "client", "--server", base, "--trusted-key", pubPath,
		"--state-dir", filepath.Join(dir, "state"), "--cache-dir", filepath.Join(dir, "cache"), "--run-dir", run,
		"--prefix", filepath.Join(dir, "root"), "--torrent-listen", "127.0.0.1:0", "--log-level", "warn", "--web-seed=false", "--stall-timeout", "60s")
	defer benchkit.Stop(host)
	waitStatus(run, func(st wire.Status) bool { return st.IndexPackages >= n })
	r.fresh = timeInstalls(run, repoName(n/2), repoName(n/3), repoName(n/5))
	var names []string
	for i := range *served {
		names = append(names, repoName(1000+i))
	}
	t1 := time.Now()
	if err := benchkit.Call(run, "install", names, nil, nil); err != nil {
		r.servedTook = "failed: " + err.Error()
	} else {
		r.servedTook = time.Since(t1).Round(time.Millisecond).String()
	}
	r.rssServed = benchkit.ProcStatus(srv.Process.Pid, "VmRSS")

	r.floodSent, r.floodPeak, r.floodLive, r.floodInstall = floodRun(base, srv.Process.Pid, run, n)

	// Three rescans, each finding one more new file, right after the
	// flood (one alone ranged from 0.7 to 0.85 s from run to run).
	var rescans []time.Duration
	var made []string
	for k := range 3 {
		changed, err := repotest.MakeErr(work, pkgs, repotest.Package{Name: fmt.Sprintf("bench-changed-%d-%s", k, filepath.Base(b.dir)), Version: "1.0", PayloadBytes: *payload, Seed: uint64(7 + k)})
		benchkit.Check(err)
		made = append(made, changed)
		t2 := time.Now()
		benchkit.Check(srv.Process.Signal(syscall.SIGHUP))
		waitHealth(base, fmt.Sprintf("packages=%d ", n+1+k), 10*time.Minute)
		rescans = append(rescans, time.Since(t2))
	}
	r.rescan = benchkit.Median(rescans)
	for _, f := range made {
		benchkit.Check(os.Remove(f))
	}

	benchkit.Stop(srv)
	t3 := time.Now()
	srv = benchkit.Start(bin, filepath.Join(dir, "server-restart.log"), args...)
	defer benchkit.Stop(srv)
	waitHealth(base, "packages=", 10*time.Minute)
	r.restarted = time.Since(t3)
	return r
}

// waitHealth waits until /healthz answers with want in its line.
func waitHealth(base, want string, limit time.Duration) {
	if !tryHealth(base, want, limit) {
		benchkit.Fail("%s/healthz did not say %q within %v (last: %q)", base, want, limit, health(base))
	}
}

// tryHealth waits at most limit for /healthz to answer with want.
func tryHealth(base, want string, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if line := health(base); strings.Contains(line, want) {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func health(base string) string {
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return string(b)
}

// healthFigure is the number after key= in the /healthz line (-1: none).
func healthFigure(line, key string) int {
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			n, err := strconv.Atoi(v)
			if err == nil {
				return n
			}
		}
	}
	return -1
}

// floodRun floods the repository at base for -flood (see floodWith), and
// meanwhile installs three packages nobody asked for on the host at run
// and samples the server's VmRSS and live torrents. It returns what was
// sent, the peak VmRSS, the most live torrents and the installs' median.
func floodRun(base string, pid int, run string, n int) (sent, peak, live, install string) {
	hashes, seeder := repoTargets(base)
	ctx, cancel := context.WithTimeout(context.Background(), *floodFor)
	defer cancel()
	var handshakes, announces atomic.Int64
	var wg sync.WaitGroup
	floodWith(ctx, &wg, base, seeder, hashes, &handshakes, &announces)
	peakKB, mostLive := 0, -1
	sample := func() {
		peakKB = max(peakKB, rssKB(pid))
		mostLive = max(mostLive, healthFigure(health(base), "live"))
	}
	sample()
	install = timeInstalls(run, repoName(n/7), repoName(n/11), repoName(n/13))
	for ctx.Err() == nil {
		sample()
		time.Sleep(time.Second)
	}
	wg.Wait()
	sent = fmt.Sprintf("%d handshakes, %d announces", handshakes.Load(), announces.Load())
	liveFig := strconv.Itoa(mostLive)
	if mostLive < 0 {
		liveFig = "not reported (no dormancy)"
	}
	return sent, fmt.Sprintf("%d kB", peakKB), liveFig, install
}

func rssKB(pid int) int {
	f := strings.Fields(benchkit.ProcStatus(pid, "VmRSS"))
	if len(f) == 0 {
		return 0
	}
	kb, _ := strconv.Atoi(f[0])
	return kb
}

// repoTargets reads the infohashes of base's index and the seeder's
// address, as the tracker names it.
func repoTargets(base string) ([][20]byte, string) {
	resp, err := http.Get(base + "/index.json")
	benchkit.Check(err)
	var doc repo.IndexJSON
	err = json.NewDecoder(resp.Body).Decode(&doc)
	resp.Body.Close()
	benchkit.Check(err)
	var hashes [][20]byte
	for _, p := range doc.Packages {
		var ih [20]byte
		if b, err := hex.DecodeString(p.InfoHash); err == nil && len(b) == 20 {
			copy(ih[:], b)
			hashes = append(hashes, ih)
		}
	}
	res, err := tracker.Announce{TrackerUrl: base + "/announce", Request: tracker.AnnounceRequest{
		InfoHash: hashes[0], PeerId: [20]byte{'b', 'e', 'n', 'c', 'h'}, Left: 0, NumWant: 10, Port: 1, Event: tracker.Stopped}}.Do()
	benchkit.Check(err)
	for _, p := range res.Peers {
		return hashes, net.JoinHostPort(p.IP.String(), strconv.Itoa(p.Port))
	}
	benchkit.Fail("the tracker named no seeder")
	return nil, ""
}

// floodWith starts the flooders: 8 that open connections to the seeder
// and send a plain handshake for one infohash after another, and 4 that
// announce as leechers for one after another, each from its own address
// of 127.0.0.0/8; they stop when ctx ends.
func floodWith(ctx context.Context, wg *sync.WaitGroup, base, seeder string, hashes [][20]byte, handshakes, announces *atomic.Int64) {
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+w))}, Timeout: 2 * time.Second}
			for i := w; ctx.Err() == nil; i = (i + 8) % len(hashes) {
				c, err := d.DialContext(ctx, "tcp", seeder)
				if err != nil {
					continue
				}
				msg := append([]byte("\x13BitTorrent protocol"), make([]byte, 8)...)
				msg = append(msg, hashes[i][:]...)
				msg = append(msg, []byte("-FL0000-flooderpeer0")...)
				c.SetDeadline(time.Now().Add(time.Second))
				c.Write(msg)
				c.Read(make([]byte, 68))
				c.Close()
				handshakes.Add(1)
			}
		}()
	}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(10+w))}}
			client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
			for i := w; ctx.Err() == nil; i = (i + 4) % len(hashes) {
				u := fmt.Sprintf("%s/announce?info_hash=%s&peer_id=-FL0000-flooder%05d&port=%d&uploaded=0&downloaded=0&left=%d&compact=1&numwant=0",
					base, url.QueryEscape(string(hashes[i][:])), w, 20000+w, *payload)
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
				if resp, err := client.Do(req); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					announces.Add(1)
				}
			}
		}()
	}
}

// indexSize is the length of the published /index.db.
func indexSize(base string) string {
	resp, err := http.Head(base + "/index.db")
	if err != nil {
		return "failed: " + err.Error()
	}
	resp.Body.Close()
	return fmt.Sprintf("%.1f MB", float64(resp.ContentLength)/1e6)
}
