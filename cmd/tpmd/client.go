package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/pflag"

	"tpm/actors"
	"tpm/fifo"
	"tpm/metrics"
	"tpm/service"
	"tpm/signing"
)

const hostUsage = `usage: tpmd client [flags]

Keeps this host's copy of the repository's signed index, answers the tpm
CLI on the FIFOs in --run-dir, downloads packages from the swarm (the
repository's HTTP web seed is the fallback), installs them with the
engine, and seeds every installed package.

Flags may also come from --config FILE: one "name = value" per line, names
as the long flags without "--", "#" starts a comment; a flag given on the
command line wins over the file. See deploy/client.conf.example.

Signals: SIGTERM and SIGINT stop within 5 seconds, downloads included.

Flags:
`

type hostOptions struct {
	config        string
	servers       []string
	trustedKey    string
	stateDir      string
	cacheDir      string
	runDir        string
	adminGroup    string
	prefix        string
	syncInterval  time.Duration
	torrentAddr   string
	webSeed       bool
	stallTimeout  time.Duration
	parallel      int
	keepVersions  int
	buildDir      string
	buildTimeout  time.Duration
	scriptTimeout time.Duration
	metricsListen string
	linkDir       string
	logLevel      string
	swarm         swarmOptions
	// step, when a test build of tpmd sets it, is the engine's hook before
	// every step of a transaction (testhooks.go).
	step func(string)
	// linger, when a test build sets it, is how long a request's actor
	// stays after its final reply.
	linger time.Duration
}

func hostFlags(o *hostOptions) *pflag.FlagSet {
	fs := pflag.NewFlagSet("tpmd client", pflag.ContinueOnError)
	fs.StringVar(&o.config, "config", "", "read flags from `FILE` (name = value lines)")
	fs.StringArrayVar(&o.servers, "server", nil, "a repository server's `URL` (tpmd server's or tpmd mirror's --public-url); repeatable: the index comes from whichever has the newest, packages from all; at least one")
	fs.StringVar(&o.trustedKey, "trusted-key", "/etc/tpm/repo.pub", "the repository's public key `FILE`")
	fs.StringVar(&o.stateDir, "state-dir", "/var/lib/tpm", "installed-state database, index and piece-completion `DIR`")
	fs.StringVar(&o.cacheDir, "cache-dir", "/var/cache/tpm", "`DIR` of the installed packages' files, seeded")
	fs.StringVar(&o.runDir, "run-dir", "/run/tpm", "`DIR` of the FIFOs, the request spool and the pid file")
	fs.StringVar(&o.adminGroup, "admin-group", "", "`GROUP` (a name from /etc/group, or a GID) that may also write admin.fifo (mode 0620)")
	fs.StringVar(&o.prefix, "prefix", "/", "install prefix for requests that name none")
	fs.DurationVar(&o.syncInterval, "sync-interval", time.Hour, "time between index fetches")
	fs.StringVar(&o.torrentAddr, "torrent-listen", ":6881", "BitTorrent listen `ADDR`")
	o.swarm.addFlags(fs, "find peers through the DHT (BEP 5) too, joined through the repository's node the signed index names (and any --dht-bootstrap)")
	fs.BoolVar(&o.webSeed, "web-seed", true, "fall back to the repository's HTTP web seed; false: peers only")
	fs.DurationVar(&o.stallTimeout, "stall-timeout", 2*time.Minute, "fail a download that makes no progress for this long")
	fs.IntVar(&o.parallel, "parallel-downloads", actors.DefaultParallelDownloads, "run at most `N` downloads at once; the others of a transaction wait their turn")
	fs.IntVar(&o.keepVersions, "keep-versions", 2, "keep at most `N` versions of each package in the cache (installed ones included), for tpm undo; tpm clean drops the others")
	fs.StringVar(&o.buildDir, "build-dir", "/tmp/tpm", "`DIR` where source packages are built")
	fs.DurationVar(&o.buildTimeout, "build-timeout", time.Hour, "time limit for building one source package")
	fs.DurationVar(&o.scriptTimeout, "script-timeout", 5*time.Minute, "time limit for each package script")
	fs.StringVar(&o.metricsListen, "metrics-listen", "", "serve Prometheus figures at http://`ADDR`/metrics (off by default)")
	fs.StringVar(&o.linkDir, "link-dir", "usr/local", "where source packages are linked, relative to the prefix")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	addFileIOFlag(fs)
	addTestFlags(fs, o)
	fs.SortFlags = false
	return fs
}

