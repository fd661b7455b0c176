package actors

// Tests of the host's actors one at a time, driven by messages alone: no
// FIFOs, no network (the syncer's repository is an HTTP handler on
// loopback). Probe actors stand in for the neighbours of the actor under
// test: its supervisor, the swarm, the requests' actors.

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"tpm/index"
	"tpm/index/indextest"
	"tpm/messages"
	"tpm/messages/wire"
	"tpm/repo/repotest"
)

// probe passes every message it gets to got, after answer (when set) had a
// chance to respond to it. As a parent it spawns child (when set) at start.
type probe struct {
	got    chan any
	answer func(ctx actor.Context)
	child  *actor.Props
	name   string
}

func (p *probe) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *actor.Started:
		if p.child != nil {
			if _, err := ctx.SpawnNamed(p.child, p.name); err != nil {
				panic(err)
			}
		}
		return
	case *actor.Stopping, *actor.Stopped, *actor.Restarting, *actor.Terminated:
		return
	case *messages.Part: // as a request's actor takes a part of a long result
		ctx.Respond(&messages.PartWritten{})
		p.got <- ctx.Message().(*messages.Part).Reply
		return
	}
	if p.answer != nil {
		p.answer(ctx)
	}
	p.got <- ctx.Message()
}

// probes is an actor system for one test with the probes it made.
type probes struct {
	t      *testing.T
	system *actor.ActorSystem
	env    *env
	top    []*actor.PID // stopped (with their children) when the test ends
}

func newProbes(t *testing.T) *probes {
	logs := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := newEnv(logs)
	e.middleware = []actor.ReceiverMiddleware{crashes}
	p := &probes{t: t, system: e.newSystem(), env: e}
	t.Cleanup(func() {
		for _, pid := range p.top {
			p.system.Root.StopFuture(pid).Wait()
		}
		e.bg.Wait()
		p.system.Shutdown()
	})
	return p
}

// spawn makes a probe; answer may be nil.
func (p *probes) spawn(answer func(ctx actor.Context)) (*actor.PID, chan any) {
	got := make(chan any, 1000)
	pid := p.system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &probe{got: got, answer: answer} }))
	p.top = append(p.top, pid)
	return pid, got
}

// parent makes a probe that is the supervisor of the actor mk makes (named
// name, with the tree's restart strategy and the test's crash middleware),
// and returns the child's PID.
func (p *probes) parent(name string, answer func(ctx actor.Context), mk func() actor.Actor) (*actor.PID, chan any) {
	got := make(chan any, 1000)
	child := actor.PropsFromProducer(mk, actor.WithReceiverMiddleware(p.env.middleware...))
	t := newTree(p.env, treeConfig{})
	parent := p.system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return &probe{got: got, answer: answer, child: child, name: name}
	}, actor.WithSupervisor(t.strategy())))
	p.top = append(p.top, parent)
	return p.system.NewLocalPID(parent.Id + "/" + name), got
}

// await returns the first message on got for which match is true, failing
// the test after 20 s; the others are dropped.
func await[T any](t *testing.T, got chan any, what string, match func(T) bool) T {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case m := <-got:
			if v, ok := m.(T); ok && (match == nil || match(v)) {
				return v
			}
		case <-deadline:
			var zero T
			t.Fatalf("timed out waiting for %s", what)
			return zero
		}
	}
}

// final is a request probe's final reply.
// listed gathers the parts of a list's answer until its end.
func listed(t *testing.T, got chan any) []wire.InstalledPackage {
	t.Helper()
	var out []wire.InstalledPackage
	for {
		r := await[*wire.Reply](t, got, "a part of a list", nil)
		switch r.Type {
		case wire.ReplyItems:
			var part []wire.InstalledPackage
			if err := json.Unmarshal(r.Data, &part); err != nil {
				t.Fatal(err)
			}
			out = append(out, part...)
		case wire.ReplyResult:
			return out
		case wire.ReplyError:
			t.Fatalf("list: %s", r.Error)
		}
	}
}

