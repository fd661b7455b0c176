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

// The standard clients' baselines (aria2.go, transmission.go): a client on
// every client host at once, with the set's .torrent files from the server
// without their url-list (peers only, as tpm downloads by default), against
// a tpmd server started afresh for it (its tracker and seeder, nobody
// else's peers remembered). The client keeps seeding once it has a file, as
// tpm does, until every host has the set; a host has it when the client's
// completion hook has marked every file complete and the file is whole.

// baselineResult is what a standard client's run measured.
type baselineResult struct {
	last     time.Duration
	repoSent int64   // bytes the repository host sent during the run
	cpuSecs  float64 // the machine's busy CPU seconds during the run
}

// cpuSeconds turns /proc/stat ticks into seconds.
func cpuSeconds(ticks int64) float64 { return float64(ticks) / 100 }

// baselineClient is how one standard client runs on a host.
type baselineClient struct {
	name string // its folders', server's and hook's names
	// hook is a shell script the client runs when a torrent is complete; it
	// creates "<file>.complete" next to the file.
	hook string
	// start starts the client on host i, downloading torrents into dl, its
	// logs and configuration beside dl, hook its completion script. It
	// returns what it started, also on error.
	start func(ctx context.Context, i int, h host, dl string, torrents []string, hook string) ([]*exec.Cmd, error)
}

func measureBaseline(ctx context.Context, nw *network, set packageSet, dir, bin, keyPath string, phase time.Duration, c baselineClient) (baselineResult, error) {
	var r baselineResult
	url := repoURL(nw)
	srv, err := startRepository(ctx, nw, dir, "server-"+c.name, bin, keyPath, set)
	if err != nil {
		return r, err
	}
	defer srv.stop()
	torrents, sizes, err := torrentsWithoutWebSeeds(ctx, nw.clients[0], url, set, filepath.Join(dir, c.name+"-torrents"))
	if err != nil {
		return r, err
	}

	before, err := txBytes(ctx, nw.repo)
	if err != nil {
		return r, err
	}
	hook := filepath.Join(dir, c.name+"-complete.sh")
	if err := os.WriteFile(hook, []byte(c.hook), 0o755); err != nil {
		return r, err
	}
	busy0, _ := cpuTicks()
	t0 := time.Now()
	var cmds []*exec.Cmd
	defer func() { stopAll(cmds) }()
	dirs := make([]string, len(nw.clients))
	for i, h := range nw.clients {
		dirs[i] = filepath.Join(dir, fmt.Sprintf("%s-c%02d", c.name, i+1))
		if err := os.MkdirAll(dirs[i], 0o755); err != nil {
			return r, err
		}
		started, err := c.start(ctx, i, h, dirs[i], torrents, hook)
		cmds = append(cmds, started...)
		if err != nil {
			return r, err
		}
	}
	var finishes []time.Duration
	done := make([]bool, len(nw.clients))
	deadline := t0.Add(phase)
	for len(finishes) < len(nw.clients) {
		if time.Now().After(deadline) {
			return r, fmt.Errorf("%d of %d hosts had the set after %v (logs in %s)", len(finishes), len(nw.clients), phase, dir)
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

// startLogged starts bin with args in h's namespace, its output in logPath.
func startLogged(ctx context.Context, h host, logPath, bin string, args ...string) (*exec.Cmd, error) {
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd := inNS(ctx, h, bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s on %s: %w", bin, h.ns, err)
	}
	return cmd, nil
}

// stopAll sends every process SIGTERM at once, so that none seeds to the
// others while they stop one by one, and kills what still runs 10 s later.
func stopAll(cmds []*exec.Cmd) {
	for _, c := range cmds {
		c.Process.Signal(syscall.SIGTERM)
	}
	kill := time.AfterFunc(10*time.Second, func() {
		for _, c := range cmds {
			c.Process.Kill()
		}
	})
	defer kill.Stop()
	for _, c := range cmds {
		c.Wait()
	}
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

// hasSet says whether the client finished every file in dir: its hook said
// so, and the file is whole (a client may create a file at its full size
// before it has the data, so the size alone says nothing).
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
