package host

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/torrent/tracker"
)

// seederAddr is the repository's seeder as its tracker names it.
func seederAddr(t *testing.T, serverURL string, ih [20]byte) string {
	t.Helper()
	res, err := tracker.Announce{TrackerUrl: serverURL + "/announce", Request: tracker.AnnounceRequest{
		InfoHash: ih, PeerId: [20]byte{'-', 'T', 'E', 'S', 'T'}, Left: 0, NumWant: 10, Port: 1, Event: tracker.Stopped}}.Do()
	if err != nil || len(res.Peers) == 0 {
		t.Fatalf("the tracker named no seeder: %v", err)
	}
	return net.JoinHostPort(res.Peers[0].IP.String(), strconv.Itoa(res.Peers[0].Port))
}

// healthLive is the live= figure of the server's /healthz, -1 if absent.
func healthLive(serverURL string) int {
	resp, err := http.Get(serverURL + "/healthz")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, "live="); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return -1
}

// A flood of plain handshakes to the seeder and leecher announces to the
// tracker, for every package of the repository, from several addresses of
// 127.0.0.0/8, wakes no more torrents than --live-torrents; a real host
// without web seed installs during the flood, its torrents woken among
// the flood's.
func TestFloodOfDemandStaysCapped(t *testing.T) {
	r := newRepository(t)
	for i := range 20 {
		r.addPackage(t, fmt.Sprintf(`{"Name": "filler%d", "Version": "1.0", "Architecture": "any", "Type": "Binary", "Description": "filler"}`, i),
			map[string]string{fmt.Sprintf("data/usr/share/filler%d/payload", i): strings.Repeat("x", 1000+i)})
	}
	const limit = 3
	srv := startServer(t, r, "--live-torrents", strconv.Itoa(limit))
	hashes := infoHashes(t, r)
	seeder := seederAddr(t, srv.url, hashes[0])
	h := newHost(t)
	startClient(t, h, srv.url, r.pubPath, "--web-seed=false", "--stall-timeout", "60s")
	waitIndex(t, h.run, len(hashes))

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	most := 0
	for w := range 4 {
		wg.Add(2)
		go func() { // handshakes
			defer wg.Done()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+w))}, Timeout: 2 * time.Second}
			for i := w; ctx.Err() == nil; i = (i + 1) % len(hashes) {
				c, err := d.DialContext(ctx, "tcp", seeder)
				if err != nil {
					continue
				}
				msg := append([]byte("\x13BitTorrent protocol"), make([]byte, 8)...)
				msg = append(msg, hashes[i][:]...)
				c.SetDeadline(time.Now().Add(time.Second))
				c.Write(append(msg, []byte("-FL0000-floodflood00")...))
				c.Read(make([]byte, 68))
				c.Close()
			}
		}()
		go func() { // announces
			defer wg.Done()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(10+w))}}
			client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
			for i := w; ctx.Err() == nil; i = (i + 1) % len(hashes) {
				u := fmt.Sprintf("%s/announce?info_hash=%s&peer_id=-FL0000-floodflood%02d&port=%d&left=100&compact=1&numwant=0",
					srv.url, url.QueryEscape(string(hashes[i][:])), w, 20000+w)
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
				if resp, err := client.Do(req); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				mu.Lock()
				most = max(most, healthLive(srv.url))
				mu.Unlock()
			}
		}()
	}
	var results []result
	ok(t, h.run, "install", []string{"hello"}, nil, &results)
	stop()
	wg.Wait()
	if len(results) != 3 {
		t.Fatalf("install during the flood: %+v", results)
	}
	if most > limit || most <= 0 {
		t.Fatalf("%d torrents live at most during the flood; want 1 to %d", most, limit)
	}
}