func finalReply(t *testing.T, got chan any) *wire.Reply {
	t.Helper()
	return await(t, got, "a final reply", func(r *wire.Reply) bool { return r.Final() })
}

// testRepo is a package folder and the index a server would sign for it.
type testRepo = indextest.Repo

func newTestRepo(t *testing.T, pkgs ...repotest.Package) *testRepo { return indextest.New(t, pkgs...) }

func newTestRepoIn(t *testing.T, dir string, pkgs ...repotest.Package) *testRepo {
	return indextest.In(t, dir, pkgs...)
}

// installerUnderTest is an installer with probes around it.
type installerUnderTest struct {
	*probes
	pid       *actor.PID
	parentGot chan any
	swarmGot  chan any
	cfg       HostConfig
	repoDir   string
	// hold, while true, keeps the swarm probe from answering downloads;
	// they go to held instead, as *heldDownload.
	hold atomic.Bool
	held chan any
}

type heldDownload struct {
	msg  *messages.Download
	from *actor.PID
}

func startInstaller(t *testing.T, r *testRepo) *installerUnderTest {
	u := &installerUnderTest{probes: newProbes(t), held: make(chan any, 100), repoDir: r.Dir}
	u.cfg = HostConfig{StateDir: t.TempDir(), CacheDir: t.TempDir(), Prefix: t.TempDir(), Servers: []string{"http://127.0.0.1:1"}, BuildRoot: buildRoot(t)}
	// The swarm: a Download is answered by copying the package from the
	// repository into the cache, as a finished download leaves it.
	var swarmPID *actor.PID
	swarmPID, u.swarmGot = u.spawn(func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *messages.Download:
			if u.hold.Load() {
				u.held <- &heldDownload{msg: m, from: ctx.Sender()}
				return
			}
			ctx.Respond(u.download(m))
		case *messages.SwarmStatusRequest:
			ctx.Respond(&messages.SwarmStatus{Port: 1})
		}
	})
	builderPID, _ := u.spawn(nil)
	u.pid, u.parentGot = u.parent(Installer, func(ctx actor.Context) {
		if _, ok := ctx.Message().(*messages.NeedIndex); ok {
			ctx.Respond(&messages.IndexReady{Index: r.Snapshot})
		}
	}, func() actor.Actor {
		return &installerActor{env: u.env, cfg: u.cfg, started: time.Now(), swarm: swarmPID, builder: builderPID}
	})
	await(t, u.parentGot, "the installer ready", func(r *messages.Ready) bool { return r.Component == Installer && r.Err == nil })
	return u
}

func (u *installerUnderTest) download(m *messages.Download) *messages.DownloadDone {
	src, err := os.ReadFile(filepath.Join(u.repoDir, m.File))
	dst := filepath.Join(u.cfg.CacheDir, m.File)
	if err == nil {
		err = os.WriteFile(dst, src, 0o644)
	}
	return &messages.DownloadDone{Txn: m.Txn, File: m.File, Path: dst, Err: err}
}

// nextHeld waits for a download the swarm probe holds.
func (u *installerUnderTest) nextHeld(t *testing.T) *heldDownload {
	t.Helper()
	return await[*heldDownload](t, u.held, "a held download", nil)
}

// finish answers a held download as a finished one.
func (u *installerUnderTest) finish(h *heldDownload) {
	u.system.Root.Send(h.from, u.download(h.msg))
}

// ask sends req to the installer as a request's actor would and returns
// that actor (a probe) and what it gets.
func (u *installerUnderTest) ask(verb string, args ...string) (*actor.PID, chan any) {
	pid, got := u.spawn(nil)
	req := &wire.Request{V: wire.ProtocolVersion, ID: "t", Verb: verb, Args: args}
	u.system.Root.RequestWithCustomSender(u.pid, req, pid)
	return pid, got
}

