package main

// The index rows (issue 27: "a host that only follows the index"): a real
// tpmd server publishing a signed index of -index-n packages, a real
// tpmd client following it with one package installed, and what that host
// costs: its memory, and how fast tpm search and tpm info answer.
//
// Making -index-n real packages would take minutes and the server would
// read every one of them; the index is made cheaply instead, without
// changing what the host gets. One real package file (the filler) is
// hard-linked under -index-n names, and the server's catalog is written
// beforehand with an entry for each name whose stat (size, times, inode:
// the links share them) matches the file's, so the server's scan takes
// them as unchanged and publishes them as it would have: a signed
// index.db of -index-n valid entries (each with its own name, file and
// torrent) that the server signs and serves itself. The package the host
// installs is a second real file, which the server scans as usual; the
// server runs with --seed=false (100,000 live torrents cost it gigabytes)
// and the host downloads it from the web seed.

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"tpm/manifest"
	"tpm/messages/wire"
	"tpm/repo/repotest"
	"tpm/signing"
	"tpm/store"
	"tpm/swarm"
	"tpm/test/bench/benchkit"
)

var indexN = flag.Int("index-n", 100000, "packages in the index a host follows, for the index rows (0: no index rows)")

// indexRun adds the index rows of every build.
func indexRun(work string, builds []build, add func(what, who, figure string)) {
	if *indexN <= 0 {
		return
	}
	n := *indexN
	pkgs := filepath.Join(work, "index-packages")
	catalog := filepath.Join(work, "index-catalog.db")
	t0 := time.Now()
	installed := makeIndex(work, pkgs, catalog, n)
	fmt.Fprintf(os.Stderr, "bench: index of %d packages made in %v\n", n, time.Since(t0).Round(time.Millisecond))
	for _, b := range builds {
		r := indexHostRun(work, b, pkgs, catalog, installed, n)
		add(fmt.Sprintf("index of %d packages: tpmd client start to the index loaded (fetched, verified, read)", n), b.name, r.loaded.Round(time.Millisecond).String())
		add(fmt.Sprintf("tpmd client VmRSS following an index of %d packages, 1 installed, %v after its last query", n, *settle), b.name, r.rss)
		add(fmt.Sprintf("tpmd client peak VmHWM following an index of %d packages", n), b.name, r.hwm)
		add(fmt.Sprintf("tpm search over an index of %d packages (median of %d)", n, indexCalls), b.name, benchkit.MS(r.search))
		add(fmt.Sprintf("tpm info in an index of %d packages (median of %d)", n, indexCalls), b.name, benchkit.MS(r.info))
	}
}

// indexCalls is how many times each query is timed.
const indexCalls = 21

// makeIndex makes the package folder and the server's catalog of an index
// of n packages (see the top of this file) and returns the name of the one
// real package, which the host installs.
func makeIndex(work, pkgs, catalog string, n int) string {
	benchkit.Check(os.MkdirAll(pkgs, 0o755))
	const real = "index-bench-real"
	_, err := repotest.MakeErr(work, pkgs, repotest.Package{Name: real, Version: "1.0", PayloadBytes: *payload, Seed: 1})
	benchkit.Check(err)
	cat, err := store.OpenCatalog(catalog)
	benchkit.Check(err)
	defer cat.Close()
	// A file system allows a file so many links (ext4: 65,000): a filler
	// file for every linksPerFile names.
	const linksPerFile = 50000
	for lo := 0; lo < n; lo += linksPerFile {
		fillIndex(work, pkgs, cat, lo, min(lo+linksPerFile, n), n)
	}
	return real
}

// fillIndex makes a filler package file, links it under the names of
// entries lo to hi of an index of n, and writes their entries.
func fillIndex(work, pkgs string, cat *store.Catalog, lo, hi, n int) {
	filler, err := repotest.MakeErr(work, pkgs, repotest.Package{Name: fmt.Sprintf("index-bench-filler%d", lo), Version: "1.0",
		PayloadBytes: *payload, Seed: uint64(2 + lo)})
	benchkit.Check(err)
	var ms []manifest.Manifest
	for i := lo; i < hi; i++ {
		m := manifest.Manifest{Name: fmt.Sprintf("idx%06d", i), Version: "1.0", Architecture: manifest.ArchAny, Type: manifest.TypeBinary,
			Description: fmt.Sprintf("benchmark index entry %d of %d", i, n)}
		benchkit.Check(m.Validate())
		benchkit.Check(os.Link(filler, filepath.Join(pkgs, m.FileName())))
		ms = append(ms, m)
	}
	// Stat once every link is made: each link changes the inode's ctime.
	fi, err := os.Stat(filler)
	benchkit.Check(err)
	st := fi.Sys().(*syscall.Stat_t)
	data, err := os.ReadFile(filler)
	benchkit.Check(err)
	h := swarm.NewHasher(int64(len(data)))
	_, err = h.Write(data)
	benchkit.Check(err)
	const batch = 10000
	for b := 0; b < len(ms); b += batch {
		err := cat.Update(func(tx *store.CatalogTx) error {
			for _, m := range ms[b:min(b+batch, len(ms))] {
				tor, err := h.Torrent(m.FileName())
				if err != nil {
					return err
				}
				e := &store.CatalogEntry{Manifest: m, File: m.FileName(), Size: fi.Size(), SHA256: tor.SHA256Hex(),
					InfoHash: tor.InfoHashHex(), InfoBytes: tor.InfoBytes,
					MTimeNS: fi.ModTime().UnixNano(), CTimeNS: st.Ctim.Nano(), Inode: st.Ino}
				if err := tx.PutEntry(e); err != nil {
					return err
				}
			}
			return nil
		})
		benchkit.Check(err)
	}
}

