// Command client benchmarks tpmd client on loopback and prints a table:
//
//   - the latency of "info" through the FIFOs (request line to final reply,
//     as tpm info does it), median and p99, over -n requests;
//   - the time from an install request to installed for a small package
//     (through the swarm from the server), against curl of the same file
//     from the repository plus tar -xzf, medians of -installs runs;
//   - the daemon's anonymous RSS and CPU while idle, seeding -seed-n
//     installed packages.
//
// Everything happens under one temporary directory, removed at the end; the
// daemons listen on 127.0.0.1 only. Usage: go run ./test/bench/client [flags]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
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
	"tpm/repo/repotest"
	"tpm/signing"
	"tpm/tarball"
)

var (
	nInfo    = flag.Int("n", 2000, "info requests for the latency figure")
	installs = flag.Int("installs", 15, "installs (and curl+tar runs) for the install figure")
	seedN    = flag.Int("seed-n", 1000, "installed packages seeded for the memory and CPU figure")
	seedSize = flag.Int("seed-size", 4<<10, "payload bytes of each seeded package")
	idleFor  = flag.Duration("idle", 20*time.Second, "how long idle CPU is measured")
	settle   = flag.Duration("settle", 90*time.Second, "wait after the installs before measuring (the dials queued during the installs drain)")
	many     = flag.Int("many", 10000, "files of the many-file package installed through tpmd and with tpm --offline (0: skip)")
	manyRuns = flag.Int("many-runs", 3, "installs of the many-file package, each way")
)