func decode[T any](t *testing.T, r *wire.Reply) T {
	t.Helper()
	var v T
	if r.Type != wire.ReplyResult {
		t.Fatalf("%s: %s", r.Type, r.Error)
	}
	if err := json.Unmarshal(r.Data, &v); err != nil {
		t.Fatalf("result %s: %v", r.Data, err)
	}
	return v
}

func twoPackages(t *testing.T) *testRepo {
	return newTestRepo(t,
		repotest.Package{Name: "a", Version: "1", PayloadBytes: 100, Seed: 1},
		repotest.Package{Name: "b", Version: "1", PayloadBytes: 100, Seed: 2, Deps: []string{"a"}})
}

// Transactions run one at a time, in the order they came; a query is
// answered while one runs.
func TestInstallerQueuesTransactions(t *testing.T) {
	r := twoPackages(t)
	u := startInstaller(t, r)
	u.hold.Store(true)
	_, first := u.ask(wire.VerbInstall, "a")
	h := u.nextHeld(t)
	_, second := u.ask(wire.VerbInstall, "b")
	if r := await(t, second, "the second to wait", func(r *wire.Reply) bool { return r.Type == wire.ReplyLog }); r.Text != "waiting for another transaction to finish" {
		t.Fatalf("second request: %+v", r)
	}
	_, query := u.ask(wire.VerbList)
	if list := listed(t, query); len(list) != 0 {
		t.Fatalf("list during the first transaction: %+v", list)
	}
	select {
	case h2 := <-u.held:
		t.Fatalf("the second transaction downloaded %s while the first ran", h2.(*heldDownload).msg.File)
	default:
	}
	u.finish(h)
	if res := decode[[]wire.OpResult](t, finalReply(t, first)); len(res) != 1 || res[0].Name != "a" {
		t.Fatalf("first: %+v", res)
	}
	u.finish(u.nextHeld(t))
	if res := decode[[]wire.OpResult](t, finalReply(t, second)); len(res) != 1 || res[0].Name != "b" || res[0].Action != "install" {
		t.Fatalf("second: %+v", res)
	}
}

// Packages that do not depend on each other are installed as their
// downloads end, and one that depends on another waits for it: the last
// download is followed by one install, not by all of them.
func TestInstallerAppliesAsDownloadsEnd(t *testing.T) {
	r := newTestRepo(t,
		repotest.Package{Name: "a", Version: "1", PayloadBytes: 100, Seed: 1},
		repotest.Package{Name: "b", Version: "1", PayloadBytes: 100, Seed: 2, Deps: []string{"a"}},
		repotest.Package{Name: "c", Version: "1", PayloadBytes: 100, Seed: 3})
	u := startInstaller(t, r)
	u.hold.Store(true)
	_, cli := u.ask(wire.VerbInstall, "b", "c")
	held := map[string]*heldDownload{}
	for range 3 {
		h := u.nextHeld(t)
		held[h.msg.File[:1]] = h
	}
	u.finish(held["c"])
	await(t, cli, "c installed while a and b download", func(r *wire.Reply) bool {
		return r.Type == wire.ReplyProgress && r.Progress.Stage == wire.StageDone && r.Progress.Package == "c"
	})
	u.finish(held["b"]) // before a, which it depends on
	u.finish(held["a"])
	// b waits for a, and then both are here: they go in together, in one
	// transaction (both start before either is done).
	var stages []string
	final := await(t, cli, "the final reply", func(r *wire.Reply) bool {
		if p := r.Progress; r.Type == wire.ReplyProgress && (p.Stage == wire.StageInstall || p.Stage == wire.StageDone) {
			stages = append(stages, p.Package+" "+p.Stage)
		}
		return r.Final()
	})
	if got := strings.Join(stages, ", "); got != "a install, b install, a done, b done" {
		t.Errorf("a and b went in as %q, want one transaction", got)
	}
	var order []string
	for _, res := range decode[[]wire.OpResult](t, final) {
		order = append(order, res.Name)
	}
	if strings.Join(order, " ") != "c a b" {
		t.Fatalf("installed in the order %v, want c a b", order)
	}
}

