// Command flood measures tpmd client under a flood of requests from one
// local user: the daemon's peak RSS and CPU seconds, and the latency of
// another user's tpm info (as uid 65534) before and during the flood.
//
// It runs given tpm and tpmd binaries, so a release before the spool
// protocol can be measured too: -old floods as a user could then, with
// request lines naming a reply FIFO that does not exist (the daemon ran
// every one). Without -old it floods as a user can now: requests whose
// reply FIFO nobody reads ("nowhere"), and requests whose reply FIFOs the
// flooder holds open and never reads ("held").
//
// Needs root (to run the other user's tpm). Everything is under one
// temporary directory, removed at the end; the daemons listen on loopback.
// Usage: go run ./test/bench/flood -tpm bin/tpm -tpmd bin/tpmd [-old]
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"tpm/test/bench/benchkit"

	"golang.org/x/sys/unix"
)

var (
	tpmBin  = flag.String("tpm", "bin/tpm", "the tpm binary")
	tpmdBin = flag.String("tpmd", "bin/tpmd", "the tpmd binary")
	old     = flag.Bool("old", false, "flood with protocol 2 lines (a release before the spool)")
	n       = flag.Int("n", 1000, "requests per flood")
	files   = flag.Int("files", 20000, "files of the installed package the flood asks about")
)