func main() {
	flag.Parse()
	work, err := os.MkdirTemp("", "tpm-bench-client-")
	check(err)
	defer os.RemoveAll(work)
	bin := filepath.Join(work, "tpmd")
	out, err := exec.Command("go", "build", "-o", bin, "tpm/cmd/tpmd").CombinedOutput()
	if err != nil {
		fail("building tpmd: %v\n%s", err, out)
	}

	pkgs := filepath.Join(work, "packages")
	check(os.MkdirAll(pkgs, 0o755))
	here, _ := os.Getwd()
	for _, e := range []string{"greet-data", "libgreet", "hello"} {
		_, _, err := tarball.PackFile(filepath.Join(here, "examples", e), pkgs, tarball.PackOptions{})
		check(err)
	}
	var names []string
	for i := range *seedN {
		name := fmt.Sprintf("seed%04d", i)
		_, err := repotest.MakeErr(work, pkgs, repotest.Package{Name: name, Version: "1.0", PayloadBytes: *seedSize, Seed: uint64(i)})
		check(err)
		names = append(names, name)
	}
	var manyFile string
	if *many > 0 {
		manyFile, err = repotest.MakeErr(work, pkgs, repotest.Package{Name: "many", Version: "1.0", SmallFiles: *many, Seed: 7})
		check(err)
	}
	keyPath, pubPath, err := signing.Keygen(filepath.Join(work, "keys"), false)
	check(err)

	addr := freeAddr()
	url := "http://" + addr
	srv := start(bin, filepath.Join(work, "server.log"), "server", "--packages", pkgs, "--state-dir", filepath.Join(work, "server"),
		"--key", keyPath, "--http", addr, "--public-url", url, "--torrent-listen", "127.0.0.1:0", "--log-level", "warn")
	defer stop(srv)
	waitHTTP(url + "/index.db.sig")

	run := filepath.Join(work, "run")
	prefix := filepath.Join(work, "root")
	cl := start(bin, filepath.Join(work, "client.log"), "client", "--server", url, "--trusted-key", pubPath,
		"--state-dir", filepath.Join(work, "state"), "--cache-dir", filepath.Join(work, "cache"), "--run-dir", run,
		"--prefix", prefix, "--torrent-listen", "127.0.0.1:0", "--log-level", "warn")
	defer stop(cl)
	for {
		var st wire.Status
		if call(run, "status", nil, nil, &st) == nil && st.IndexPackages >= 3+*seedN+min(*many, 1) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}

	fmt.Println("| measurement | tpm | other | ratio (tpm/other) |")
	fmt.Println("|---|---|---|---|")

	// info latency.
	var lat []time.Duration
	for range *nInfo {
		t0 := time.Now()
		check(call(run, "info", []string{"hello"}, nil, nil))
		lat = append(lat, time.Since(t0))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	fmt.Printf("| tpm info through the FIFOs, median (%d requests) | %s | | |\n", *nInfo, ms(lat[len(lat)/2]))
	fmt.Printf("| tpm info through the FIFOs, p99 | %s | | |\n", ms(lat[len(lat)*99/100]))

	// Install of a small package vs curl + tar.
	var tpmT, curlT []time.Duration
	var file string
	for range *installs {
		t0 := time.Now()
		check(call(run, "install", []string{"greet-data"}, nil, nil))
		tpmT = append(tpmT, time.Since(t0))
		check(call(run, "remove", []string{"greet-data"}, nil, nil))
	}
	var info wire.PackageInfo
	check(call(run, "info", []string{"greet-data"}, nil, &info))
	file = info.File
	for i := range *installs {
		dir := filepath.Join(work, fmt.Sprintf("curl%d", i))
		check(os.MkdirAll(dir, 0o755))
		t0 := time.Now()
		sh := fmt.Sprintf("curl -sf -o %s/p.tpkg %s/packages/%s && tar -xzf %s/p.tpkg -C %s", dir, url, file, dir, dir)
		if out, err := exec.Command("sh", "-c", sh).CombinedOutput(); err != nil {
			fail("curl+tar: %v %s", err, out)
		}
		curlT = append(curlT, time.Since(t0))
	}
	mt, mc := median(tpmT), median(curlT)
	fmt.Printf("| install of a small package (%s), request to installed, median of %d | %s | %s (curl + tar -xzf) | %.1f |\n",
		file, *installs, ms(mt), ms(mc), float64(mt)/float64(mc))

	// The daemon path for a package of many small files: request to
	// installed (download from the repository on loopback included) against
	// the offline engine on the same file. Both sync what they write.
	if *many > 0 {
		tpmBin := filepath.Join(work, "tpm")
		if out, err := exec.Command("go", "build", "-o", tpmBin, "tpm/cmd/tpm").CombinedOutput(); err != nil {
			fail("building tpm: %v\n%s", err, out)
		}
		var daemonT, offlineT []time.Duration
		for i := range *manyRuns {
			t0 := time.Now()
			check(call(run, "install", []string{"many"}, nil, nil))
			daemonT = append(daemonT, time.Since(t0))
			check(call(run, "remove", []string{"many"}, nil, nil))
			dir := filepath.Join(work, fmt.Sprintf("offline%d", i))
			t0 = time.Now()
			out, err := exec.Command(tpmBin, "--offline", "--state-dir", filepath.Join(dir, "state"), "--prefix", filepath.Join(dir, "root"), "-y", "install", manyFile).CombinedOutput()
			if err != nil {
				fail("tpm --offline install: %v\n%s", err, out)
			}
			offlineT = append(offlineT, time.Since(t0))
		}
		md, mo := median(daemonT), median(offlineT)
		fmt.Printf("| install of %d small files through tpmd, request to installed, median of %d | %s | %s (tpm --offline install) | %.2f |\n",
			*many, *manyRuns, ms(md), ms(mo), float64(md)/float64(mo))
	}

	// Seeding many installed packages.
	t0 := time.Now()
	for i := 0; i < len(names); i += 250 {
		check(call(run, "install", names[i:min(i+250, len(names))], nil, nil))
	}
	fmt.Printf("| install of %d packages of %d bytes (4 requests of 250) | %s | | |\n", *seedN, *seedSize, time.Since(t0).Round(time.Millisecond))
	for {
		var st wire.Status
		check(call(run, "status", nil, nil, &st))
		if st.Seeding >= *seedN {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Let the last announces, piece checks and the connections the
	// swarm's seeds open to each other (and drop: seeds need nothing from
	// seeds) settle: the figure is the steady state.
	time.Sleep(*settle)
	pid := cl.Process.Pid
	c0 := cpuTicks(pid)
	time.Sleep(*idleFor)
	c1 := cpuTicks(pid)
	rss := procStatus(pid, "RssAnon")
	if rss == "?" {
		b, _ := os.ReadFile(filepath.Join(work, "client.log"))
		fail("tpmd client is gone; its log:\n%s", b)
	}
	fmt.Printf("| tpmd client RssAnon, seeding %d installed packages | %s | | |\n", *seedN, rss)
	fmt.Printf("| tpmd client idle CPU over %v, seeding %d | %.2f%% | | |\n", *idleFor, *seedN,
		float64(c1-c0)/100/idleFor.Seconds()*100)
}

// call sends one request as tpm does (local.Client) and decodes the
// result into data.
func call(run, verb string, args []string, mod func(*wire.Request), data any) error {
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

func start(bin, logPath string, args ...string) *exec.Cmd {
	logf, err := os.Create(logPath)
	check(err)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	check(cmd.Start())
	return cmd
}

func stop(cmd *exec.Cmd) {
	cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
	}
}

func waitHTTP(url string) {
	for range 600 {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	fail("%s never answered", url)
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	defer ln.Close()
	return ln.Addr().String()
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

// cpuTicks is utime+stime of pid in clock ticks (100 a second on Linux).
func cpuTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	check(err)
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

func procStatus(pid int, key string) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	check(err)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func check(err error) {
	if err != nil {
		fail("%v", err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench client: "+format+"\n", args...)
	os.Exit(1)
}
