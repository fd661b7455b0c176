package swarm

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// lateTracker names no peer (and counts no seed, so the web seed joins at
// once) until ready returns true; from then on it names the peer at port.
func lateTracker(t *testing.T, port int, ready func() bool) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ready() {
			fmt.Fprint(w, "d8:completei0e10:incompletei1e8:intervali600e5:peers0:e")
			return
		}
		fmt.Fprintf(w, "d8:completei1e10:incompletei1e8:intervali600e5:peers6:%se", []byte{127, 0, 0, 1, byte(port >> 8), byte(port)})
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/announce"
}

// A one-piece package whose web seed sends bad bytes, and a good seed the
// tracker names only after the web seed served them: the first bad piece
// must not end the download while the tracker may know a good source; the
// announce it triggers finds the seed, and the download completes.
func TestCorruptWebSeedThenALateGoodPeer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	good, bad := t.TempDir(), t.TempDir()
	data := randomBytes(455, 11)
	tor := writePackage(t, good, "h-1-any.tpkg", data)
	writePackage(t, bad, "h-1-any.tpkg", data)
	if tor.Size > PieceLength(tor.Size) {
		t.Fatalf("%d bytes in pieces of %d: not one piece", tor.Size, PieceLength(tor.Size))
	}
	s := newTestSeeder(t, good)
	if _, err := s.Sync(ctx, []Item{{InfoHash: tor.InfoHash, InfoBytes: tor.InfoBytes}}); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitComplete(ctx, tor.InfoHash); err != nil {
		t.Fatal(err)
	}
	var served atomic.Bool
	corrupt := webSeed(t, bad, true)
	relay := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.Get(corrupt + r.URL.Path[len("/packages/"):])
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		buf := make([]byte, 64<<10)
		for {
			n, err := resp.Body.Read(buf)
			w.Write(buf[:n])
			if err != nil {
				break
			}
		}
		served.Store(true)
	}))
	t.Cleanup(relay.Close)
	spec := specOf(tor, relay.URL+"/packages/")
	spec.Trackers = []string{lateTracker(t, s.Port(), served.Load)}
	c := newTestPeer(t)
	if _, err := c.Download(ctx, spec, func(Progress) {}); err != nil {
		t.Fatalf("download with a corrupt web seed and a good peer named late: %v", err)
	}
	tt, _ := c.client.Torrent(tor.InfoHash)
	if st := tt.Stats(); st.PiecesDirtiedBad.Int64() == 0 {
		t.Fatal("no piece failed its hash check: the web seed's bad bytes were not tried first")
	}
}

// A corrupt web seed and a peer the tracker names that never sends a byte:
// the peer is a source, so the download waits, but not past corruptDeadline
// after the bad piece, and then it is refused as corrupt.
func TestCorruptWebSeedAndASilentPeer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	bad := t.TempDir()
	tor := writePackage(t, bad, "i-1-any.tpkg", randomBytes(455, 12))
	silent, _ := silentPeer(t, tor)
	var served atomic.Bool
	corrupt := webSeed(t, bad, true)
	relay := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, corrupt+r.URL.Path[len("/packages/"):], http.StatusFound)
		served.Store(true)
	}))
	t.Cleanup(relay.Close)
	spec := specOf(tor, relay.URL+"/packages/")
	spec.Trackers = []string{lateTracker(t, silent, served.Load)}
	c := newTestPeer(t)
	_, err := c.Download(ctx, spec, func(Progress) {})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt web seed and a silent peer: %v", err)
	}
	t.Log(err)
}
