// Command server benchmarks the repository server against the tools people
// would otherwise use, in one run on the same files, and prints a table:
//
//   - a full scan and torrent build of a directory of packages (many small,
//     a few large) against mktorrent (one torrent per package, and one
//     multi-file torrent of the whole directory) and sha256sum;
//   - an incremental rescan of -rescan-n packages with one changed, and
//     with none changed;
//   - tpmd server's memory (RssAnon and VmRSS) while publishing and seeding
//     -rss-n packages.
//
// Everything happens under one temporary directory, removed at the end;
// tpmd listens on 127.0.0.1 only. Usage: go run ./test/bench/server [flags]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"tpm/repo"
	"tpm/repo/repotest"
	"tpm/signing"
	"tpm/store"
)

var (
	smallN    = flag.Int("small", 1000, "small packages in the full-scan directory")
	smallSize = flag.Int("small-size", 100<<10, "payload bytes of a small package")
	largeN    = flag.Int("large", 4, "large packages in the full-scan directory")
	largeSize = flag.Int("large-size", 32<<20, "payload bytes of a large package")
	rescanN   = flag.Int("rescan-n", 10000, "packages for the incremental rescan")
	rssN      = flag.Int("rss-n", 10000, "packages seeded for the memory figure")
	rssSize   = flag.Int("rss-size", 100<<10, "payload bytes of each package seeded for the memory figure")
	skipRSS   = flag.Bool("skip-rss", false, "skip the memory figure")
)

func main() {
	flag.Parse()
	work, err := os.MkdirTemp("", "tpm-bench-server-")
	check(err)
	defer os.RemoveAll(work)

	fmt.Println("| measurement | tpm | other | ratio (tpm/other) |")
	fmt.Println("|---|---|---|---|")

	// Full scan and torrent build.
	full := filepath.Join(work, "full")
	check(os.MkdirAll(full, 0o755))
	var specs []repotest.Package
	for i := range *smallN {
		specs = append(specs, repotest.Package{Name: fmt.Sprintf("s%05d", i), Version: "1", PayloadBytes: *smallSize, Seed: uint64(i)})
	}
	for i := range *largeN {
		specs = append(specs, repotest.Package{Name: fmt.Sprintf("l%02d", i), Version: "1", PayloadBytes: *largeSize, Seed: uint64(1e6 + i)})
	}
	files := makeAll(work, full, specs)
	bytesTotal := dirBytes(files)
	label := fmt.Sprintf("%d small + %d large packages, %.0f MB", *smallN, *largeN, float64(bytesTotal)/1e6)

	tFull := timeScan(work, full, repo.CheckFull)
	tMan := timeScan(work, full, repo.CheckManifest)
	tSha := timeCmd("sh", "-c", "cd "+full+" && sha256sum -- *.tpkg > /dev/null")
	if _, err := exec.LookPath("mktorrent"); err == nil {
		tMkDir := timeCmd("mktorrent", "-l", "18", "-a", "http://127.0.0.1:1/announce", "-o", filepath.Join(work, "dir.torrent"), full)
		perFile := func() {
			for i, f := range files {
				out := filepath.Join(work, "t", strconv.Itoa(i)+".torrent")
				os.MkdirAll(filepath.Dir(out), 0o755)
				run("mktorrent", "-a", "http://127.0.0.1:1/announce", "-o", out, f)
			}
		}
		tMkEach := timeFn(perFile)
		row("full scan, full check vs mktorrent per package + sha256sum ("+label+")", tFull, tMkEach+tSha)
		row("full scan, manifest check vs mktorrent per package + sha256sum", tMan, tMkEach+tSha)
		row("full scan, full check vs mktorrent of the whole directory + sha256sum", tFull, tMkDir+tSha)
		row("full scan, manifest check vs mktorrent of the whole directory + sha256sum", tMan, tMkDir+tSha)
		row("full scan, manifest check vs mktorrent of the whole directory alone", tMan, tMkDir)
	} else {
		fmt.Println("| mktorrent is not installed (apt-get install mktorrent) | | | |")
	}
	row("full scan, full check vs sha256sum alone", tFull, tSha)
	row("full scan, manifest check vs sha256sum alone", tMan, tSha)
	os.RemoveAll(full)

	// Incremental rescan.
	inc := filepath.Join(work, "inc")
	check(os.MkdirAll(inc, 0o755))
	specs = specs[:0]
	for i := range *rescanN {
		specs = append(specs, repotest.Package{Name: fmt.Sprintf("p%05d", i), Version: "1", PayloadBytes: 2 << 10, Seed: uint64(i)})
	}
	incFiles := makeAll(work, inc, specs)
	cat, err := store.OpenCatalog(filepath.Join(work, "inc-catalog.db"))
	check(err)
	sc := repo.NewScanner(cat, repo.Options{Dir: inc, PublicURL: "http://127.0.0.1:1", Signer: key(work)})
	tFirst := timeFn(func() { _, _, err := sc.Scan(context.Background()); check(err) })
	tNone := timeFn(func() { _, _, err := sc.Scan(context.Background()); check(err) })
	_, err = repotest.MakeErr(work, inc, repotest.Package{Name: "p00000", Version: "1", PayloadBytes: 2 << 10, Seed: 999999})
	check(err)
	var st any
	tOne := timeFn(func() {
		_, s, err := sc.Scan(context.Background())
		check(err)
		st = s.Changed
	})
	cat.Close()
	row(fmt.Sprintf("rescan of %d packages, one changed (changed=%v) vs the first full scan", len(incFiles), st), tOne, tFirst)
	row(fmt.Sprintf("rescan of %d packages, none changed vs the first full scan", len(incFiles)), tNone, tFirst)

	if *skipRSS {
		return
	}
	// Memory while seeding.
	rssDir := filepath.Join(work, "rss")
	check(os.MkdirAll(rssDir, 0o755))
	specs = specs[:0]
	for i := range *rssN {
		specs = append(specs, repotest.Package{Name: fmt.Sprintf("r%05d", i), Version: "1", PayloadBytes: *rssSize, Seed: uint64(i)})
	}
	makeAll(work, rssDir, specs)
	bin := filepath.Join(work, "tpmd")
	run("go", "build", "-o", bin, "tpm/cmd/tpmd")
	anon, total, took := seedRSS(work, bin, rssDir, *rssN)
	fmt.Printf("| tpmd server seeding %d packages of %d KB: RssAnon / VmRSS (ready after %v) | %d MB / %d MB | | |\n",
		*rssN, *rssSize>>10, took.Round(time.Second), anon>>10, total>>10)
}