// A CLI that leaves before anything was installed cancels its transaction:
// its downloads stop, what it recorded in the cache goes, the next one runs.
func TestInstallerCancelsWhenTheCLILeaves(t *testing.T) {
	r := twoPackages(t)
	u := startInstaller(t, r)
	u.hold.Store(true)
	cli, _ := u.ask(wire.VerbInstall, "b")
	held := []*heldDownload{u.nextHeld(t), u.nextHeld(t)}
	recorded, _ := os.ReadDir(filepath.Join(u.cfg.StateDir, "cache"))
	if len(recorded) != 2 {
		t.Fatalf("cache records before the download: %v", recorded)
	}
	u.system.Root.Stop(cli)
	await(t, u.swarmGot, "the downloads cancelled", func(c *messages.CancelDownloads) bool { return c.Txn == held[0].msg.Txn })
	if drop := await(t, u.swarmGot, "the cache dropped", func(s *messages.SeedFiles) bool { return !s.Reset && len(s.Remove) > 0 }); len(drop.Remove) != 2 {
		t.Fatalf("dropped from the cache: %+v", drop.Remove)
	}
	if recorded, _ := os.ReadDir(filepath.Join(u.cfg.StateDir, "cache")); len(recorded) != 0 {
		t.Fatalf("cache records after the cancel: %v", recorded)
	}
	// The swarm still ends each download; the installer ignores them.
	for _, h := range held {
		u.finish(h)
	}
	u.hold.Store(false)
	_, next := u.ask(wire.VerbInstall, "a")
	if res := decode[[]wire.OpResult](t, finalReply(t, next)); len(res) != 1 || res[0].Name != "a" {
		t.Fatalf("the next transaction: %+v", res)
	}
	_, q := u.ask(wire.VerbList)
	if list := listed(t, q); len(list) != 1 || list[0].Name != "a" {
		t.Fatalf("installed: %+v", list)
	}
}

// An installer that fails is restarted: the request it ran is told, the
// downloads stop, and the new instance rebuilds from disk: it reopens the
// database, asks for the index again and reconciles the cache (the
// cancelled transaction's records go).
func TestInstallerRestartRebuildsFromDisk(t *testing.T) {
	r := twoPackages(t)
	u := startInstaller(t, r)
	first := await(t, u.swarmGot, "the first reconciliation", func(s *messages.SeedFiles) bool { return s.Reset })
	if len(first.Add)+len(first.Remove) != 0 {
		t.Fatalf("reconciliation of an empty cache: %+v", first)
	}
	u.hold.Store(true)
	_, cli := u.ask(wire.VerbInstall, "a")
	h := u.nextHeld(t)
	u.system.Root.Send(u.pid, &crash{})
	if r := finalReply(t, cli); r.Type != wire.ReplyError || !strings.Contains(r.Error, "installer failed and was restarted") {
		t.Fatalf("the request after the crash: %+v", r)
	}
	await(t, u.swarmGot, "the downloads cancelled", func(c *messages.CancelDownloads) bool { return c.Txn == h.msg.Txn })
	await(t, u.parentGot, "the restarted installer ready", func(r *messages.Ready) bool { return r.Component == Installer && r.Err == nil })
	again := await(t, u.swarmGot, "the reconciliation after the restart", func(s *messages.SeedFiles) bool { return s.Reset })
	if len(again.Remove) != 1 || again.Remove[0].File != h.msg.File || len(again.Add) != 0 {
		t.Fatalf("reconciliation after the restart: %+v", again)
	}
	u.finish(h) // the old download ends; nobody waits for it
	u.hold.Store(false)
	_, next := u.ask(wire.VerbInstall, "b")
	if res := decode[[]wire.OpResult](t, finalReply(t, next)); len(res) != 2 {
		t.Fatalf("install after the restart: %+v", res)
	}
}