func main() {
	flag.Parse()
	if os.Geteuid() != 0 {
		fail("run as root: the other user's tpm runs as uid 65534")
	}
	work, err := os.MkdirTemp("", "tpm-bench-flood-")
	check(err)
	defer os.RemoveAll(work)
	check(os.Chmod(work, 0o755))
	tpm, tpmd := abs(*tpmBin), abs(*tpmdBin)

	// A repository with a package whose receipt is long.
	src := filepath.Join(work, "big")
	check(os.MkdirAll(filepath.Join(src, "info"), 0o755))
	check(os.WriteFile(filepath.Join(src, "info", "package.json"), []byte(`{"Name":"big","Version":"1.0","Architecture":"any","Type":"Binary"}`), 0o644))
	for i := range *files {
		d := filepath.Join(src, "data", "usr", "share", "big", fmt.Sprintf("%03d", i/100))
		check(os.MkdirAll(d, 0o755))
		check(os.WriteFile(filepath.Join(d, fmt.Sprintf("file-with-a-name-of-some-length-%05d", i)), []byte{byte(i)}, 0o644))
	}
	repo := filepath.Join(work, "repo")
	run(tpm, "pack", src, "-o", repo)
	run(tpm, "keygen", "-o", filepath.Join(work, "keys"))
	port := freePort()
	url := "http://127.0.0.1:" + port
	server := benchkit.Start(tpmd, os.DevNull, "server", "--packages", repo, "--state-dir", filepath.Join(work, "srv"), "--http", "127.0.0.1:"+port,
		"--public-url", url, "--torrent-listen", "127.0.0.1:0", "--key", filepath.Join(work, "keys", "repo.key"))
	defer benchkit.Stop(server)
	runDir := filepath.Join(work, "run")
	check(os.Mkdir(runDir, 0o755))
	client := benchkit.Start(tpmd, os.DevNull, "client", "--server", url, "--trusted-key", filepath.Join(work, "keys", "repo.pub"),
		"--state-dir", filepath.Join(work, "state"), "--cache-dir", filepath.Join(work, "cache"), "--run-dir", runDir,
		"--prefix", filepath.Join(work, "root"), "--torrent-listen", "127.0.0.1:0")
	defer benchkit.Stop(client)
	deadline := time.Now().Add(60 * time.Second)
	for exec.Command(tpm, "--run-dir", runDir, "info", "big").Run() != nil {
		if time.Now().After(deadline) {
			fail("the daemon did not answer within 60 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	run(tpm, "--run-dir", runDir, "install", "-y", "big")
	pid := client.Process.Pid

	mode := "new"
	if *old {
		mode = "old"
	}
	fmt.Printf("# tpmd client under a flood of %d requests from one user (%s protocol), package of %d files installed\n\n", *n, mode, *files)
	fmt.Println("| flood | another user's tpm info, median / max | daemon CPU during the flood | daemon peak RSS |")
	fmt.Println("|---|---:|---:|---:|")
	resetPeak(pid) // the install's peak is not the flood's
	fmt.Printf("| none | %s | | %d MB |\n", infoLatency(tpm, runDir, 20), peakRSS(pid)>>20)
	floods := []string{"list-nowhere", "verify-nowhere", "list-held", "verify-held"}
	if *old {
		floods = []string{"list-old", "verify-old"}
	}
	for _, f := range floods {
		verb, how, _ := strings.Cut(f, "-")
		resetPeak(pid)
		cpu0 := cpuSeconds(pid)
		release := flood(runDir, verb, how)
		info := infoLatency(tpm, runDir, 20)
		waitIdle(pid)
		release()
		fmt.Printf("| %d %s, %s | %s | %.1f s | %d MB |\n", *n, verb, how, info, cpuSeconds(pid)-cpu0, peakRSS(pid)>>20)
	}
}

// flood sends n requests of verb; the returned func lets go of what it holds.
func flood(runDir, verb, how string) func() {
	queryFIFO := filepath.Join(runDir, "query.fifo")
	var lines strings.Builder
	var held []*os.File
	for i := range *n {
		if how == "old" {
			fmt.Fprintf(&lines, `{"v":2,"id":"f%d","verb":"%s","reply":"/nonexistent/%d.fifo"}`+"\n", i, verb, i)
			continue
		}
		token := fmt.Sprintf("tpm-%032x", time.Now().UnixNano()+int64(i))
		dir := filepath.Join(runDir, "spool", token)
		check(os.Mkdir(dir, 0o700))
		check(os.WriteFile(filepath.Join(dir, "request.json"), []byte(`{"v":3,"verb":"`+verb+`"}`), 0o600))
		reply := filepath.Join(dir, "reply.fifo")
		check(unix.Mkfifo(reply, 0o600))
		if how == "held" {
			f, err := os.OpenFile(reply, os.O_RDWR, 0)
			check(err)
			unix.FcntlInt(f.Fd(), unix.F_SETPIPE_SZ, 4096)
			held = append(held, f)
		}
		lines.WriteString(token + "\n")
	}
	f, err := os.OpenFile(queryFIFO, os.O_WRONLY, 0)
	check(err)
	if how == "old" {
		// The old daemon kept lines whole with a lockfile; one writer needs none.
		lock, err := os.Open(filepath.Join(runDir, "query.lock"))
		check(err)
		check(unix.Flock(int(lock.Fd()), unix.LOCK_EX))
		defer lock.Close()
	}
	_, err = f.WriteString(lines.String())
	check(err)
	f.Close()
	return func() {
		for _, f := range held {
			f.Close()
		}
	}
}

// infoLatency runs tpm info as uid 65534, k times in a row; those that
// fail count as failed, with the first failure's message.
func infoLatency(tpm, runDir string, k int) string {
	var ms []float64
	failed, why := 0, ""
	for range k {
		cmd := exec.Command(tpm, "--run-dir", runDir, "info", "big")
		cmd.Env = []string{"PATH=/usr/bin:/bin", "TMPDIR=/tmp"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		t0 := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			if failed++; why == "" {
				why = strings.TrimSpace(string(out))
			}
			continue
		}
		ms = append(ms, float64(time.Since(t0).Microseconds())/1000)
	}
	sort.Float64s(ms)
	res := "all failed"
	if len(ms) > 0 {
		res = fmt.Sprintf("%.1f / %.1f ms", ms[len(ms)/2], ms[len(ms)-1])
	}
	if failed > 0 {
		res += fmt.Sprintf("; %d of %d failed (%q)", failed, k, why)
	}
	return res
}

// waitIdle waits until the daemon used under 2 % of a CPU for a second.
func waitIdle(pid int) {
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		c0 := cpuSeconds(pid)
		time.Sleep(time.Second)
		if cpuSeconds(pid)-c0 < 0.02 {
			return
		}
	}
}

func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	check(err)
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// resetPeak starts the process's peak RSS (VmHWM) again from its RSS now.
func resetPeak(pid int) {
	check(os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0))
}

func peakRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	check(err)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func run(bin string, args ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput(); err != nil {
		fail("%s %s: %v\n%s", bin, strings.Join(args, " "), err, out)
	}
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

func abs(p string) string {
	a, err := filepath.Abs(p)
	check(err)
	return a
}

func check(err error) {
	if err != nil {
		fail("%v", err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "flood: "+format+"\n", args...)
	os.Exit(1)
}
