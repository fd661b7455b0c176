package actors

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/asynkron/protoactor-go/actor"

	"tpm/messages"
	"tpm/store"
	"tpm/swarm"
)

// swarmActor owns the host's torrent client: it seeds every installed
// package's cache file (on start, those the receipts reference; the rest
// are deleted) and runs downloads, each on a goroutine, in parallel.
type swarmActor struct {
	c      *Client
	client *swarm.Client
}

func (a *swarmActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		err := a.open(ctx)
		if a.c.markStarted(Swarm) {
			a.c.ready <- readyMsg{Swarm, err}
		} else if err != nil {
			panic(fmt.Errorf("swarm: %w", err))
		}
	case *actor.Stopping, *actor.Restarting:
		a.close()
	case *messages.SwarmReady:
		if msg.Err != nil {
			a.c.log.Warn("seeding the cache", "err", msg.Err)
		}
		a.c.log.Info("seeding", "packages", msg.Seeded, "removed_from_cache", msg.Removed)
	case *messages.Download:
		a.download(msg)
	case *messages.SeedFiles:
		if a.client == nil {
			return
		}
		for _, f := range msg.Add {
			if err := a.client.Seed(a.c.spec(f)); err != nil {
				a.c.log.Warn("seeding", "file", f.File, "err", err)
			}
		}
		for _, f := range msg.Remove {
			if err := a.client.Remove(a.c.spec(f)); err != nil {
				a.c.log.Warn("dropping from the cache", "file", f.File, "err", err)
			}
		}
	case *messages.Crash:
		panic("swarm: " + msg.Reason)
	}
}

// spec is the torrent of a file as this host finds its swarm: the
// repository's tracker, and its web seed as the fallback.
func (c *Client) spec(f messages.SeedFile) swarm.Spec {
	base := strings.TrimRight(c.cfg.Server, "/")
	return swarm.Spec{File: f.File, InfoHash: f.InfoHash, InfoBytes: f.InfoBytes, SHA256: f.SHA256, Size: f.Size,
		Trackers: []string{base + "/announce"}, WebSeeds: []string{base + "/packages/"}}
}

func (a *swarmActor) open(ctx actor.Context) error {
	cfg := a.c.cfg
	a.c.taMu.Lock()
	addr := a.c.torrentAddr
	a.c.taMu.Unlock()
	cl, err := swarm.NewClient(swarm.ClientConfig{
		CacheDir: cfg.CacheDir, StateDir: cfg.StateDir, ListenAddr: addr,
		NoWebSeeds: cfg.NoWebSeeds, Logger: a.c.quiet, StallTimeout: cfg.StallTimeout,
	})
	if err != nil {
		return err
	}
	a.client = cl
	a.c.swarm.Store(cl)
	// Take the port we got for good, so a restart and peers that know us
	// keep it.
	a.c.taMu.Lock()
	a.c.torrentAddr = withPort(addr, cl.Port())
	a.c.taMu.Unlock()
	self, root := ctx.Self(), ctx.ActorSystem().Root
	a.c.goBG(func() {
		seeded, removed, err := a.c.seedCache(cl)
		root.Send(self, &messages.SwarmReady{Seeded: seeded, Removed: removed, Err: err})
	})
	return nil
}

func (a *swarmActor) close() {
	if a.client != nil {
		a.c.swarm.Store(nil)
		if err := a.client.Close(); err != nil {
			a.c.log.Warn("closing the torrent client", "err", err)
		}
		a.client = nil
	}
}

func (a *swarmActor) download(msg *messages.Download) {
	if a.client == nil {
		msg.Done <- messages.DownloadResult{File: msg.File, Err: errors.New("the torrent client is not running")}
		return
	}
	cl, spec := a.client, a.c.spec(messages.SeedFile{File: msg.File, InfoHash: msg.InfoHash, InfoBytes: msg.InfoBytes, SHA256: msg.SHA256, Size: msg.Size})
	a.c.goBG(func() {
		path, err := cl.Download(msg.Ctx, spec, func(p swarm.Progress) {
			if msg.Progress != nil {
				msg.Progress(p.Bytes, p.Total, p.Rate, p.Peers)
			}
		})
		msg.Done <- messages.DownloadResult{File: msg.File, Path: path, Err: err}
	})
}

// seedCache seeds each cache file that a receipt references and deletes
// records and files that none does (a transaction that never committed, a
// package removed while the daemon was down).
func (c *Client) seedCache(cl *swarm.Client) (seeded, removed int, err error) {
	// A transaction records its files before it installs them: reconcile
	// only while none runs.
	c.txMu.Lock()
	defer c.txMu.Unlock()
	recs, rerr := c.records.All()
	var receipts []*store.Receipt
	if err := c.engine.DB().View(func(tx *store.Tx) error {
		var err error
		receipts, err = tx.AllReceipts()
		return err
	}); err != nil {
		return 0, 0, err
	}
	have := map[string]bool{}
	for _, r := range receipts {
		have[r.Name+"\x00"+r.Version] = true
	}
	var errs []error
	if rerr != nil {
		errs = append(errs, rerr)
	}
	for _, r := range recs {
		f, ferr := seedFileOf(r)
		if !have[r.Name+"\x00"+r.Version] || ferr != nil {
			if ferr == nil {
				cl.Remove(c.spec(f))
			} else {
				os.Remove(cl.Path(r.File))
			}
			c.records.Delete(r.File)
			removed++
			continue
		}
		if err := cl.Seed(c.spec(f)); err != nil {
			errs = append(errs, err)
			continue
		}
		seeded++
	}
	return seeded, removed, errors.Join(errs...)
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