// Waiting transactions are bounded: one more is refused with a busy error.
func TestInstallerBoundsItsQueue(t *testing.T) {
	r := twoPackages(t)
	u := startInstaller(t, r)
	u.hold.Store(true)
	u.ask(wire.VerbInstall, "a")
	u.nextHeld(t)
	for range maxQueuedJobs {
		u.ask(wire.VerbInstall, "b")
	}
	_, extra := u.ask(wire.VerbInstall, "b")
	if r := finalReply(t, extra); r.Type != wire.ReplyError || !strings.Contains(r.Error, "tpmd is busy") {
		t.Fatalf("one transaction too many: %+v", r)
	}
	_, status := u.ask(wire.VerbStatus)
	if st := decode[wire.Status](t, finalReply(t, status)); st.Queued != maxQueuedJobs || st.IndexPackages != 2 || st.TorrentPort != 1 {
		t.Fatalf("status: %+v", st)
	}
}

// gatedRepo serves a repository's signed index over loopback HTTP, each
// /index.db only when the test lets one through gate.
type gatedRepo struct {
	url     string
	gate    chan struct{}
	fetches atomic.Int32
}

func serveGated(t *testing.T, r *testRepo) *gatedRepo {
	g := &gatedRepo{gate: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch req.URL.Path {
		case "/index.db":
			g.fetches.Add(1)
			select {
			case <-g.gate:
			case <-req.Context().Done():
				return
			}
			if req.Header.Get("If-None-Match") == r.Generation.IndexETag {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			w.Header().Set("ETag", r.Generation.IndexETag)
			index, _ := r.Generation.Index.Bytes()
			w.Write(index)
		case "/index.db.sig":
			w.Write(r.Generation.IndexSig)
		default:
			http.NotFound(w, req)
		}
	}))
	t.Cleanup(srv.Close)
	g.url = srv.URL
	return g
}

func startSyncer(t *testing.T, p *probes, r *testRepo, g *gatedRepo, state string) (*actor.PID, chan any) {
	return p.parent(Syncer, nil, func() actor.Actor {
		return &syncerActor{env: p.env, keeper: index.New([]string{g.url}, r.Public, state), interval: time.Hour}
	})
}

// Syncs asked for while a fetch runs wait for one more fetch, which starts
// when the running one ends and answers them all.
func TestSyncerFoldsSyncsIntoOneFetch(t *testing.T) {
	r := twoPackages(t)
	g := serveGated(t, r)
	p := newProbes(t)
	pid, parentGot := startSyncer(t, p, r, g, t.TempDir())
	first := await(t, parentGot, "the first (empty) index", func(m *messages.IndexReady) bool { return true })
	if first.Index.Generation != 0 {
		t.Fatalf("a host without a kept index starts from generation %d", first.Index.Generation)
	}
	for g.fetches.Load() == 0 {
		time.Sleep(time.Millisecond) // the first fetch waits at the gate
	}
	var clis []*actor.PID
	for range 3 {
		cli, _ := p.spawn(nil)
		p.system.Root.RequestWithCustomSender(pid, &messages.SyncNow{}, cli)
		clis = append(clis, cli)
	}
	g.gate <- struct{}{}
	if idx := await(t, parentGot, "the fetched index", func(m *messages.IndexReady) bool { return m.Index.Generation == 1 }); idx.Index.Len() != 2 || len(idx.Synced) != 0 {
		t.Fatalf("fetched index: %d packages, answering %d syncs", idx.Index.Len(), len(idx.Synced))
	}
	await(t, parentGot, "the syncer ready", func(m *messages.Ready) bool { return m.Component == Syncer })
	g.gate <- struct{}{} // the one fetch for the three syncs
	// The installer answers them once it has the index the fetch brought.
	again := await(t, parentGot, "the index that answers the syncs", func(m *messages.IndexReady) bool { return len(m.Synced) > 0 })
	if len(again.Synced) != 3 || again.Changed || again.Index.Generation != 1 {
		t.Fatalf("second fetch: %d syncs, changed %v, generation %d", len(again.Synced), again.Changed, again.Index.Generation)
	}
	for i, cli := range clis {
		if !again.Synced[i].Equal(cli) {
			t.Fatalf("sync %d answered to %v, want %v", i, again.Synced[i], cli)
		}
	}
	if n := g.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches for a start and three syncs asked during it, want 2", n)
	}
}

