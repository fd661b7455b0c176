package actors

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"tpm/engine"
	"tpm/index"
	"tpm/messages"
	"tpm/messages/wire"
	"tpm/query"
	"tpm/store"
)

// Bounds of what the installer takes on: queries answered at once (each on
// a goroutine, reading the database), and of them for one uid, so that
// another user's query always finds a slot soon; queries and transactions
// waiting. Beyond them a request is answered at once that tpmd is busy.
const (
	maxQueries       = 4
	maxQueriesUID    = 2
	maxQueuedQueries = 256
	maxQueuedJobs    = 64
)

// installerActor owns the engine (the host's state database) and the index
// snapshot it installs from, and a queue of jobs: install, upgrade and
// remove transactions, and the reconciliation of the cache with the
// receipts. One job runs at a time; the next starts when the one that runs
// is done. A transaction is a state machine driven by messages: planned
// (on a goroutine), downloaded (by the swarm actor, in parallel), each
// package applied (on a goroutine, dependencies first, each as soon as it
// and everything before it arrived). A request's actor that stops (the CLI
// went away) cancels the transaction if nothing was installed yet.
// Queries are answered on goroutines of their own, so they are answered
// while a transaction runs.
//
// The engine is opened when the actor starts (on a goroutine: it waits for
// a predecessor's transaction to let go of the database, and recovers what
// a crash left) and closed when it stops, after the package being applied
// is in.
type installerActor struct {
	env            *env
	cfg            HostConfig
	started        time.Time // of the daemon, for status
	swarm, builder *actor.PID
	life           lifetime
	records        store.CacheRecords
	eng            *engine.Engine // nil until open
	// applyDone is closed by the goroutine applying a package once it is
	// done with the engine; nil when none runs. Closing the engine waits
	// for it, so a transaction is never cut off halfway.
	applyDone chan struct{}
	idx       *index.Snapshot
	jobs      []*job // waiting
	cur       *job   // running
	// lastID numbers jobs and builds. It starts from the instance's random
	// token, so a predecessor's late results (downloads, an apply that
	// finished after a restart) never match a job of this instance.
	lastID     uint64
	installing string // what the running transaction applies now, for status
	queries    queryQueue
}

// waitingQuery is a query waiting for the engine or a free slot.
type waitingQuery struct {
	req *wire.Request
	to  *actor.PID
}

// queryQueue holds the queries waiting and counts those running, by uid.
// It takes uids in turn, so a user's flood waits behind itself only.
type queryQueue struct {
	waiting map[int][]waitingQuery
	turn    []int // uids with queries waiting, the next first
	running map[int]int
	queued  int
	total   int // running
}

func (q *queryQueue) push(w waitingQuery) {
	if q.waiting == nil {
		q.waiting = map[int][]waitingQuery{}
	}
	if q.running == nil {
		q.running = map[int]int{}
	}
	uid := w.req.UID
	if len(q.waiting[uid]) == 0 {
		q.turn = append(q.turn, uid)
	}
	q.waiting[uid] = append(q.waiting[uid], w)
	q.queued++
}

// next takes the query to start, if a slot is free for it.
func (q *queryQueue) next() (waitingQuery, bool) {
	if q.total >= maxQueries {
		return waitingQuery{}, false
	}
	for i, uid := range q.turn {
		if q.running[uid] >= maxQueriesUID {
			continue
		}
		w := q.waiting[uid][0]
		q.waiting[uid] = q.waiting[uid][1:]
		q.turn = append(q.turn[:i:i], q.turn[i+1:]...)
		if len(q.waiting[uid]) > 0 {
			q.turn = append(q.turn, uid) // the others go first
		} else {
			delete(q.waiting, uid)
		}
		q.queued--
		q.running[uid]++
		q.total++
		return w, true
	}
	return waitingQuery{}, false
}

func (q *queryQueue) done(uid int) {
	q.total--
	if q.running[uid]--; q.running[uid] <= 0 {
		delete(q.running, uid)
	}
}

// drain empties the queue, passing each waiting query to fn.
func (q *queryQueue) drain(fn func(waitingQuery)) {
	for _, uid := range q.turn {
		for _, w := range q.waiting[uid] {
			fn(w)
		}
	}
	q.waiting, q.turn, q.queued = nil, nil, 0
}

// engineOpened is what the goroutine that opens the engine reports.
type engineOpened struct {
	token uint64
	eng   *engine.Engine
	rec   *engine.Recovery
	err   error
}

// queryDone frees a query slot of the instance with the token.
type queryDone struct {
	token uint64
	uid   int
}

