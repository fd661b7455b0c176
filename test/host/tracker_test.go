package host

import (
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/anacrolix/torrent/metainfo"

	"tpm/swarm"
	"tpm/test/testenv"
)

// Standard trackers instead of the server's own: Debian's opentracker, the
// built-in tracker off (tpmd server --tracker=false --announce URL).

// opentracker is a running opentracker on loopback.
type opentracker struct {
	http, udp string // announce URLs
}

// startOpentracker runs opentracker with a whitelist of the repository's
// infohashes: Debian builds it to serve nothing else.
func startOpentracker(t *testing.T, r *repository) *opentracker {
	t.Helper()
	bin, err := exec.LookPath("opentracker")
	if err != nil {
		t.Skip("opentracker is not installed (apt-get install opentracker): the standard-tracker tests need it")
	}
	dir := t.TempDir()
	// Run as root, it chroots into dir and becomes nobody, who must still
	// read the whitelist.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var list strings.Builder
	hashes := infoHashes(t, r)
	for _, ih := range hashes {
		list.WriteString(hex.EncodeToString(ih[:]) + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "whitelist"), []byte(list.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	tcp := freeAddr(t)
	_, tcpPort, _ := net.SplitHostPort(tcp)
	udpPort := freeUDPPort(t)
	testenv.Start(t, bin, "-i", "127.0.0.1", "-p", tcpPort, "-P", udpPort, "-w", "whitelist", "-d", dir)
	// Up once it answers for a whitelisted infohash; "stopped", so that
	// the probe leaves no peer behind.
	probe := fmt.Sprintf("http://%s/announce?info_hash=%s&peer_id=-TPMTEST-01234567890&port=1&left=0&compact=1&event=stopped",
		tcp, url.QueryEscape(string(hashes[0][:])))
	waitFor(t, "opentracker serving its whitelist", func() bool {
		code, body := httpGet(t, probe)
		return code == 200 && !strings.Contains(string(body), "failure reason")
	})
	return &opentracker{http: "http://" + tcp + "/announce", udp: "udp://127.0.0.1:" + udpPort}
}

func freeUDPPort(t *testing.T) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, port, _ := net.SplitHostPort(c.LocalAddr().String())
	return port
}

// infoHashes are the infohashes of the repository's packages, as the
// server will make them: they depend on the files alone.
func infoHashes(t *testing.T, r *repository) [][20]byte {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(r.packages, "*.tpkg"))
	var out [][20]byte
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := f.Stat()
		h := swarm.NewHasher(fi.Size())
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		tor, err := h.Torrent(filepath.Base(p))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tor.InfoHash)
	}
	return out
}

// checkTorrentNames fetches a package's .torrent and checks that its
// trackers are exactly want, and that the built-in tracker is off.
func checkTorrentNames(t *testing.T, srv *server, want ...string) {
	t.Helper()
	resp, err := http.Get(srv.url + "/announce?info_hash=x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("the built-in tracker answers with --tracker=false: HTTP %d", resp.StatusCode)
	}
	resp, err = http.Get(srv.url + "/torrents/" + interopPackage + ".torrent")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	mi, err := metainfo.Load(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	got := mi.UpvertedAnnounceList().DistinctValues()
	if mi.Announce != want[0] || !slices.Equal(got, want) {
		t.Fatalf("torrent trackers: announce %q, list %v; want %v", mi.Announce, got, want)
	}
}

// Over HTTP (BEP 3), the server neither tracking nor seeding: the first
// client gets the packages from the web seed and announces itself as a
// seeder; the second, without the web seed, finds it through opentracker
// and installs from it.
func TestSecondClientFromFirstThroughOpentracker(t *testing.T) {
	r := newRepository(t)
	ot := startOpentracker(t, r)
	srv := startServer(t, r, "--tracker=false", "--seed=false", "--announce", ot.http)
	checkTorrentNames(t, srv, ot.http)
	h1, h2 := newHost(t), newHost(t)
	startClient(t, h1, srv.url, r.pubPath)
	waitIndex(t, h1.run, 3)
	ok(t, h1.run, "install", []string{"hello"}, nil, nil)
	waitFor(t, "first client seeding", func() bool { return getStatus(t, h1.run).Seeding == 3 })
	before := getStatus(t, h1.run).BytesUp

	startClient(t, h2, srv.url, r.pubPath, "--web-seed=false", "--stall-timeout", "30s")
	waitIndex(t, h2.run, 3)
	secondInstallsFromFirst(t, h1, h2, before, " through opentracker")
}

// Over UDP (BEP 15), the server seeding: its seeder announces to
// opentracker, and a client without the web seed finds it there. The
// index names both trackers; the client announces to each.
func TestClientFindsTheSeederThroughOpentrackerUDP(t *testing.T) {
	r := newRepository(t)
	ot := startOpentracker(t, r)
	dead := "http://" + freeAddr(t) + "/announce" // a tracker that is down
	srv := startServer(t, r, "--tracker=false", "--announce", dead, "--announce", ot.udp)
	checkTorrentNames(t, srv, dead, ot.udp)
	h := newHost(t)
	startClient(t, h, srv.url, r.pubPath, "--web-seed=false", "--stall-timeout", "30s")
	waitIndex(t, h.run, 3)
	var results []result
	ok(t, h.run, "install", []string{"hello"}, nil, &results)
	if len(results) != 3 {
		t.Fatalf("client: %+v", results)
	}
	if s := getStatus(t, h.run); s.BytesDown == 0 {
		t.Fatalf("the client downloaded nothing from peers: %+v", s)
	}
}