// A host with a kept index answers from it at once: the syncer is ready
// before its first fetch returns.
func TestSyncerReadyFromTheKeptIndex(t *testing.T) {
	r := twoPackages(t)
	g := serveGated(t, r)
	p := newProbes(t)
	_, parentGot := startSyncer(t, p, r, g, r.StateDir)
	if idx := await(t, parentGot, "the kept index", func(m *messages.IndexReady) bool { return true }); idx.Index.Generation != 1 {
		t.Fatalf("kept index: generation %d", idx.Index.Generation)
	}
	await(t, parentGot, "the syncer ready", func(m *messages.Ready) bool { return m.Component == Syncer })
	if n := g.fetches.Load(); n > 1 {
		t.Fatalf("%d fetches", n)
	}
	close(g.gate)
}

// An upgrade whose new version needs a package that is not installed
// installs that package too (the plan says install for it, upgrade for the
// other), and keeps the upgraded package's reason.
func TestInstallerUpgradePullsANewDependency(t *testing.T) {
	r := newTestRepo(t, repotest.Package{Name: "tool", Version: "1.0", PayloadBytes: 100, Seed: 1})
	u := startInstaller(t, r)
	_, cli := u.ask(wire.VerbInstall, "tool")
	decode[[]wire.OpResult](t, finalReply(t, cli))
	r2 := newTestRepoIn(t, r.Dir,
		repotest.Package{Name: "tool", Version: "2.0", PayloadBytes: 100, Seed: 2, Deps: []string{"newdep"}},
		repotest.Package{Name: "newdep", Version: "1", PayloadBytes: 100, Seed: 3})
	u.system.Root.Send(u.pid, &messages.IndexReady{Index: r2.Snapshot})
	_, up := u.ask(wire.VerbUpgrade)
	res := decode[[]wire.OpResult](t, finalReply(t, up))
	if len(res) != 2 || res[0].Name != "newdep" || res[0].Action != "install" || res[1].Name != "tool" || res[1].Action != "upgrade" {
		t.Fatalf("upgrade: %+v", res)
	}
	_, q := u.ask(wire.VerbList)
	for _, p := range listed(t, q) {
		if want := map[string]string{"tool": "explicit", "newdep": "dependency"}[p.Name]; p.Reason != want {
			t.Errorf("%s %s: reason %s, want %s", p.Name, p.Version, p.Reason, want)
		}
	}
}

// The installer answers the syncs a fetch brought once it has that index:
// what a CLI asks after "tpm sync" said generation N sees generation N.
func TestInstallerAnswersSyncsWithItsIndex(t *testing.T) {
	r := newTestRepo(t, repotest.Package{Name: "a", Version: "1", PayloadBytes: 100, Seed: 1})
	u := startInstaller(t, r)
	r2 := newTestRepoIn(t, r.Dir, repotest.Package{Name: "fresh", Version: "1", PayloadBytes: 100, Seed: 2})
	cli, got := u.spawn(nil)
	u.system.Root.Send(u.pid, &messages.IndexReady{Index: r2.Snapshot, Synced: []*actor.PID{cli}, Changed: true})
	if res := decode[wire.SyncResult](t, finalReply(t, got)); !res.Changed || res.Generation != r2.Snapshot.Generation {
		t.Fatalf("sync: %+v", res)
	}
	_, info := u.ask(wire.VerbInfo, "fresh")
	if p := decode[wire.PackageInfo](t, finalReply(t, info)); p.Name != "fresh" {
		t.Fatalf("info after the sync: %+v", p)
	}
}
