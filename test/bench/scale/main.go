// Command scale measures what tpm costs as the number of packages grows,
// and writes its table to test/bench/results/scale.md (issue 27's figures):
//
//   - a host installing -host-n small packages through tpmd client, in
//     requests of -request, beside dpkg -i of the same files as .deb
//     packages (dpkg-deb --build, installed under a scratch --root in
//     calls of the same size);
//   - that host's VmRSS and idle CPU once it seeds them all, and another
//     host (no web seed, the repository not seeding) installing three of
//     them from it;
//   - a repository of -repo-n packages (repo.go);
//   - a host following an index of -index-n packages (index.go).
//
// With -baseline REV, every tpm row is measured for the tpmd built from
// that git revision too, in the same run (a "before" row). Everything
// happens under one temporary directory, removed at the end; the daemons
// listen on 127.0.0.1 only. Usage: go run ./test/bench/scale [flags]
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"tpm/messages/wire"
	"tpm/repo/repotest"
	"tpm/signing"
	"tpm/test/bench/benchkit"
)

var (
	hostN    = flag.Int("host-n", 3000, "packages a host installs")
	request  = flag.Int("request", 500, "packages per install request (and per dpkg -i call)")
	payload  = flag.Int("payload", 2048, "payload bytes of each package")
	baseline = flag.String("baseline", "", "git revision measured beside the working tree (e.g. main before a change)")
	settle   = flag.Duration("settle", 60*time.Second, "quiet before idle CPU is measured")
	idle     = flag.Duration("idle", 60*time.Second, "how long idle CPU is measured")
	out      = flag.String("out", "test/bench/results/scale.md", "where the table goes (\"\": stdout only)")
)

func main() {
	flag.Parse()
	work, err := os.MkdirTemp("", "tpm-bench-scale-")
	benchkit.Check(err)
	defer os.RemoveAll(work)

	builds := []build{{name: "this tree", dir: filepath.Join(work, "bin-head")}}
	if *baseline != "" {
		builds = append([]build{{name: *baseline, rev: *baseline, dir: filepath.Join(work, "bin-base")}}, builds...)
	}
	for _, b := range builds {
		benchkit.Build(b.dir, b.rev)
	}
	var rows []string
	add := func(what, who, figure string) {
		row := fmt.Sprintf("| %s | %s | %s |", what, who, figure)
		fmt.Println(row)
		rows = append(rows, row)
	}
	fmt.Println("| measurement | build | figure |\n|---|---|---|")
	if *hostN > 0 {
		hostRows(work, builds, add)
	}
	repoRun(work, builds, add)
	indexRun(work, builds, add)
	if *out != "" {
		writeTable(rows)
	}
}

// hostRows measures a host installing -host-n packages, with each build
// and with dpkg.
func hostRows(work string, builds []build, add func(what, who, figure string)) {
	pkgs := filepath.Join(work, "packages")
	names := makePackages(work, pkgs, *hostN)
	for _, b := range builds {
		r := hostRun(work, b, pkgs, names)
		what := fmt.Sprintf("install %d packages of %d B through tpmd (%d requests of %d)", *hostN, *payload, (*hostN+*request-1) / *request, *request)
		add(what, b.name, r.install.Round(time.Millisecond).String())
		add(fmt.Sprintf("tpmd client VmRSS, seeding %d installed", *hostN), b.name, r.rss)
		add(fmt.Sprintf("tpmd client idle CPU over %v after %v quiet, seeding %d", *idle, *settle, *hostN), b.name, fmt.Sprintf("%.2f %% of a core", r.idleCPU))
		add("another host (--web-seed=false, the repository restarted with --seed=false) installs one of them from that host (median of 3)", b.name, r.fromPeer)
	}
	if d, ok := dpkgRun(work, pkgs, names); ok {
		add(fmt.Sprintf("dpkg -i of the same %d as .deb (%d calls of %d)", *hostN, (*hostN+*request-1) / *request, *request), "dpkg", d.Round(time.Millisecond).String())
	}
}

// build is one tpmd under test.
type build struct{ name, rev, dir string }