// indexResult is what one index run measured.
type indexResult struct {
	loaded       time.Duration
	rss, hwm     string
	search, info time.Duration
}

// indexHostRun serves the index with build b's server, follows it with a
// fresh host of build b, installs one package and measures the host.
func indexHostRun(work string, b build, pkgs, catalog, installed string, n int) indexResult {
	dir := filepath.Join(work, "index-run-"+filepath.Base(b.dir))
	bin := filepath.Join(b.dir, "tpmd")
	keyPath, pubPath, err := signing.Keygen(filepath.Join(dir, "keys"), false)
	benchkit.Check(err)
	serverState := filepath.Join(dir, "server")
	benchkit.Check(os.MkdirAll(serverState, 0o755))
	copyFile(catalog, filepath.Join(serverState, "catalog.db"))
	addr := benchkit.FreeAddr()
	url := "http://" + addr
	srv := benchkit.Start(bin, filepath.Join(dir, "server.log"), "server", "--packages", pkgs, "--state-dir", serverState,
		"--key", keyPath, "--http", addr, "--public-url", url, "--torrent-listen", "127.0.0.1:0", "--seed=false", "--log-level", "warn")
	defer benchkit.Stop(srv)
	waitServing(url+"/index.db.sig", 10*time.Minute)

	run := filepath.Join(dir, "run")
	t0 := time.Now()
	host := benchkit.Start(bin, filepath.Join(dir, "client.log"), "client", "--server", url, "--trusted-key", pubPath,
		"--state-dir", filepath.Join(dir, "state"), "--cache-dir", filepath.Join(dir, "cache"), "--run-dir", run,
		"--prefix", filepath.Join(dir, "root"), "--torrent-listen", "127.0.0.1:0", "--log-level", "warn")
	defer benchkit.Stop(host)
	waitStatus(run, func(st wire.Status) bool { return st.IndexPackages >= n })
	r := indexResult{loaded: time.Since(t0)}
	benchkit.Check(benchkit.Call(run, "install", []string{installed}, nil, nil))

	word, name := fmt.Sprintf("idx%06d", n/2), fmt.Sprintf("idx%06d", n/3)
	r.search = timeCalls(func() {
		var res []wire.SearchResult
		benchkit.Check(benchkit.Call(run, "search", []string{word}, nil, &res))
		if len(res) != 1 {
			benchkit.Fail("search %s: %d results, want 1", word, len(res))
		}
	})
	r.info = timeCalls(func() {
		var d wire.PackageInfo
		benchkit.Check(benchkit.Call(run, "info", []string{name}, nil, &d))
		if d.Name != name {
			benchkit.Fail("info %s: got %q", name, d.Name)
		}
	})
	time.Sleep(*settle)
	pid := host.Process.Pid
	r.rss, r.hwm = benchkit.ProcStatus(pid, "VmRSS"), benchkit.ProcStatus(pid, "VmHWM")
	var size int64
	if fi, err := os.Stat(filepath.Join(dir, "state", "index.db")); err == nil {
		size = fi.Size()
	}
	fmt.Fprintf(os.Stderr, "bench: %s: RssAnon %s, RssFile %s; index.db %d bytes\n", b.name,
		benchkit.ProcStatus(pid, "RssAnon"), benchkit.ProcStatus(pid, "RssFile"), size)
	return r
}

// timeCalls is the median time of indexCalls calls of f.
func timeCalls(f func()) time.Duration {
	var d []time.Duration
	for range indexCalls {
		t := time.Now()
		f()
		d = append(d, time.Since(t))
	}
	return benchkit.Median(d)
}

// waitServing waits for url to answer 200: a server publishing a large
// index takes longer than benchkit.WaitHTTP waits.
func waitServing(url string, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	benchkit.Fail("%s never answered within %v", url, limit)
}

func copyFile(from, to string) {
	in, err := os.Open(from)
	benchkit.Check(err)
	defer in.Close()
	out, err := os.Create(to)
	benchkit.Check(err)
	_, err = io.Copy(out, in)
	benchkit.Check(err)
	benchkit.Check(out.Close())
}
