package host

import (
	"bytes"
	"context"
	"crypto/sha256"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"
)

// Interoperability with a standard BitTorrent client, aria2c, on loopback.
// In both directions the server publishes and tracks but does not seed, and
// the web seed is out of the picture, so the bytes can only come from the
// other client.

const interopPackage = "greet-data-1.0-1-any.tpkg"

func needAria2(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("aria2c")
	if err != nil {
		t.Skip("aria2c is not installed (apt-get install aria2)")
	}
	return path
}

// torrentWithoutWebSeed fetches a package's .torrent from the server and
// writes it without its url-list, which is not part of the infohash.
func torrentWithoutWebSeed(t *testing.T, serverURL, file string) string {
	t.Helper()
	resp, err := http.Get(serverURL + "/torrents/" + file + ".torrent")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	mi, err := metainfo.Load(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	mi.UrlList = nil
	var buf bytes.Buffer
	if err := mi.Write(&buf); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), file+".torrent")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func aria2Args(dir, torrent string, extra ...string) []string {
	return append([]string{"--dir", dir, "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
		"--enable-peer-exchange=false", "--follow-torrent=false", "--summary-interval=0", "--console-log-level=warn",
		"--allow-overwrite=true", "--bt-tracker-interval=1"}, append(extra, torrent)...)
}

func fileSHA(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// aria2c downloads a package with only its .torrent, a tpm client being the
// only seed.
func TestAria2DownloadsFromTPMClient(t *testing.T) {
	aria2 := needAria2(t)
	r := newRepository(t, "greet-data")
	srv := startServer(t, r, "--seed=false")
	h := newHost(t)
	startClient(t, h, srv.url, r.pubPath) // gets it from the web seed, then seeds it
	waitIndex(t, h.run, 1)
	ok(t, h.run, "install", []string{"greet-data"}, nil, nil)
	waitFor(t, "tpm client seeding", func() bool { return getStatus(t, h.run).Seeding == 1 })
	before := getStatus(t, h.run).BytesUp

	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, aria2, aria2Args(dir, torrentWithoutWebSeed(t, srv.url, interopPackage), "--seed-time=0", "--bt-stop-timeout=60")...).CombinedOutput()
	if err != nil {
		t.Fatalf("aria2c: %v\n%s", err, out)
	}
	if fileSHA(t, filepath.Join(dir, interopPackage)) != fileSHA(t, filepath.Join(r.packages, interopPackage)) {
		t.Fatal("aria2c's file differs from the published package")
	}
	if after := getStatus(t, h.run).BytesUp; after <= before {
		t.Fatalf("the tpm client uploaded nothing (%d → %d bytes)", before, after)
	}
}

// A tpm client downloads a package whose only seed is aria2c.
func TestTPMClientDownloadsFromAria2(t *testing.T) {
	aria2 := needAria2(t)
	r := newRepository(t, "greet-data")
	srv := startServer(t, r, "--seed=false")
	seedDir := seedCopy(t, r)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seeder := exec.CommandContext(ctx, aria2, aria2Args(seedDir, torrentWithoutWebSeed(t, srv.url, interopPackage),
		"--check-integrity=true", "--seed-ratio=0.0", "--listen-port=6881-6999")...)
	var seederOut bytes.Buffer
	seeder.Stdout, seeder.Stderr = &seederOut, &seederOut
	if err := seeder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		seeder.Wait()
	}()

	installFromPeersOnly(context.Background(), t, srv, r, "aria2c", seederOut.String)
}

// seedCopy is a folder with a copy of the interop package, for a standard
// client to seed.
func seedCopy(t *testing.T, r *repository) string {
	t.Helper()
	dir := t.TempDir()
	b, err := os.ReadFile(filepath.Join(r.packages, interopPackage))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, interopPackage), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// installFromPeersOnly installs the interop package on a new tpm client
// without the web seed, so the bytes can only come from the standard
// client seeding it (named seed; its output for the failure message).
func installFromPeersOnly(ctx context.Context, t *testing.T, srv *server, r *repository, seed string, seedOutput func() string) {
	t.Helper()
	h := newHost(t)
	startClient(t, h, srv.url, r.pubPath, "--web-seed=false", "--stall-timeout", "60s")
	waitIndex(t, h.run, 1)
	final, _, err := callErr(ctx, h.run, "install", []string{"greet-data"}, nil, 90*time.Second)
	if err != nil || final.Type != "result" {
		t.Fatalf("install from %s: %v %+v\n%s:\n%s", seed, err, final, seed, seedOutput())
	}
	if s := getStatus(t, h.run); s.BytesDown == 0 {
		t.Fatalf("nothing came from peers: %+v", s)
	}
	if _, err := os.Stat(filepath.Join(h.prefix, "usr/share/greet/greeting.txt")); err != nil {
		t.Fatal(err)
	}
}
