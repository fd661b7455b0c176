package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"

	"tpm/actors"
	"tpm/service"
	"tpm/signing"
)

const mirrorUsage = `usage: tpmd mirror --upstream URL [--upstream URL...] [flags]

Keeps a verified copy of a repository and serves it like tpmd server: the
signed index from whichever upstream (the origin, or another mirror) has
the newest valid one, checked as every host checks it (signature, replay,
expiry); every package through the swarm, checked against the signed
sha256, and seeded; the same HTTP API (/index.db and /index.db.sig byte
for byte, /index.json, /packages/, /torrents/ with the same infohashes,
/healthz). An index is published only once all its packages are in.
Hosts trust a mirror no more than the origin: they check it the same way.

Flags may also come from --config FILE (see deploy/mirror.conf.example);
a flag given on the command line wins over the file.

Signals: SIGHUP fetches now and checks every file again; SIGTERM and
SIGINT stop within 5 seconds.

Flags:
`

type mirrorOptions struct {
	config       string
	upstreams    []string
	trustedKey   string
	stateDir     string
	packages     string
	httpAddr     string
	publicURL    string
	torrentAddr  string
	syncInterval time.Duration
	tracker      bool
	pidFile      string
	logLevel     string
	swarm        swarmOptions
}

func mirrorFlags(o *mirrorOptions) *pflag.FlagSet {
	fs := pflag.NewFlagSet("tpmd mirror", pflag.ContinueOnError)
	fs.StringVar(&o.config, "config", "", "read flags from `FILE` (name = value lines)")
	fs.StringArrayVar(&o.upstreams, "upstream", nil, "a `URL` to copy from: the origin's --public-url or another mirror's; repeatable; at least one")
	fs.StringVar(&o.trustedKey, "trusted-key", "/etc/tpm/repo.pub", "the repository's public key `FILE`")
	fs.StringVar(&o.stateDir, "state-dir", "/var/lib/tpm-mirror", "the kept index and piece-completion `DIR`")
	fs.StringVar(&o.packages, "packages", "/srv/tpm/mirror", "`DIR` of the copied packages, served and seeded")
	fs.StringVar(&o.httpAddr, "http", ":8080", "HTTP listen `ADDR`")
	fs.StringVar(&o.publicURL, "public-url", "", "the mirror's `URL` as hosts reach it (default http://HOSTNAME:PORT)")
	fs.StringVar(&o.torrentAddr, "torrent-listen", ":6881", "BitTorrent listen `ADDR`")
	fs.DurationVar(&o.syncInterval, "sync-interval", 2*time.Minute, "time between fetches of the upstreams' index")
	fs.BoolVar(&o.tracker, "tracker", true, "run a tracker at /announce (used when the origin names it with --announce)")
	o.swarm.addFlags(fs, "find peers through the DHT (BEP 5) too, joined through --dht-bootstrap")
	fs.StringVar(&o.pidFile, "pid-file", "", "pid `FILE`, locked while running (default STATE-DIR/tpmd-mirror.pid)")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	addFileIOFlag(fs)
	o.swarm.addMemoryFlag(fs)
	fs.SortFlags = false
	return fs
}

func mirror(args []string) int {
	var o mirrorOptions
	fs := mirrorFlags(&o)
	fs.Usage = func() { fmt.Fprint(os.Stderr, mirrorUsage); fs.PrintDefaults() }
	if code, ok := service.ParseFlags(fs, "tpmd mirror", args, &o.config); !ok {
		return code
	}
	if len(o.upstreams) == 0 {
		fmt.Fprintln(os.Stderr, "tpmd mirror: --upstream URL is required (the origin's tpmd server, or a mirror; repeatable)")
		return 2
	}
	for _, u := range o.upstreams {
		if err := checkURL(u, "http", "https"); err != nil {
			fmt.Fprintf(os.Stderr, "tpmd mirror: --upstream %v\n", err)
			return 2
		}
	}
	if err := o.swarm.check(); err != nil {
		fmt.Fprintf(os.Stderr, "tpmd mirror: %v\n", err)
		return 2
	}
	if o.syncInterval <= 0 {
		fmt.Fprintf(os.Stderr, "tpmd mirror: --sync-interval %v must be positive, like 2m\n", o.syncInterval)
		return 2
	}
	if !guarded(fs, "tpmd mirror", "state-dir", "packages") {
		return 2
	}
	return runRole("tpmd mirror", o.logLevel, func(log *slog.Logger) error { return runMirror(o, log) })
}

func runMirror(o mirrorOptions, log *slog.Logger) error {
	o.swarm.applyMemoryLimit(log)
	if o.publicURL == "" {
		o.publicURL = defaultPublicURL(o.httpAddr)
	}
	if o.pidFile == "" {
		o.pidFile = filepath.Join(o.stateDir, "tpmd-mirror.pid")
	}
	key, err := signing.LoadPublicKey(o.trustedKey)
	if err != nil {
		return fmt.Errorf("%w (--trusted-key: the repository's repo.pub)", err)
	}
	for _, d := range []string{o.stateDir, o.packages} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("mirror directories: %w", err)
		}
	}
	return service.Run(log, service.Role{Name: "tpmd mirror", PidFile: o.pidFile, OnHUP: "SIGHUP: fetching and checking every file",
		Start: func() (service.Daemon, func(), error) {
			m, err := actors.StartMirror(actors.MirrorConfig{
				Upstreams:    o.upstreams,
				TrustedKey:   key,
				StateDir:     o.stateDir,
				PackageDir:   o.packages,
				HTTPAddr:     o.httpAddr,
				PublicURL:    o.publicURL,
				TorrentAddr:  o.torrentAddr,
				SyncInterval: o.syncInterval,
				NoTracker:    !o.tracker,
				DHT:          o.swarm.config(),
				LiveTorrents: o.swarm.liveTorrents,
				Logger:       log,
			})
			if err != nil {
				return nil, nil, err
			}
			log.Info("tpmd mirror started", "pid", os.Getpid(), "http", m.HTTPAddr(), "public_url", o.publicURL,
				"torrent", m.TorrentAddr(), "upstreams", o.upstreams, "packages", o.packages)
			return m, func() { m.Sync("SIGHUP") }, nil
		}})
}