func (a *installerActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		a.life = newLifetime()
		a.lastID = a.life.token
		a.records = store.CacheRecords{Dir: filepath.Join(a.cfg.StateDir, "cache")}
		a.idx = index.Empty()
		ctx.Request(ctx.Parent(), &messages.NeedIndex{})
		// What the cache holds is reconciled with the receipts first: a
		// predecessor may have left records of a transaction it cancelled.
		a.enqueue(ctx, &job{seedsTo: a.swarm})
		a.openEngine(ctx)
	case *actor.Restarting:
		a.shutdown(ctx, "the daemon's installer failed and was restarted; what had not started installing was cancelled: check with tpm list, then run the command again")
	case *actor.Stopping:
		a.shutdown(ctx, "the daemon is stopping; run the command again when it is back")
	case *messages.RestartFailed:
		restartFailed(Installer, msg)
	case *engineOpened:
		a.engineOpened(ctx, msg)
	case *messages.IndexReady:
		a.idx = msg.Index
		a.cfg.Metrics.Index(a.idx.Generation, a.idx.Updated, a.idx.ValidUntil)
		if len(msg.Synced) > 0 {
			res, err := wire.Result(wire.SyncResult{Generation: msg.Index.Generation, Changed: msg.Changed})
			if err != nil {
				res = wire.Failure(err.Error())
			}
			for _, to := range msg.Synced {
				ctx.Send(to, res)
			}
		}
	case *messages.NeedSeeds:
		// One queued or running answers it: its SeedFiles leave after this
		// request came, so they reach the swarm that asked.
		if a.cur != nil && a.cur.seedsTo != nil {
			return
		}
		for _, j := range a.jobs {
			if j.seedsTo != nil {
				return
			}
		}
		a.enqueue(ctx, &job{seedsTo: ctx.Sender()})
	case *wire.Request:
		a.request(ctx, msg)
	case *queryDone:
		if msg.token == a.life.token {
			a.queries.done(msg.uid)
			a.nextQuery(ctx)
		}
	case *actor.Terminated:
		a.requestGone(ctx, msg.Who)
	default:
		a.transaction(ctx, msg)
	}
}