// makePackages packs n packages of the payload size into dir.
func makePackages(work, dir string, n int) []string {
	benchkit.Check(os.MkdirAll(dir, 0o755))
	var names []string
	for i := range n {
		name := fmt.Sprintf("pkg%05d", i)
		_, err := repotest.MakeErr(work, dir, repotest.Package{Name: name, Version: "1.0", PayloadBytes: *payload, Seed: uint64(i)})
		benchkit.Check(err)
		names = append(names, name)
	}
	return names
}

// hostResult is what one host run measured.
type hostResult struct {
	install  time.Duration
	rss      string
	idleCPU  float64 // percent of a core
	fromPeer string
}

// hostRun starts a repository and a fresh host of build b, installs names
// through the host in requests, and measures it once it seeds them all.
func hostRun(work string, b build, pkgs string, names []string) hostResult {
	dir := filepath.Join(work, "run-"+filepath.Base(b.dir))
	bin := filepath.Join(b.dir, "tpmd")
	keyPath, pubPath, err := signing.Keygen(filepath.Join(dir, "keys"), false)
	benchkit.Check(err)
	addr := benchkit.FreeAddr()
	url := "http://" + addr
	serverArgs := []string{"server", "--packages", pkgs, "--state-dir", filepath.Join(dir, "server"),
		"--key", keyPath, "--http", addr, "--public-url", url, "--torrent-listen", "127.0.0.1:0", "--log-level", "warn"}
	srv := benchkit.Start(bin, filepath.Join(dir, "server.log"), serverArgs...)
	defer func() { benchkit.Stop(srv) }()
	benchkit.WaitHTTP(url + "/index.db.sig")
	benchkit.WaitSeeding(url, len(names))
	run := filepath.Join(dir, "run")
	host := benchkit.Start(bin, filepath.Join(dir, "client.log"), "client", "--server", url, "--trusted-key", pubPath,
		"--state-dir", filepath.Join(dir, "state"), "--cache-dir", filepath.Join(dir, "cache"), "--run-dir", run,
		"--prefix", filepath.Join(dir, "root"), "--torrent-listen", "127.0.0.1:0", "--log-level", "warn")
	defer benchkit.Stop(host)
	waitStatus(run, func(st wire.Status) bool { return st.IndexPackages >= len(names) })

	var r hostResult
	t0 := time.Now()
	for i := 0; i < len(names); i += *request {
		benchkit.Check(benchkit.Call(run, "install", names[i:min(i+*request, len(names))], nil, nil))
	}
	r.install = time.Since(t0)
	waitStatus(run, func(st wire.Status) bool { return st.Seeding >= len(names) })
	time.Sleep(*settle)
	pid := host.Process.Pid
	c0 := benchkit.CPUTicks(pid)
	time.Sleep(*idle)
	r.idleCPU = float64(benchkit.CPUTicks(pid)-c0) / 100 / idle.Seconds() * 100
	r.rss = benchkit.ProcStatus(pid, "VmRSS")

	// The same repository, not seeding: another host without web seed
	// has only the first host to get a package from.
	benchkit.Stop(srv)
	srv = benchkit.Start(bin, filepath.Join(dir, "server-noseed.log"), append(serverArgs, "--seed=false")...)
	benchkit.WaitHTTP(url + "/index.db.sig")
	run2 := filepath.Join(dir, "run2")
	other := benchkit.Start(bin, filepath.Join(dir, "client2.log"), "client", "--server", url, "--trusted-key", pubPath,
		"--state-dir", filepath.Join(dir, "state2"), "--cache-dir", filepath.Join(dir, "cache2"), "--run-dir", run2,
		"--prefix", filepath.Join(dir, "root2"), "--torrent-listen", "127.0.0.1:0", "--log-level", "warn", "--web-seed=false", "--stall-timeout", "60s")
	defer benchkit.Stop(other)
	waitStatus(run2, func(st wire.Status) bool { return st.IndexPackages >= len(names) })
	r.fromPeer = timeInstalls(run2, names[len(names)/2], names[len(names)/3], names[len(names)/5])
	return r
}

