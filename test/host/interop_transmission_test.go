package host

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
)

// Interoperability with Transmission (Debian's transmission-cli 3.00) on
// loopback, in both directions, like the aria2c tests: the server publishes
// and tracks but does not seed, and no web seed reaches transmission.
//
// Transmission 3.00 never dials a peer a tracker gives it at 127.0.0.0/8 or
// ::1 (libtransmission/net.c: tr_address_is_valid_for_peers rejects
// "martian" addresses, loopback included, in tr_peerMgrAddPex), but it
// accepts incoming connections from loopback. So on loopback the tpm client
// has to dial transmission: transmission announces first, and the tpm
// client finds it in the tracker's answer to the announce its download
// makes.

func needTransmission(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("transmission-cli")
	if err != nil {
		t.Skip("transmission-cli is not installed (apt-get install transmission-cli)")
	}
	return path
}

// transmission is one transmission-cli process working on one torrent.
type transmission struct {
	cmd  *exec.Cmd
	out  *logBuffer
	done chan error
	port int
}

// startTransmission runs transmission-cli headless on torrent with dir as
// its download directory: its own config directory and HOME under
// t.TempDir(), listening on a free loopback port, no DHT, PEX, LPD, uTP,
// port mapping, RPC, blocklist or speed limits. A file already in dir is
// verified and seeded. The process is stopped when the test ends.
func startTransmission(t *testing.T, bin, torrent, dir string) *transmission {
	t.Helper()
	_, portStr, err := net.SplitHostPort(freeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(portStr)
	home := t.TempDir()
	config := filepath.Join(home, "transmission")
	if err := os.MkdirAll(config, 0o700); err != nil {
		t.Fatal(err)
	}
	settings := map[string]any{
		"bind-address-ipv4":            "127.0.0.1",
		"bind-address-ipv6":            "::1",
		"peer-port":                    port,
		"peer-port-random-on-start":    false,
		"port-forwarding-enabled":      false,
		"dht-enabled":                  false,
		"pex-enabled":                  false,
		"lpd-enabled":                  false,
		"utp-enabled":                  false,
		"encryption":                   1, // preferred
		"rpc-enabled":                  false,
		"blocklist-enabled":            false,
		"download-dir":                 dir,
		"incomplete-dir-enabled":       false,
		"watch-dir-enabled":            false,
		"script-torrent-done-enabled":  false,
		"trash-original-torrent-files": false,
		"start-added-torrents":         true,
		"speed-limit-down-enabled":     false,
		"speed-limit-up-enabled":       false,
		"alt-speed-enabled":            false,
		"ratio-limit-enabled":          false,
		"idle-seeding-limit-enabled":   false,
		"download-queue-enabled":       false,
		"seed-queue-enabled":           false,
		"queue-stalled-enabled":        false,
		"message-level":                3, // debug, on stderr
	}
	b, err := json.MarshalIndent(settings, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(config, "settings.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	tr := &transmission{
		cmd: exec.Command(bin, "--config-dir", config, "--download-dir", dir, "--port", portStr,
			"--no-portmap", "--encryption-preferred", "--no-downlimit", "--no-uplimit", "--no-blocklist", torrent),
		out:  &logBuffer{},
		done: make(chan error, 1),
		port: port,
	}
	// Nothing of transmission's may land outside the test's folders, and
	// its announces (libcurl) must reach the test's tracker directly.
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToLower(k) {
		case "home", "xdg_config_home", "xdg_data_home", "xdg_cache_home", "xdg_download_dir",
			"http_proxy", "https_proxy", "all_proxy", "no_proxy", "transmission_home", "transmission_web_home":
			continue
		}
		env = append(env, kv)
	}
	tr.cmd.Env = append(env, "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
		"XDG_DATA_HOME="+filepath.Join(home, ".local", "share"), "XDG_CACHE_HOME="+filepath.Join(home, ".cache"),
		"TRANSMISSION_HOME="+config, "NO_PROXY=*", "no_proxy=*")
	tr.cmd.Dir = home
	tr.cmd.Stdout, tr.cmd.Stderr = tr.out, tr.out
	if err := tr.cmd.Start(); err != nil {
		t.Fatalf("transmission-cli: %v", err)
	}
	go func() { tr.done <- tr.cmd.Wait() }()
	t.Cleanup(func() {
		// SIGINT, which transmission-cli handles: it stops the torrent and
		// exits, flushing its status lines (stdout is a pipe, so block
		// buffered). SIGTERM would kill it at once, losing them.
		tr.cmd.Process.Signal(syscall.SIGINT)
		var err error
		select {
		case err = <-tr.done:
		case <-time.After(5 * time.Second):
			tr.cmd.Process.Signal(syscall.SIGKILL)
			err = <-tr.done
		}
		tr.done <- err
		if t.Failed() {
			t.Logf("transmission-cli output:\n%s", tr.output())
		}
	})
	return tr
}

// output is what transmission printed, its status line (rewritten with
// carriage returns five times a second) cut to its last few states.
func (tr *transmission) output() string {
	var lines []string
	for _, l := range strings.Split(strings.ReplaceAll(tr.out.String(), "\r", "\n"), "\n") {
		if l = strings.TrimRight(l, " "); l != "" && (len(lines) == 0 || lines[len(lines)-1] != l) {
			lines = append(lines, l)
		}
	}
	if len(lines) > 200 {
		lines = append([]string{fmt.Sprintf("[%d lines before]", len(lines)-200)}, lines[len(lines)-200:]...)
	}
	return strings.Join(lines, "\n")
}

// waitUntil polls cond until it holds, failing the test when ctx ends or
// transmission exits first; cond describes what it saw when it does not.
func (tr *transmission) waitUntil(ctx context.Context, t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		done, state := cond()
		if done {
			return
		}
		select {
		case err := <-tr.done:
			tr.done <- err
			t.Fatalf("transmission-cli exited (%v) before %s; last seen: %s", err, what, state)
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s; last seen: %s", what, state)
		case <-tick.C:
		}
	}
}

