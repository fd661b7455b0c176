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
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"time"

	"tpm/messages/wire"
	"tpm/repo/repotest"
	"tpm/signing"
	"tpm/tarball"
	"tpm/test/bench/benchkit"
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
	benchkit.Check(err)
	defer os.RemoveAll(work)
	bin := filepath.Join(work, "tpmd")
	out, err := exec.Command("go", "build", "-o", bin, "tpm/cmd/tpmd").CombinedOutput()
	if err != nil {
		benchkit.Fail("building tpmd: %v\n%s", err, out)
	}

	pkgs := filepath.Join(work, "packages")
	benchkit.Check(os.MkdirAll(pkgs, 0o755))
	here, _ := os.Getwd()
	for _, e := range []string{"greet-data", "libgreet", "hello"} {
		_, _, err := tarball.PackFile(filepath.Join(here, "examples", e), pkgs, tarball.PackOptions{})
		benchkit.Check(err)
	}
	var names []string
	for i := range *seedN {
		name := fmt.Sprintf("seed%04d", i)
		_, err := repotest.MakeErr(work, pkgs, repotest.Package{Name: name, Version: "1.0", PayloadBytes: *seedSize, Seed: uint64(i)})
		benchkit.Check(err)
		names = append(names, name)
	}
	var manyFile string
	if *many > 0 {
		manyFile, err = repotest.MakeErr(work, pkgs, repotest.Package{Name: "many", Version: "1.0", SmallFiles: *many, Seed: 7})
		benchkit.Check(err)
	}
	keyPath, pubPath, err := signing.Keygen(filepath.Join(work, "keys"), false)
	benchkit.Check(err)

	addr := benchkit.FreeAddr()
	url := "http://" + addr
	srv := benchkit.Start(bin, filepath.Join(work, "server.log"), "server", "--packages", pkgs, "--state-dir", filepath.Join(work, "server"),
		"--key", keyPath, "--http", addr, "--public-url", url, "--torrent-listen", "127.0.0.1:0", "--log-level", "warn")
	defer benchkit.Stop(srv)
	benchkit.WaitHTTP(url + "/index.db.sig")

	run := filepath.Join(work, "run")
	prefix := filepath.Join(work, "root")
	cl := benchkit.Start(bin, filepath.Join(work, "client.log"), "client", "--server", url, "--trusted-key", pubPath,
		"--state-dir", filepath.Join(work, "state"), "--cache-dir", filepath.Join(work, "cache"), "--run-dir", run,
		"--prefix", prefix, "--torrent-listen", "127.0.0.1:0", "--log-level", "warn")
	defer benchkit.Stop(cl)
	for {
		var st wire.Status
		if benchkit.Call(run, "status", nil, nil, &st) == nil && st.IndexPackages >= 3+*seedN+min(*many, 1) {
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
		benchkit.Check(benchkit.Call(run, "info", []string{"hello"}, nil, nil))
		lat = append(lat, time.Since(t0))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	fmt.Printf("| tpm info through the FIFOs, median (%d requests) | %s | | |\n", *nInfo, benchkit.MS(lat[len(lat)/2]))
	fmt.Printf("| tpm info through the FIFOs, p99 | %s | | |\n", benchkit.MS(lat[len(lat)*99/100]))

	// Install of a small package vs curl + tar.
	var tpmT, curlT []time.Duration
	var file string
	for range *installs {
		t0 := time.Now()
		benchkit.Check(benchkit.Call(run, "install", []string{"greet-data"}, nil, nil))
		tpmT = append(tpmT, time.Since(t0))
		benchkit.Check(benchkit.Call(run, "remove", []string{"greet-data"}, nil, nil))
	}
	var info wire.PackageInfo
	benchkit.Check(benchkit.Call(run, "info", []string{"greet-data"}, nil, &info))
	file = info.File
	for i := range *installs {
		dir := filepath.Join(work, fmt.Sprintf("curl%d", i))
		benchkit.Check(os.MkdirAll(dir, 0o755))
		t0 := time.Now()
		sh := fmt.Sprintf("curl -sf -o %s/p.tpkg %s/packages/%s && tar -xzf %s/p.tpkg -C %s", dir, url, file, dir, dir)
		if out, err := exec.Command("sh", "-c", sh).CombinedOutput(); err != nil {
			benchkit.Fail("curl+tar: %v %s", err, out)
		}
		curlT = append(curlT, time.Since(t0))
	}
	mt, mc := benchkit.Median(tpmT), benchkit.Median(curlT)
	fmt.Printf("| install of a small package (%s), request to installed, median of %d | %s | %s (curl + tar -xzf) | %.1f |\n",
		file, *installs, benchkit.MS(mt), benchkit.MS(mc), float64(mt)/float64(mc))

	// The daemon path for a package of many small files: request to
	// installed (download from the repository on loopback included) against
	// the offline engine on the same file. Both sync what they write.
	if *many > 0 {
		tpmBin := filepath.Join(work, "tpm")
		if out, err := exec.Command("go", "build", "-o", tpmBin, "tpm/cmd/tpm").CombinedOutput(); err != nil {
			benchkit.Fail("building tpm: %v\n%s", err, out)
		}
		var daemonT, offlineT []time.Duration
		for i := range *manyRuns {
			t0 := time.Now()
			benchkit.Check(benchkit.Call(run, "install", []string{"many"}, nil, nil))
			daemonT = append(daemonT, time.Since(t0))
			benchkit.Check(benchkit.Call(run, "remove", []string{"many"}, nil, nil))
			dir := filepath.Join(work, fmt.Sprintf("offline%d", i))
			t0 = time.Now()
			out, err := exec.Command(tpmBin, "--offline", "--state-dir", filepath.Join(dir, "state"), "--prefix", filepath.Join(dir, "root"), "-y", "install", manyFile).CombinedOutput()
			if err != nil {
				benchkit.Fail("tpm --offline install: %v\n%s", err, out)
			}
			offlineT = append(offlineT, time.Since(t0))
		}
		md, mo := benchkit.Median(daemonT), benchkit.Median(offlineT)
		fmt.Printf("| install of %d small files through tpmd, request to installed, median of %d | %s | %s (tpm --offline install) | %.2f |\n",
			*many, *manyRuns, benchkit.MS(md), benchkit.MS(mo), float64(md)/float64(mo))
	}

	// Seeding many installed packages.
	t0 := time.Now()
	for i := 0; i < len(names); i += 250 {
		benchkit.Check(benchkit.Call(run, "install", names[i:min(i+250, len(names))], nil, nil))
	}
	fmt.Printf("| install of %d packages of %d bytes (4 requests of 250) | %s | | |\n", *seedN, *seedSize, time.Since(t0).Round(time.Millisecond))
	for {
		var st wire.Status
		benchkit.Check(benchkit.Call(run, "status", nil, nil, &st))
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
	c0 := benchkit.CPUTicks(pid)
	time.Sleep(*idleFor)
	c1 := benchkit.CPUTicks(pid)
	rss := benchkit.ProcStatus(pid, "RssAnon")
	if rss == "?" {
		b, _ := os.ReadFile(filepath.Join(work, "client.log"))
		benchkit.Fail("tpmd client is gone; its log:\n%s", b)
	}
	fmt.Printf("| tpmd client RssAnon, seeding %d installed packages | %s | | |\n", *seedN, rss)
	fmt.Printf("| tpmd client idle CPU over %v, seeding %d | %.2f%% | | |\n", *idleFor, *seedN,
		float64(c1-c0)/100/idleFor.Seconds()*100)
}
