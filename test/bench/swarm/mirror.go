package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// mirrorResult is the run with the origin and one mirror.
type mirrorResult struct {
	n                      int
	tpm, bound, killedAt   time.Duration
	finishes               []time.Duration
	originSent, mirrorSent int64 // what each host sent during the install
	peerUp, peerDown       int64
	originKilled           bool // the install was still running when the origin was killed
	totalBytes             int64
}

// measureMirror runs the set's install on n clients that know the origin
// and one mirror, and kills the origin (SIGKILL) half-way through the bound
// for two sources: every host must still finish, from the mirror and each
// other. The origin names the mirror's tracker in every torrent, so the
// hosts still have one after the kill.
func measureMirror(ctx context.Context, sh shape, n int, set packageSet, dir, bin, keyPath, pubPath string) (mirrorResult, error) {
	r := mirrorResult{n: n, totalBytes: set.bytes}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return r, err
	}
	nw, err := newNetwork(ctx, n, sh, true)
	if err != nil {
		return r, err
	}
	defer nw.teardown()
	S, U, u, N := float64(set.bytes*8), float64(sh.repoUp), float64(sh.clientLink), float64(n)
	r.bound = time.Duration(max(S/(2*U), N*S/(2*U+N*u), S/u) * float64(time.Second))
	phase := time.Duration(N*S/U*3*float64(time.Second)) + time.Minute

	url, murl := repoURL(nw), "http://"+nw.mirror.ip+":8080"
	srv, err := startRepository(ctx, nw, dir, "server", bin, keyPath, set, "--announce", murl+"/announce", "--mirror", murl)
	if err != nil {
		return r, err
	}
	defer srv.stop()
	mir, err := startDaemon(ctx, *nw.mirror, filepath.Join(dir, "mirror.log"), bin+"/tpmd", "mirror", "--upstream", url,
		"--trusted-key", pubPath, "--state-dir", filepath.Join(dir, "mirror"), "--packages", filepath.Join(dir, "mirror-packages"),
		"--http", nw.mirror.ip+":8080", "--public-url", murl, "--torrent-listen", nw.mirror.ip+":6881",
		"--sync-interval", "30s", "--log-level", "warn")
	if err != nil {
		return r, err
	}
	defer mir.stop()
	// The mirror copies the whole set (at least S/U) before any host starts.
	if err := waitFor(ctx, phase, "the mirror's copy", func() bool {
		return inNS(ctx, nw.clients[0], "curl", "-sf", "-o", "/dev/null", murl+"/healthz").Run() == nil
	}); err != nil {
		return r, errors.Join(err, mir.logTail())
	}

	clients, runDirs, err := startClients(ctx, nw, dir, bin, pubPath, set, url, murl)
	defer func() {
		for _, c := range clients {
			c.stop()
		}
	}()
	if err != nil {
		return r, err
	}

	origin0, err := txBytes(ctx, nw.repo)
	if err != nil {
		return r, err
	}
	mirror0, err := txBytes(ctx, *nw.mirror)
	if err != nil {
		return r, err
	}
	pctx, cancel := context.WithTimeout(ctx, phase)
	defer cancel()
	start := time.Now()
	killed := make(chan bool, 1)
	go func() {
		select {
		case <-time.After(r.bound / 2):
			srv.cmd.Process.Kill() // the origin dies, no goodbye to anyone
			killed <- true
		case <-pctx.Done():
			killed <- false
		}
	}()
	times, err := everyClient(pctx, nw, func(ctx context.Context, i int, h host) error {
		args := append([]string{"--run-dir", runDirs[i], "install", "-y"}, set.names...)
		out, err := inNS(ctx, h, bin+"/tpm", args...).CombinedOutput()
		if err != nil {
			return errors.Join(fmt.Errorf("tpm install on %s: %v %s", h.ns, err, out), clients[i].logTail())
		}
		return nil
	})
	cancel()
	r.originKilled = <-killed
	r.killedAt = r.bound / 2
	if err != nil {
		return r, err
	}
	r.tpm, r.finishes = times[len(times)-1], times
	if !r.originKilled {
		return r, fmt.Errorf("every host finished in %v, before the origin was to be killed at %v: nothing was shown", time.Since(start), r.killedAt)
	}
	origin1, err := txBytes(ctx, nw.repo)
	if err != nil {
		return r, err
	}
	mirror1, err := txBytes(ctx, *nw.mirror)
	if err != nil {
		return r, err
	}
	r.originSent, r.mirrorSent = origin1-origin0, mirror1-mirror0
	for i := range nw.clients {
		st, err := status(ctx, bin, runDirs[i])
		if err != nil {
			return r, err
		}
		r.peerUp += st.BytesUp
		r.peerDown += st.BytesDown
	}
	return r, nil
}

// mirrorMarkdown is the mirror run's section of the results.
func mirrorMarkdown(set packageSet, r mirrorResult) string {
	var b strings.Builder
	b.WriteString("\n## The origin and one mirror, the origin killed half-way\n\n")
	fmt.Fprintf(&b, "N = %d hosts name both (`--server` twice); the mirror (`tpmd mirror`, uplink U too) copied the set before they started; "+
		"the origin names the mirror's tracker (`--announce`). The origin was killed (SIGKILL) %s after the start, half the bound for two sources, "+
		"max(S/2U, N·S/(2U+N·u), S/u).\n\n", r.n, secs(r.killedAt))
	b.WriteString("| N | tpm, last finish | bound, two sources | tpm / bound | origin sent | mirror sent | (origin + mirror) / S | first / median finish | data uploaded by clients |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	f := r.finishes
	fmt.Fprintf(&b, "| %d | %s | %s | %.2f | %s | %s | %.2f | %s / %s | %s |\n", r.n, secs(r.tpm), secs(r.bound),
		r.tpm.Seconds()/r.bound.Seconds(), mb(r.originSent), mb(r.mirrorSent), float64(r.originSent+r.mirrorSent)/float64(set.bytes),
		secs(f[0]), secs(f[len(f)/2]), mb(r.peerUp))
	return b.String()
}