func row(what string, tpm, other time.Duration) {
	fmt.Printf("| %s | %v | %v | %.2f |\n", what, tpm.Round(time.Millisecond), other.Round(time.Millisecond), tpm.Seconds()/other.Seconds())
}

func timeScan(work, dir string, c repo.Check) time.Duration {
	cat, err := store.OpenCatalog(filepath.Join(work, "catalog-"+c.String()+".db"))
	check(err)
	defer cat.Close()
	sc := repo.NewScanner(cat, repo.Options{Dir: dir, PublicURL: "http://127.0.0.1:1", Signer: key(work), Check: c})
	return timeFn(func() {
		g, st, err := sc.Scan(context.Background())
		check(err)
		if st.Rejected > 0 || len(g.Packages) == 0 {
			panic(fmt.Sprintf("scan rejected %v", st.Rejections))
		}
	})
}

var keyOnce sync.Once
var theKey *signing.Key

func key(work string) *signing.Key {
	keyOnce.Do(func() {
		k, _, err := signing.Keygen(filepath.Join(work, "key"), false)
		check(err)
		theKey, err = signing.LoadKey(k)
		check(err)
	})
	return theKey
}

// makeAll packs specs into dir on two goroutines.
func makeAll(work, dir string, specs []repotest.Package) []string {
	out := make([]string, len(specs))
	var wg sync.WaitGroup
	next := make(chan int)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				p, err := repotest.MakeErr(work, dir, specs[i])
				check(err)
				out[i] = p
			}
		}()
	}
	for i := range specs {
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}

func dirBytes(files []string) int64 {
	var n int64
	for _, f := range files {
		fi, err := os.Stat(f)
		check(err)
		n += fi.Size()
	}
	return n
}

// seedRSS runs tpmd on dir until every package is seeded and returns its
// RssAnon and VmRSS in KiB.
func seedRSS(work, bin, dir string, n int) (anon, total int64, took time.Duration) {
	state := filepath.Join(work, "state")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	addr := ln.Addr().String()
	ln.Close()
	k := filepath.Join(work, "key", signing.KeyFile)
	cmd := exec.Command(bin, "server", "--packages", dir, "--state-dir", state, "--key", k,
		"--http", addr, "--public-url", "http://"+addr, "--torrent-listen", "127.0.0.1:0",
		"--log-level", "warn")
	cmd.Stderr = os.Stderr
	check(cmd.Start())
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
	start := time.Now()
	want := fmt.Sprintf("seeding=%d/%d", n, n)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), want) {
				break
			}
		}
		if time.Since(start) > 10*time.Minute {
			panic("tpmd did not seed everything within 10 minutes")
		}
		time.Sleep(200 * time.Millisecond)
	}
	took = time.Since(start)
	time.Sleep(2 * time.Second) // let the first GC cycles after the burst settle
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	check(err)
	field := func(name string) int64 {
		m := regexp.MustCompile(name + `:\s+(\d+) kB`).FindSubmatch(status)
		if m == nil {
			return -1
		}
		v, _ := strconv.ParseInt(string(m[1]), 10, 64)
		return v
	}
	return field("RssAnon"), field("VmRSS"), took
}

func timeFn(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}

func timeCmd(name string, args ...string) time.Duration {
	return timeFn(func() { run(name, args...) })
}

func run(name string, args ...string) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		panic(fmt.Sprintf("%s: %v\n%s", name, err, out))
	}
}

func check(err error) {
	if err != nil {
		panic(err)
	}
}