// timeInstalls installs each package in its own request and returns the
// median time, or what failed: a build that cannot do it gets a row that
// says so, not a run cut short.
func timeInstalls(run string, names ...string) string {
	var took []time.Duration
	for _, n := range names {
		t := time.Now()
		if err := benchkit.Call(run, "install", []string{n}, nil, nil); err != nil {
			return "failed: " + err.Error()
		}
		took = append(took, time.Since(t))
	}
	return benchkit.Median(took).Round(time.Millisecond).String()
}

func waitStatus(run string, ok func(wire.Status) bool) {
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		var st wire.Status
		if benchkit.Call(run, "status", nil, nil, &st) == nil && ok(st) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	benchkit.Fail("tpmd client did not reach the state waited for within 10 minutes")
}

// dpkgRun builds a .deb of each package's data (as tpm installs it) and
// times dpkg -i of them under a scratch root, in calls of -request.
func dpkgRun(work, pkgs string, names []string) (time.Duration, bool) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		fmt.Fprintln(os.Stderr, "bench: no dpkg-deb; the dpkg row is left out")
		return 0, false
	}
	debs := filepath.Join(work, "debs")
	benchkit.Check(os.MkdirAll(debs, 0o755))
	var files []string
	for _, n := range names {
		files = append(files, makeDeb(work, pkgs, debs, n))
	}
	root := filepath.Join(work, "dpkg-root")
	admin := filepath.Join(root, "var", "lib", "dpkg")
	for _, d := range []string{"info", "updates", "triggers"} {
		benchkit.Check(os.MkdirAll(filepath.Join(admin, d), 0o755))
	}
	benchkit.Check(os.WriteFile(filepath.Join(admin, "status"), nil, 0o644))
	t0 := time.Now()
	for i := 0; i < len(files); i += *request {
		args := append([]string{"--root=" + root, "--force-not-root", "--force-script-chrootless", "-i"}, files[i:min(i+*request, len(files))]...)
		if out, err := exec.Command("dpkg", args...).CombinedOutput(); err != nil {
			benchkit.Fail("dpkg -i: %v\n%s", err, out)
		}
	}
	return time.Since(t0), true
}

// makeDeb unpacks a package's data/ and builds the equivalent .deb.
func makeDeb(work, pkgs, debs, name string) string {
	dir := filepath.Join(work, "deb-src", name)
	benchkit.Check(os.MkdirAll(filepath.Join(dir, "DEBIAN"), 0o755))
	matches, _ := filepath.Glob(filepath.Join(pkgs, name+"-1.0-*.tpkg"))
	if len(matches) != 1 {
		benchkit.Fail("package file of %s: %v", name, matches)
	}
	if out, err := exec.Command("tar", "-xzf", matches[0], "-C", dir, "--strip-components=1", "data").CombinedOutput(); err != nil {
		benchkit.Fail("unpack %s: %v\n%s", name, err, out)
	}
	control := fmt.Sprintf("Package: %s\nVersion: 1.0\nArchitecture: all\nMaintainer: bench <bench@localhost>\nDescription: benchmark package\n", name)
	benchkit.Check(os.WriteFile(filepath.Join(dir, "DEBIAN", "control"), []byte(control), 0o644))
	deb := filepath.Join(debs, name+".deb")
	if out, err := exec.Command("dpkg-deb", "--build", "-Zgzip", dir, deb).CombinedOutput(); err != nil {
		benchkit.Fail("dpkg-deb --build %s: %v\n%s", name, err, out)
	}
	return deb
}

// writeTable writes the rows, with how they were made, to -out.
func writeTable(rows []string) {
	host, _ := os.Hostname()
	head := fmt.Sprintf("# Scale\n\n`go run ./test/bench/scale %s` on %s, %s (%d packages of %d bytes, requests of %d).\n\n| measurement | build | figure |\n|---|---|---|\n",
		strings.Join(os.Args[1:], " "), host, time.Now().UTC().Format(time.DateTime), *hostN, *payload, *request)
	benchkit.Check(os.WriteFile(*out, []byte(head+strings.Join(rows, "\n")+"\n"), 0o644))
}
