package actors

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"tpm/messages/wire"
	"tpm/repo/repotest"
)

// A host told to run 2 downloads at once runs 2 of a transaction's 4 and
// keeps the others waiting; each download that ends starts the
// next, and the transaction completes. The repository does not seed, so
// every byte comes through a web seed that holds each file until the test
// lets it through: a download can end only when the test says.
func TestDownloadsWaitTheirTurn(t *testing.T) {
	const n, parallel = 4, 2
	var names []string
	gate := newWebSeedGate()
	_, run := startPairOpts(t, pairOptions{parallel: parallel, front: gate.front(t), addPackages: func(dir string) {
		for i := range n {
			name := fmt.Sprintf("turn%d", i)
			names = append(names, name)
			repotest.Make(t, dir, repotest.Package{Name: name, Version: "1", PayloadBytes: 1 << 10, Seed: uint64(10 + i)})
		}
	}})
	t.Cleanup(gate.openAll) // a test that fails leaves no request held
	// Each download's web seed joins about 5 s after it starts (the
	// test's tracker is refused), one wave after the other.
	next := requestFor(t, 2*time.Minute, run, "install", names...)
	for ended := range n {
		running := min(parallel, n-ended)
		awaitTurns(t, run, gate, running, n-ended-running)
		gate.openOne()
	}
	if r := final(t, next); r.Type != wire.ReplyResult {
		t.Fatalf("install: %+v", r)
	}
	if most := gate.mostHeld(); most != parallel {
		t.Fatalf("the web seed held %d files at once, want %d", most, parallel)
	}
}

// A transaction that stops cancels its downloads, those waiting their
// turn too: nothing of it runs or waits afterwards, and the next
// transaction's downloads start at once.
func TestWaitingDownloadsCancelled(t *testing.T) {
	gate := newWebSeedGate()
	names := []string{"turn0", "turn1", "turn2"}
	c, run := startPairOpts(t, pairOptions{parallel: 1, front: gate.front(t), addPackages: func(dir string) {
		for i, name := range names {
			repotest.Make(t, dir, repotest.Package{Name: name, Version: "1", PayloadBytes: 1 << 10, Seed: uint64(10 + i)})
		}
	}})
	t.Cleanup(gate.openAll)
	next := requestFor(t, time.Minute, run, "install", names...)
	awaitTurns(t, run, gate, 1, 2)
	c.InjectCrash(Installer)
	if r := final(t, next); r.Type != wire.ReplyError {
		t.Fatalf("install whose installer failed: %+v", r)
	}
	awaitTurns(t, run, gate, 0, 0)
	gate.openAll()
	if r := final(t, requestFor(t, time.Minute, run, "install", "turn2")); r.Type != wire.ReplyResult {
		t.Fatalf("install after the cancelled one: %+v", r)
	}
}

// awaitTurns waits until the gate holds the requests of running files and
// the host's status counts running downloads and waiting ones.
func awaitTurns(t *testing.T, run string, gate *webSeedGate, running, waiting int) {
	t.Helper()
	var st wire.Status
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		r := final(t, request(t, run, "status"))
		if r.Type != wire.ReplyResult || json.Unmarshal(r.Data, &st) != nil {
			t.Fatalf("status: %+v", r)
		}
		held := gate.heldFiles()
		if len(held) == running && st.Downloading == running && st.DownloadsWaiting == waiting {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("want %d downloads running and %d waiting; the status says %d and %d, the web seed holds %v",
				running, waiting, st.Downloading, st.DownloadsWaiting, held)
		}
	}
}

// webSeedGate is a proxy in front of a repository server that holds each
// web seed request (/packages/FILE) until its file is let through.
type webSeedGate struct {
	mu   sync.Mutex
	held map[string]int           // requests held, by file
	open map[string]chan struct{} // closed once the file is let through
	all  bool                     // every file is let through
	most int                      // the most files held at once
}

func newWebSeedGate() *webSeedGate {
	return &webSeedGate{held: map[string]int{}, open: map[string]chan struct{}{}}
}

// front returns the function that puts the gate in front of a server.
func (g *webSeedGate) front(t *testing.T) func(server string) string {
	return func(server string) string {
		u, err := url.Parse(server)
		if err != nil {
			t.Fatal(err)
		}
		proxy := httputil.NewSingleHostReverseProxy(u)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if file, ok := strings.CutPrefix(r.URL.Path, "/packages/"); ok {
				select {
				case <-g.hold(file):
					g.release(file)
				case <-r.Context().Done():
					g.release(file)
					return
				}
			}
			proxy.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
}

// hold counts a request for file as held and returns what lets it go.
func (g *webSeedGate) hold(file string) <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.held[file]++
	g.most = max(g.most, len(g.held))
	return g.gateOf(file)
}

func (g *webSeedGate) release(file string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held[file]--; g.held[file] <= 0 {
		delete(g.held, file)
	}
}

// gateOf is file's channel; g.mu is held.
func (g *webSeedGate) gateOf(file string) chan struct{} {
	c, ok := g.open[file]
	if !ok {
		c = make(chan struct{})
		g.open[file] = c
		if g.all {
			close(c)
		}
	}
	return c
}

// opened says whether file is let through; g.mu is held.
func (g *webSeedGate) opened(file string) bool {
	select {
	case <-g.gateOf(file):
		return true
	default:
		return false
	}
}

func (g *webSeedGate) heldFiles() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var files []string
	for f := range g.held {
		files = append(files, f)
	}
	sort.Strings(files)
	return files
}

// openOne lets the first held file (by name) through, for good.
func (g *webSeedGate) openOne() {
	g.mu.Lock()
	defer g.mu.Unlock()
	var first string
	for f := range g.held {
		if !g.opened(f) && (first == "" || f < first) {
			first = f
		}
	}
	if first != "" {
		close(g.gateOf(first))
	}
}

// openAll lets every file through, those asked for later too.
func (g *webSeedGate) openAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.all = true
	for f, c := range g.open {
		if !g.opened(f) {
			close(c)
		}
	}
}

func (g *webSeedGate) mostHeld() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.most
}
