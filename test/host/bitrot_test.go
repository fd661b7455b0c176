package host

import (
	"os"
	"path/filepath"
	"testing"

	"tpm/messages/wire"
)

// TestCorruptRepositoryCopyOfEveryPackage: the repository's copy of every
// package rots on disk (same size and mtime) while two hosts seed the good
// bytes; a new host's first install of hello (one piece) and its
// dependencies comes from the peers, not failing on the repository's bad
// pieces. (On loopback this did not fail before the fix either: the peers
// connect before corruptWait; swarm's TestCorruptWebSeedThenALateGoodPeer
// covers a good peer that arrives late.)
func TestCorruptRepositoryCopyOfEveryPackage(t *testing.T) {
	r := newRepository(t)
	srv := startServer(t, r, "--scan-interval", "1h")
	// Each host on an address of its own: a peer that sends bad data is
	// banned by address.
	for _, addr := range []string{"127.0.0.2:0", "127.0.0.3:0"} {
		h := newHost(t)
		startClient(t, h, srv.url, r.pubPath, "--torrent-listen", addr)
		waitIndex(t, h.run, 3)
		ok(t, h.run, "install", []string{"hello"}, nil, nil)
	}

	matches, err := filepath.Glob(filepath.Join(r.packages, "*.tpkg"))
	if err != nil || len(matches) != 3 {
		t.Fatalf("the package files: %v %v", matches, err)
	}
	for _, path := range matches {
		rot(t, path)
	}

	c := newHost(t)
	d := startClient(t, c, srv.url, r.pubPath, "--torrent-listen", "127.0.0.4:0")
	waitIndex(t, c.run, 3)
	final, _ := call(t, c.run, "install", []string{"hello"}, nil)
	if final.Type != wire.ReplyResult {
		t.Fatalf("install with a corrupt repository and two good peers: %s\n%s", final.Error, d.Logs)
	}
	verifyClean(t, c.run)
}

// rot flips the middle half of the file at path, keeping its size and mtime.
func rot(t *testing.T, path string) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(b) / 4; i < len(b)*3/4; i++ {
		b[i] ^= 0xff
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(path, info.ModTime(), info.ModTime())
}