// trackerSwarm asks the tracker of torrent for its peers without joining: an
// announce with event "stopped" records nobody (it forgets 127.0.0.1:1,
// where no peer is) and still answers with the live peers and counts.
func trackerSwarm(ctx context.Context, t *testing.T, torrent string) (peers []netip.AddrPort, seeders, leechers int) {
	t.Helper()
	mi, err := metainfo.LoadFromFile(torrent)
	if err != nil {
		t.Fatal(err)
	}
	ih := mi.HashInfoBytes()
	q := url.Values{
		"info_hash": {string(ih[:])}, "peer_id": {"-TPMTEST-0123456789a"}, "port": {"1"},
		"uploaded": {"0"}, "downloaded": {"0"}, "left": {"0"}, "event": {"stopped"}, "numwant": {"50"}, "compact": {"1"},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, mi.Announce+"?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("asking the tracker: %v", err)
	}
	defer resp.Body.Close()
	var ar struct {
		Failure    string `bencode:"failure reason"`
		Complete   int    `bencode:"complete"`
		Incomplete int    `bencode:"incomplete"`
		Peers      []byte `bencode:"peers"`
	}
	if err := bencode.NewDecoder(resp.Body).Decode(&ar); err != nil {
		t.Fatalf("tracker answer: %v", err)
	}
	if ar.Failure != "" {
		t.Fatalf("tracker: %s", ar.Failure)
	}
	for p := ar.Peers; len(p) >= 6; p = p[6:] {
		peers = append(peers, netip.AddrPortFrom(netip.AddrFrom4([4]byte(p[:4])), uint16(p[4])<<8|uint16(p[5])))
	}
	return peers, ar.Complete, ar.Incomplete
}

// waitAnnounced waits until the tracker lists transmission, as a seeder or
// as a leecher.
func (tr *transmission) waitAnnounced(ctx context.Context, t *testing.T, torrent string, seeder bool) {
	t.Helper()
	want := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(tr.port))
	what := "a leecher"
	if seeder {
		what = "a seeder"
	}
	tr.waitUntil(ctx, t, "the tracker to list transmission ("+want.String()+") as "+what, func() (bool, string) {
		peers, seeders, leechers := trackerSwarm(ctx, t, torrent)
		state := fmt.Sprintf("peers %v, %d seeders, %d leechers", peers, seeders, leechers)
		for _, p := range peers {
			if p == want {
				return (seeder && seeders > 0) || (!seeder && leechers > 0), state
			}
		}
		return false, state
	})
}

// transmission-cli downloads a package with only its .torrent, a tpm client
// being the only seed.
func TestTransmissionDownloadsFromTPMClient(t *testing.T) {
	bin := needTransmission(t)
	r := newRepository(t, "greet-data")
	srv := startServer(t, r, "--seed=false")
	torrent := torrentWithoutWebSeed(t, srv.url, interopPackage)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// Transmission first, so that the tpm client's download finds it in the
	// tracker's answer and dials it (transmission would not dial loopback).
	dir := t.TempDir()
	tr := startTransmission(t, bin, torrent, dir)
	tr.waitAnnounced(ctx, t, torrent, false)

	h := newHost(t)
	startClient(t, h, srv.url, r.pubPath) // gets it from the web seed, then seeds it
	waitIndex(t, h.run, 1)
	before := getStatus(t, h.run).BytesUp
	ok(t, h.run, "install", []string{"greet-data"}, nil, nil)

	want := fileSHA(t, filepath.Join(r.packages, interopPackage))
	got := filepath.Join(dir, interopPackage) // transmission renames NAME.part when complete
	tr.waitUntil(ctx, t, "transmission to complete the download", func() (bool, string) {
		b, err := os.ReadFile(got)
		if err != nil {
			return false, err.Error()
		}
		return sha256.Sum256(b) == want, fmt.Sprintf("%d bytes, sha256 %x", len(b), sha256.Sum256(b))
	})
	if after := getStatus(t, h.run).BytesUp; after <= before {
		t.Fatalf("the tpm client uploaded nothing (%d → %d bytes)", before, after)
	}
}

// A tpm client downloads a package whose only seed is transmission-cli.
func TestTPMClientDownloadsFromTransmission(t *testing.T) {
	bin := needTransmission(t)
	r := newRepository(t, "greet-data")
	srv := startServer(t, r, "--seed=false")
	torrent := torrentWithoutWebSeed(t, srv.url, interopPackage)
	seedDir := seedCopy(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	tr := startTransmission(t, bin, torrent, seedDir)
	tr.waitAnnounced(ctx, t, torrent, true) // verified the file and seeds it

	installFromPeersOnly(ctx, t, srv, r, "transmission-cli", tr.output)
}
