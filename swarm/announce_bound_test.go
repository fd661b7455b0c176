package swarm

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// TestDownloadsBoundTheirAnnounces: a transaction of many packages must
// not open a connection to the tracker per package at once. The
// repository caps connections per address (128) and refused the rest, and
// those downloads waited seconds for their next announce. The tracker here
// holds each announce until more than maxAnnouncing are in flight (or a
// second passes), so a client that does not bound them is caught.
func TestDownloadsBoundTheirAnnounces(t *testing.T) {
	var mu sync.Mutex
	inFlight, most := 0, 0
	over := make(chan struct{})
	var once sync.Once
	tr := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		if inFlight > maxAnnouncing {
			once.Do(func() { close(over) })
		}
		mu.Unlock()
		select {
		case <-over:
		case <-time.After(time.Second):
		case <-r.Context().Done():
		}
		mu.Lock()
		inFlight--
		mu.Unlock()
		fmt.Fprint(w, "d8:intervali1800e5:peers0:e")
	}))
	t.Cleanup(tr.Close)

	c, err := NewPeer(PeerConfig{CacheDir: t.TempDir(), StateDir: t.TempDir(), ListenAddr: "127.0.0.1:0", StallTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	for i := range 2 * maxAnnouncing {
		tor := writePackage(t, dir, fmt.Sprintf("p%d-1-any.tpkg", i), randomBytes(1000, uint64(i)))
		spec := Spec{File: tor.Name, InfoHash: tor.InfoHash, InfoBytes: tor.InfoBytes, SHA256: tor.SHA256Hex(), Size: tor.Size,
			Trackers: []string{tr.URL + "/announce"}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Download(ctx, spec, func(Progress) {}) // nobody has them: each ends with ctx
		}()
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if most == 0 {
		t.Fatal("no announce reached the tracker")
	}
	if most > maxAnnouncing {
		t.Fatalf("%d announces in flight at once from one client; at most %d", most, maxAnnouncing)
	}
}