func host(args []string) int {
	var o hostOptions
	fs := hostFlags(&o)
	fs.Usage = func() { fmt.Fprint(os.Stderr, hostUsage); fs.PrintDefaults() }
	if code, ok := service.ParseFlags(fs, "tpmd client", args, &o.config); !ok {
		return code
	}
	if len(o.servers) == 0 {
		fmt.Fprintln(os.Stderr, "tpmd client: --server URL is required (the repository's tpmd server, or a mirror; repeatable)")
		return 2
	}
	for _, u := range o.servers {
		if err := checkURL(u, "http", "https"); err != nil {
			fmt.Fprintf(os.Stderr, "tpmd client: --server %v\n", err)
			return 2
		}
	}
	if err := o.swarm.check(); err != nil {
		fmt.Fprintf(os.Stderr, "tpmd client: %v\n", err)
		return 2
	}
	if !filepath.IsAbs(o.prefix) {
		fmt.Fprintf(os.Stderr, "tpmd client: --prefix %q must be an absolute path\n", o.prefix)
		return 2
	}
	if o.parallel < 1 || o.parallel > 1024 {
		fmt.Fprintf(os.Stderr, "tpmd client: --parallel-downloads %d: give 1 to 1024\n", o.parallel)
		return 2
	}
	if o.keepVersions < 1 {
		fmt.Fprintf(os.Stderr, "tpmd client: --keep-versions %d: give at least 1 (the installed version)\n", o.keepVersions)
		return 2
	}
	for name, d := range map[string]time.Duration{"--script-timeout": o.scriptTimeout, "--build-timeout": o.buildTimeout, "--stall-timeout": o.stallTimeout, "--sync-interval": o.syncInterval} {
		if d <= 0 {
			fmt.Fprintf(os.Stderr, "tpmd client: %s %v must be positive, like 30s or 5m\n", name, d)
			return 2
		}
	}
	if !guarded(fs, "tpmd client", "state-dir", "cache-dir", "run-dir", "prefix") {
		return 2
	}
	return runRole("tpmd client", o.logLevel, func(log *slog.Logger) error { return runHost(o, log) })
}

// adminGID is the group ID of --admin-group: a name from /etc/group, or a
// number. tpmd is built without cgo, so a group only a directory service
// (LDAP, SSSD) knows is given by number.
func adminGID(group string) (int, error) {
	if group == "" {
		return -1, nil
	}
	if gid, err := strconv.Atoi(group); err == nil && gid >= 0 {
		return gid, nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return 0, fmt.Errorf("--admin-group: %w (a group from a directory service such as LDAP is given by its number)", err)
	}
	return strconv.Atoi(g.Gid)
}

func runHost(o hostOptions, log *slog.Logger) error {
	key, err := signing.LoadPublicKey(o.trustedKey)
	if err != nil {
		return fmt.Errorf("%w (--trusted-key: the repository's repo.pub)", err)
	}
	gid, err := adminGID(o.adminGroup)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.runDir, 0o755); err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	// SIGHUP (upstart's and systemd's reload) fetches the index at once; it
	// ended the daemon before.
	return service.Run(log, service.Role{Name: "tpmd client", PidFile: filepath.Join(o.runDir, fifo.PidFile), OnHUP: "SIGHUP: syncing the index",
		Start: func() (service.Daemon, func(), error) {
			h, err := startHost(o, key, gid, log)
			if err != nil {
				return nil, nil, err
			}
			return h, h.Host.Sync, nil
		}})
}

// startHost opens the metrics listener and starts the host; the listener
// closes once the host stopped, or at once when it did not start.
func startHost(o hostOptions, key signing.PublicKey, gid int, log *slog.Logger) (hostDaemon, error) {
	m := metrics.NewHost()
	var ep *metrics.Endpoint
	if o.metricsListen != "" {
		var err error
		if ep, err = metrics.Listen(o.metricsListen, m.Handler()); err != nil {
			return hostDaemon{}, err
		}
		log.Info("metrics", "addr", ep.Addr())
	}
	c, err := actors.StartHost(hostConfig(o, key, gid, m, log))
	if err != nil {
		if ep != nil {
			ep.Close()
		}
		return hostDaemon{}, err
	}
	log.Info("tpmd client started", "pid", os.Getpid(), "servers", o.servers, "run_dir", o.runDir,
		"torrent_port", c.TorrentPort())
	return hostDaemon{Host: c, metrics: ep}, nil
}

func hostConfig(o hostOptions, key signing.PublicKey, gid int, m *metrics.Host, log *slog.Logger) actors.HostConfig {
	return actors.HostConfig{
		Metrics:           m,
		Servers:           o.servers,
		TrustedKey:        key,
		StateDir:          o.stateDir,
		CacheDir:          o.cacheDir,
		RunDir:            o.runDir,
		AdminGID:          gid,
		Prefix:            o.prefix,
		SyncInterval:      o.syncInterval,
		TorrentAddr:       o.torrentAddr,
		NoWebSeeds:        !o.webSeed,
		DHT:               o.swarm.config(),
		LiveTorrents:      o.swarm.liveTorrents,
		StallTimeout:      o.stallTimeout,
		ParallelDownloads: o.parallel,
		KeepVersions:      o.keepVersions,
		BuildRoot:         o.buildDir,
		BuildTimeout:      o.buildTimeout,
		ScriptTimeout:     o.scriptTimeout,
		LinkDir:           o.linkDir,
		Logger:            log,
		Step:              o.step,
		Linger:            o.linger,
	}
}

// hostDaemon is the host with its metrics listener (nil without
// --metrics-listen), which serves until the host stopped.
type hostDaemon struct {
	*actors.Host
	metrics *metrics.Endpoint
}

func (h hostDaemon) Stop(ctx context.Context) error {
	err := h.Host.Stop(ctx)
	if h.metrics != nil {
		h.metrics.Close()
	}
	return err
}
