package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/anacrolix/torrent/metainfo"
)

// The standard client's baseline: aria2c on every client host at once,
// with the set's .torrent files from the server without their url-list
// (peers only, as tpm downloads by default), against a tpmd server started
// afresh for it (its tracker and seeder, nobody else's peers remembered).
// aria2c keeps seeding once it has a file, as tpm does, until every host
// has the set; a host has it when aria2c has said of every file that it is
// complete (--on-bt-download-complete) and the file is whole.

// aria2Result is what the aria2c run measured.
type aria2Result struct {
	last     time.Duration
	repoSent int64   // bytes the repository host sent during the run
	cpuSecs  float64 // the machine's busy CPU seconds during the run
}

// cpuSeconds turns /proc/stat ticks into seconds.
func cpuSeconds(ticks int64) float64 { return float64(ticks) / 100 }

func measureAria2(ctx context.Context, nw *network, set packageSet, dir, bin, keyPath string, phase time.Duration) (aria2Result, error) {
	var r aria2Result
	url := repoURL(nw)
	srv, err := startRepository(ctx, nw, dir, "server-aria2", bin, keyPath, set)
	if err != nil {
		return r, err
	}
	defer srv.stop()
	torrents, sizes, err := torrentsWithoutWebSeeds(ctx, nw.clients[0], url, set, filepath.Join(dir, "torrents"))
	if err != nil {
		return r, err
	}

	before, err := txBytes(ctx, nw.repo)
	if err != nil {
		return r, err
	}
	hook := filepath.Join(dir, "aria2-complete.sh")
	if err := os.WriteFile(hook, []byte("#!/bin/sh\n# GID, number of files, first file\ntouch \"$3.complete\"\n"), 0o755); err != nil {
		return r, err
	}
	busy0, _ := cpuTicks()
	t0 := time.Now()
	cmds := make([]*exec.Cmd, len(nw.clients))
	dirs := make([]string, len(nw.clients))
	defer func() {
		for _, c := range cmds {
			if c != nil && c.Process != nil {
				c.Process.Signal(syscall.SIGTERM)
				c.Wait()
			}
		}
	}()
	for i, h := range nw.clients {
		dirs[i] = filepath.Join(dir, fmt.Sprintf("aria2-c%02d", i+1))
		if err := os.MkdirAll(dirs[i], 0o755); err != nil {
			return r, err
		}
		args := append([]string{"--dir", dirs[i], "--listen-port=6881", "--enable-dht=false", "--enable-dht6=false",
			"--bt-enable-lpd=false", "--follow-torrent=false", "--summary-interval=0", "--console-log-level=warn",
			"--seed-time=600", "--seed-ratio=0.0", "--file-allocation=none", "--max-concurrent-downloads=" + fmt.Sprint(len(torrents)),
			"--on-bt-download-complete=" + hook}, torrents...)
		log, err := os.Create(dirs[i] + ".log")
		if err != nil {
			return r, err
		}
		cmds[i] = inNS(ctx, h, "aria2c", args...)
		cmds[i].Stdout, cmds[i].Stderr = log, log
		err = cmds[i].Start()
		log.Close()
		if err != nil {
			return r, fmt.Errorf("aria2c on %s: %w", h.ns, err)
		}
	}
	var finishes []time.Duration
	done := make([]bool, len(nw.clients))
	deadline := t0.Add(phase)
	for len(finishes) < len(nw.clients) {
		if time.Now().After(deadline) {
			return r, fmt.Errorf("aria2c: %d of %d hosts had the set after %v (logs in %s)", len(finishes), len(nw.clients), phase, dir)
		}
		for i := range nw.clients {
			if !done[i] && hasSet(dirs[i], set, sizes) {
				done[i] = true
				finishes = append(finishes, time.Since(t0))
			}
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	sort.Slice(finishes, func(i, j int) bool { return finishes[i] < finishes[j] })
	r.last = finishes[len(finishes)-1]
	busy1, _ := cpuTicks()
	r.cpuSecs = cpuSeconds(busy1 - busy0)
	after, err := txBytes(ctx, nw.repo)
	if err != nil {
		return r, err
	}
	r.repoSent = after - before
	return r, nil
}

// torrentsWithoutWebSeeds fetches the set's .torrent files from the server
// (through host h, inside the network) and writes them without their
// url-list, which is not part of the infohash. It returns their paths and
// the files' sizes.
func torrentsWithoutWebSeeds(ctx context.Context, h host, url string, set packageSet, dir string) ([]string, map[string]int64, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	var paths []string
	sizes := make(map[string]int64)
	for _, f := range set.files {
		raw := filepath.Join(dir, f+".orig.torrent")
		if out, err := inNS(ctx, h, "curl", "-sf", "-o", raw, url+"/torrents/"+f+".torrent").CombinedOutput(); err != nil {
			return nil, nil, fmt.Errorf("fetch the torrent of %s: %v %s", f, err, out)
		}
		mi, err := metainfo.LoadFromFile(raw)
		if err != nil {
			return nil, nil, fmt.Errorf("torrent of %s: %w", f, err)
		}
		info, err := mi.UnmarshalInfo()
		if err != nil {
			return nil, nil, fmt.Errorf("torrent of %s: %w", f, err)
		}
		mi.UrlList = nil
		path := filepath.Join(dir, f+".torrent")
		out, err := os.Create(path)
		if err != nil {
			return nil, nil, err
		}
		err = mi.Write(out)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, nil, err
		}
		paths = append(paths, path)
		sizes[info.BestName()] = info.TotalLength()
	}
	return paths, sizes, nil
}

// hasSet says whether aria2c finished every file in dir: it said so, and
// the file is whole.
func hasSet(dir string, set packageSet, sizes map[string]int64) bool {
	for name, size := range sizes {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p + ".complete"); err != nil {
			return false
		}
		if fi, err := os.Stat(p); err != nil || fi.Size() != size {
			return false
		}
	}
	return len(sizes) == len(set.files)
}
