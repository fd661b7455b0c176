package actors

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"tpm/generation"
	"tpm/index"
	"tpm/messages"
	"tpm/metrics"
	"tpm/publish"
	"tpm/signing"
	"tpm/swarm"
)

// MirrorConfig is everything tpmd mirror is told.
type MirrorConfig struct {
	// Upstreams are the servers it copies from: the origin, or mirrors.
	Upstreams  []string
	TrustedKey signing.PublicKey
	// StateDir holds the kept index and the piece completion; PackageDir
	// the copied packages, served at /packages/.
	StateDir, PackageDir string
	HTTPAddr             string // "host:port" of the publisher; port 0 picks one
	PublicURL            string // the mirror as hosts reach it
	TorrentAddr          string // "host:port" of its torrent client
	// SyncInterval is the time between two fetches of the upstreams'
	// index (zero: 2 minutes).
	SyncInterval time.Duration
	// NoTracker turns the mirror's own tracker (/announce) off.
	NoTracker bool
	// DHT, when set, runs a DHT node beside the trackers.
	DHT    *swarm.DHTConfig
	Logger *slog.Logger

	MaxRestarts   int
	RestartWindow time.Duration
}

// Copier is the mirror's component that fetches the index and the
// packages.
const Copier = "copier"

// Mirror is a running tpmd mirror: a supervisor ("mirror") with the
// publisher (the same as the server's, serving the verified copy) and the
// copier.
type Mirror struct {
	run       *running
	publisher *publish.Publisher
	closeOnce sync.Once
}

// StartMirror starts the actors and returns once the HTTP and BitTorrent
// listeners are bound. The index answers 503 until every package of the
// first index is in.
func StartMirror(cfg MirrorConfig) (*Mirror, error) {
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = 2 * time.Minute
	}
	e := newEnv(cfg.Logger)
	run := newRunning(e)
	var pub *publish.Publisher
	m := metrics.NewServer(func() metrics.ServerFigures { return pub.Figures() })
	pub, err := publish.New(publish.Config{
		Dir:       cfg.PackageDir,
		NoTracker: cfg.NoTracker,
		// A copied file that changed behind the mirror's back: fetch again
		// (the copier checks every file against the index).
		OnStale:   func(file string) { run.system.EventStream.Publish(&messages.Rescan{Reason: "changed file " + file}) },
		PeersFile: filepath.Join(cfg.StateDir, "tracker-peers.json"),
		Logger:    e.log,
		Metrics:   m.Handler(),
		OnRequest: m.Request,
		PublicURL: cfg.PublicURL,
		PublicKey: cfg.TrustedKey.String(),
		KeyID:     cfg.TrustedKey.ID(),
	})
	if err != nil {
		return nil, err
	}
	mi := &Mirror{run: run, publisher: pub}
	keeper := index.New(cfg.Upstreams, cfg.TrustedKey, cfg.StateDir)
	components := []component{
		{name: Publisher, make: func(map[string]*actor.PID) actor.Actor {
			return &publisherActor{env: e, publisher: pub}
		}},
		{name: Copier, make: func(map[string]*actor.PID) actor.Actor {
			return &copierActor{env: e, cfg: cfg, keeper: keeper}
		}},
	}
	t := newTree(e, treeConfig{name: "mirror", components: components, maxRestarts: cfg.MaxRestarts, restartWindow: cfg.RestartWindow,
		addrs: map[string]string{Publisher: cfg.HTTPAddr, Copier: cfg.TorrentAddr}})
	if err := run.start("mirror", t.strategy(), func() actor.Actor { return &serverSupervisor{tree: t} }, 30*time.Second); err != nil {
		mi.closeAll()
		return nil, err
	}
	return mi, nil
}

// HTTPAddr is the address the publisher listens on.
func (m *Mirror) HTTPAddr() string { return m.run.addrs[Publisher] }

// TorrentAddr is the address the copier's torrent client listens on.
func (m *Mirror) TorrentAddr() string { return m.run.addrs[Copier] }

// Current is the generation being published, or nil before the first
// complete copy.
func (m *Mirror) Current() *generation.Generation { return m.publisher.Current() }

// Sync asks for a fetch of the upstreams' index now (SIGHUP does this).
func (m *Mirror) Sync(reason string) {
	m.run.system.Root.Send(m.run.root, &messages.Rescan{Reason: reason})
}

// Failed delivers the error of a component its supervisor gave up on.
func (m *Mirror) Failed() <-chan error { return m.run.failed }

// Stop stops the actors and waits for background work until ctx ends.
func (m *Mirror) Stop(ctx context.Context) error {
	return errors.Join(m.run.stop(ctx), m.closeAll())
}

func (m *Mirror) closeAll() error {
	var err error
	m.closeOnce.Do(func() { err = m.publisher.Close() })
	return err
}
