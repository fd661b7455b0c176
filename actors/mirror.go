package actors

import (
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"tpm/index"
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
	DHT *swarm.DHTConfig
	// LiveTorrents caps the torrents live at once (zero: 1,000).
	LiveTorrents int
	Logger       *slog.Logger

	MaxRestarts   int
	RestartWindow time.Duration
}

// Copier is the mirror's component that fetches the index and the
// packages.
const Copier = "copier"

// Mirror is a running tpmd mirror: a supervisor ("mirror") with the
// publisher (the same as the server's, serving the verified copy) and the
// copier.
type Mirror struct{ *publishing }

// StartMirror starts the actors and returns once the HTTP and BitTorrent
// listeners are bound. The index answers 503 until every package of the
// first index is in.
func StartMirror(cfg MirrorConfig) (*Mirror, error) {
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = 2 * time.Minute
	}
	keeper := index.New(cfg.Upstreams, cfg.TrustedKey, cfg.StateDir)
	p, err := startPublishing(publishingConfig{
		name: "mirror", seeder: Copier, log: cfg.Logger, stateDir: cfg.StateDir,
		httpAddr: cfg.HTTPAddr, torrentAddr: cfg.TorrentAddr, maxRestarts: cfg.MaxRestarts, restartWindow: cfg.RestartWindow,
		publish: publish.Config{Dir: cfg.PackageDir, NoTracker: cfg.NoTracker, PublicURL: cfg.PublicURL,
			PublicKey: cfg.TrustedKey.String(), KeyID: cfg.TrustedKey.ID()},
		components: func(e *env, _ *metrics.Server) []component {
			return []component{{name: Copier, make: func(map[string]*actor.PID) actor.Actor {
				return &copierActor{env: e, cfg: cfg, keeper: keeper}
			}}}
		},
	})
	if err != nil {
		return nil, err
	}
	return &Mirror{p}, nil
}

// Sync asks for a fetch of the upstreams' index now, and a check of every
// file after it (SIGHUP does this).
func (m *Mirror) Sync(reason string) { m.rescan(reason) }