func (a *installerActor) openEngine(ctx actor.Context) {
	life, opts, self, root := a.life, engineOptions(a.cfg), ctx.Self(), ctx.ActorSystem().Root
	log := a.env.log
	a.env.bg.Go(func() {
		for waited := false; ; waited = true {
			eng, rec, err := engine.Open(life.ctx, opts)
			if errors.Is(err, store.ErrLocked) && life.ctx.Err() == nil {
				// A predecessor's transaction still holds the database; it
				// lets go once its current package is in.
				if !waited {
					log.Info("waiting for the transaction that runs to let go of the state database")
				}
				select {
				case <-life.ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
			if err == nil && life.ctx.Err() != nil {
				eng.Close() // the instance that wanted it is gone
				return
			}
			root.Send(self, &engineOpened{token: life.token, eng: eng, rec: rec, err: err})
			return
		}
	})
}

func (a *installerActor) engineOpened(ctx actor.Context, msg *engineOpened) {
	if msg.token != a.life.token {
		if msg.eng != nil {
			msg.eng.Close()
		}
		return
	}
	if msg.err != nil {
		ctx.Send(ctx.Parent(), &messages.Ready{Component: Installer, Err: msg.err})
		return
	}
	a.eng = msg.eng
	countInstalled(a.eng, a.cfg.Prefix, a.cfg.Metrics)
	if rec := msg.rec; rec != nil {
		a.env.log.Warn("finished a transaction that a crash interrupted", "id", rec.ID, "prefix", rec.Prefix,
			"completed", rec.Completed, "rolled_back", rec.RolledBack, "scripts_not_run", rec.ScriptsNotRun)
	}
	ctx.Send(ctx.Parent(), &messages.Ready{Component: Installer})
	a.nextQuery(ctx)
	a.startNext(ctx)
}

// shutdown ends this instance: every waiting request is told why, the
// running transaction's downloads stop, and the engine closes once the
// package being applied (if any) is in.
func (a *installerActor) shutdown(ctx actor.Context, why string) {
	a.life.end()
	a.queries.drain(func(q waitingQuery) { ctx.Send(q.to, wire.Failure(why)) })
	a.queries.running, a.queries.total = nil, 0
	for _, j := range a.jobs {
		if j.to != nil {
			ctx.Send(j.to, wire.Failure(why))
		}
	}
	a.jobs = nil
	if j := a.cur; j != nil {
		if j.to != nil {
			ctx.Send(j.to, wire.Failure(j.partial(errors.New(why)).Error()))
		}
		ctx.Send(a.swarm, &messages.CancelDownloads{Txn: j.id})
		a.cur = nil
	}
	if eng, done := a.eng, a.applyDone; eng != nil {
		a.env.bg.Go(func() {
			if done != nil {
				<-done
			}
			eng.Close()
		})
	}
	a.eng, a.applyDone = nil, nil
}

// request takes a request of the gateway; its sender is the request's actor.
func (a *installerActor) request(ctx actor.Context, req *wire.Request) {
	to := ctx.Sender()
	switch req.Verb {
	case wire.VerbStatus:
		a.status(ctx, to)
	case wire.VerbInstall, wire.VerbUpgrade, wire.VerbRemove:
		if len(a.jobs) >= maxQueuedJobs {
			ctx.Send(to, wire.Failure(fmt.Sprintf("tpmd is busy: %d transactions are waiting; try again later", len(a.jobs))))
			return
		}
		ctx.Watch(to)
		if a.cur != nil {
			ctx.Send(to, &wire.Reply{Type: wire.ReplyLog, Text: "waiting for another transaction to finish"})
		}
		a.enqueue(ctx, &job{req: req, to: to})
	default:
		if a.queries.queued >= maxQueuedQueries {
			ctx.Send(to, wire.Failure(fmt.Sprintf("tpmd is busy: %d requests are waiting; try again in a moment", a.queries.queued)))
			return
		}
		a.queries.push(waitingQuery{req: req, to: to})
		a.nextQuery(ctx)
	}
}

// nextQuery starts waiting queries while slots are free.
func (a *installerActor) nextQuery(ctx actor.Context) {
	for a.eng != nil {
		q, ok := a.queries.next()
		if !ok {
			return
		}
		eng, idx, self, root, def, token := a.eng, a.idx, ctx.Self(), ctx.ActorSystem().Root, a.cfg.Prefix, a.life.token
		log := a.env.log
		a.env.bg.Go(func() {
			defer root.Send(self, &queryDone{token: token, uid: q.req.UID})
			defer func() {
				if p := recover(); p != nil {
					log.Error("query failed", "verb", q.req.Verb, "panic", fmt.Sprint(p))
					root.Send(q.to, wire.Failure(fmt.Sprintf("the daemon failed answering %s (%v); it keeps running — try again", q.req.Verb, p)))
				}
			}()
			final := answer(eng, idx, q.req, def, func(r *wire.Reply) error { return sendPart(root, q.to, r) })
			if final != nil {
				root.Send(q.to, final)
			}
		})
	}
}

// answer is the final reply to a query (nil when the CLI left while parts
// were sent). A plan is shown first; list, files and verify come in parts,
// each sent (and written) before the next is read.
func answer(eng *engine.Engine, idx *index.Snapshot, req *wire.Request, defPrefix string, send func(*wire.Reply) error) *wire.Reply {
	prefix, err := query.Prefix(req, defPrefix)
	if err != nil {
		return wire.Failure(err.Error())
	}
	ok, err := streamed(eng, prefix, req, func(data any) error {
		b, err := json.Marshal(data)
		if err != nil {
			return err
		}
		return send(&wire.Reply{Type: wire.ReplyItems, Data: b})
	})
	switch {
	case errors.Is(err, errGone):
		return nil
	case err != nil:
		return wire.Failure(oneLine(err.Error()))
	case ok:
		return &wire.Reply{Type: wire.ReplyResult}
	}
	data, err := query.Answer(eng, idx, req, prefix)
	if err != nil {
		return wire.Failure(oneLine(err.Error()))
	}
	if p, ok := data.(*wire.PlanResult); ok {
		if err := send(&wire.Reply{Type: wire.ReplyPlan, Plan: p.Plan}); err != nil {
			return nil
		}
	}
	res, err := wire.Result(data)
	if err != nil {
		return wire.Failure(err.Error())
	}
	return res
}

// streamed answers the queries whose results come in parts, passing each
// part to each; ok is false for the other verbs.
func streamed(eng *engine.Engine, prefix string, req *wire.Request, each func(any) error) (ok bool, err error) {
	switch req.Verb {
	case wire.VerbList:
		if len(req.Args) > 0 {
			return true, errors.New("list takes no arguments: tpm list")
		}
		return true, query.ListEach(eng, prefix, func(p []wire.InstalledPackage) error { return each(p) })
	case wire.VerbFiles:
		return true, query.FilesEach(eng, prefix, req.Args, func(p []wire.PackageFile) error { return each(p) })
	case wire.VerbVerify:
		return true, query.VerifyEach(eng, prefix, req.Args, func(p []wire.Problem) error { return each(p) })
	}
	return false, nil
}

// serverStatus is each server's state as the last fetch found it.
func serverStatus(servers []string, states []index.ServerState) []wire.ServerStatus {
	out := make([]wire.ServerStatus, len(servers))
	for i, url := range servers {
		out[i] = wire.ServerStatus{URL: url, State: "unknown"}
	}
	for i, st := range states {
		if i >= len(out) {
			break
		}
		out[i].Generation = st.Generation
		switch {
		case st.Behind:
			out[i].State = "behind"
		case st.Err == "":
			out[i].State = "ok"
		default:
			out[i].State, out[i].Error = "down", st.Err
		}
	}
	return out
}

// status answers at once from what the installer holds, with the swarm's
// figures when the swarm answers within a second.
func (a *installerActor) status(ctx actor.Context, to *actor.PID) {
	now := time.Now()
	st := wire.Status{
		PID: os.Getpid(), UptimeSeconds: now.Sub(a.started).Seconds(), Server: a.cfg.Servers[0], Servers: serverStatus(a.cfg.Servers, a.idx.Servers),
		IndexGeneration: a.idx.Generation, IndexPackages: len(a.idx.Entries), Installing: a.installing, Queued: len(a.jobs),
	}
	if !a.idx.Updated.IsZero() {
		st.IndexAgeSeconds = now.Sub(a.idx.Updated).Seconds()
	}
	if !a.idx.ValidUntil.IsZero() {
		st.IndexValidUntil = a.idx.ValidUntil.UTC()
		st.IndexExpired = a.idx.Expired(now)
	}
	if !a.idx.Fetched.IsZero() {
		st.IndexFetchedSecs = now.Sub(a.idx.Fetched).Seconds()
	}
	f := ctx.RequestFuture(a.swarm, &messages.SwarmStatusRequest{}, time.Second)
	ctx.ReenterAfter(f, func(res any, err error) {
		if sw, ok := res.(*messages.SwarmStatus); ok && err == nil {
			st.TorrentPort, st.Seeding, st.Peers, st.BytesUp, st.BytesDown = sw.Port, sw.Seeding, sw.Peers, sw.BytesUp, sw.BytesDown
		}
		reply, err := wire.Result(st)
		if err != nil {
			reply = wire.Failure(err.Error())
		}
		ctx.Send(to, reply)
	})
}

// reseed reconciles the cache records with the receipts (on a goroutine):
// every cache file a receipt references is to be seeded; records and files
// that none does (a transaction that never committed, a package removed
// while the daemon was down) are deleted.
func reseed(eng *engine.Engine, records store.CacheRecords, cacheDir string) (add, remove []messages.SeedFile, err error) {
	recs, rerr := records.All()
	var receipts []*store.Receipt
	if err := eng.State().View(func(tx *store.StateTx) error {
		var err error
		receipts, err = tx.AllReceipts()
		return err
	}); err != nil {
		return nil, nil, err
	}
	have := map[string]bool{}
	for _, r := range receipts {
		have[r.Name+"\x00"+r.Version] = true
	}
	for _, r := range recs {
		f, ferr := seedFileOf(r)
		if !have[r.Name+"\x00"+r.Version] || ferr != nil {
			if ferr == nil {
				remove = append(remove, f)
			} else {
				os.Remove(filepath.Join(cacheDir, r.File))
			}
			records.Delete(r.File)
			continue
		}
		add = append(add, f)
	}
	return add, remove, rerr
}

// dropCache lists the cache files of name's version to stop seeding and
// delete, and deletes their records, unless a prefix still has that
// version installed.
func dropCache(eng *engine.Engine, records store.CacheRecords, name, version string) []messages.SeedFile {
	var still bool
	err := eng.State().View(func(tx *store.StateTx) error {
		rs, err := tx.AllReceipts()
		for _, r := range rs {
			still = still || (r.Name == name && r.Version == version)
		}
		return err
	})
	if still || err != nil {
		return nil // when in doubt the file stays; the next start reconciles
	}
	recs, _ := records.All()
	var drop []messages.SeedFile
	for _, r := range recs {
		if r.Name == name && r.Version == version {
			if f, err := seedFileOf(r); err == nil {
				drop = append(drop, f)
			}
			records.Delete(r.File)
		}
	}
	sort.Slice(drop, func(i, j int) bool { return drop[i].File < drop[j].File })
	return drop
}

func seedFileOf(r *store.CacheRecord) (messages.SeedFile, error) {
	f := messages.SeedFile{File: r.File, InfoBytes: r.InfoBytes, SHA256: r.SHA256, Size: r.Size}
	b, err := hex.DecodeString(r.InfoHash)
	if err != nil || len(b) != 20 {
		return f, fmt.Errorf("cache record %s: bad infohash", r.File)
	}
	copy(f.InfoHash[:], b)
	return f, nil
}

func seedFileOfEntry(e *store.CatalogEntry) messages.SeedFile {
	f := messages.SeedFile{File: e.File, InfoBytes: e.InfoBytes, SHA256: e.SHA256, Size: e.Size}
	b, _ := hex.DecodeString(e.InfoHash) // checked when the index was loaded
	copy(f.InfoHash[:], b)
	return f
}
