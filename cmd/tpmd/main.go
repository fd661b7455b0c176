// Command tpmd is the tpm daemon. "tpmd server" indexes, signs, publishes
// and seeds a directory of packages; "tpmd client" keeps a host's index,
// downloads, installs and seeds packages for the tpm CLI; "tpmd mirror"
// keeps and serves a verified copy of a repository.
//
// This file is wiring only: flags and the config file, the file-IO choice
// of the torrent library, and the exit status; the pid file and the
// signals are service.Run's. The server itself is actors.Server.
package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	cmap "github.com/orcaman/concurrent-map"
	"github.com/spf13/pflag"

	"tpm/actors"
	"tpm/repo"
	"tpm/service"
	"tpm/signing"
	"tpm/swarm"
)

const usage = `usage: tpmd server [flags]
       tpmd client [flags]   (tpmd client --help)
       tpmd mirror [flags]   (tpmd mirror --help)

Indexes, signs, publishes and seeds the packages of --packages.

Flags may also come from --config FILE: one "name = value" per line, names
as the long flags without "--", "#" starts a comment; a flag given on the
command line wins over the file. Example:

    packages = /srv/tpm/packages
    state-dir = /var/lib/tpm-server
    http = :8080
    public-url = http://repo.example:8080
    torrent-listen = :6881
    key = /etc/tpm/repo.key
    scan-interval = 12h
    index-valid-for = 168h
    announce = udp://tracker.example:6969
    announce = http://tracker.example:6969/announce

Signals: SIGHUP rescans now; SIGTERM and SIGINT stop within 5 seconds.

Flags:
`

func main() {
	// protoactor's process registry is 1,024 concurrent maps of
	// SHARD_COUNT shards each, made when the actor system starts: 32,768
	// maps and 5 MB of heap by default (a third of a host's live heap at
	// rest), for the few dozen actors a daemon has. One shard each keeps
	// the registry's 1,024-way split; set before any map is made.
	cmap.SHARD_COUNT = 1
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(os.Stderr, usage)
		serverFlags(&options{}).PrintDefaults()
		return 2
	}
	switch args[0] {
	case "server":
		return server(args[1:])
	case "client":
		return host(args[1:])
	case "mirror":
		return mirror(args[1:])
	}
	fmt.Fprintf(os.Stderr, "tpmd: unknown role %q; try tpmd server --help\n", args[0])
	return 2
}

type options struct {
	config       string
	packages     string
	stateDir     string
	httpAddr     string
	publicURL    string
	torrentAddr  string
	key          string
	scanInterval time.Duration
	validFor     time.Duration
	verifyEvery  time.Duration
	check        string
	pidFile      string
	logLevel     string
	seed         bool
	tracker      bool
	announce     []string
	mirrors      []string
	swarm        swarmOptions
}

func serverFlags(o *options) *pflag.FlagSet {
	fs := pflag.NewFlagSet("tpmd server", pflag.ContinueOnError)
	fs.StringVar(&o.config, "config", "", "read flags from `FILE` (name = value lines)")
	fs.StringVar(&o.packages, "packages", "/srv/tpm/packages", "the package `DIR` to publish")
	fs.StringVar(&o.stateDir, "state-dir", "/var/lib/tpm-server", "catalog and piece-completion `DIR`")
	fs.StringVar(&o.httpAddr, "http", ":8080", "HTTP listen `ADDR`")
	fs.StringVar(&o.publicURL, "public-url", "", "the server's `URL` as clients reach it (default http://HOSTNAME:PORT)")
	fs.StringVar(&o.torrentAddr, "torrent-listen", ":6881", "BitTorrent listen `ADDR`")
	fs.StringVar(&o.key, "key", "/etc/tpm/repo.key", "signing key `FILE` (tpm keygen)")
	fs.DurationVar(&o.scanInterval, "scan-interval", 12*time.Hour, "time between periodic rescans")
	fs.DurationVar(&o.validFor, "index-valid-for", 7*24*time.Hour, "how long a published index is valid; clients refuse it after that, and it is signed again after a quarter of it (rescans come that often)")
	fs.DurationVar(&o.verifyEvery, "verify-interval", 0, "read every published package again this often and reject those whose bytes changed behind the scan's back (bit rot, a bad disk); 0: never")
	fs.StringVar(&o.check, "check", "full", "validate new archives fully (full) or up to package.json (manifest)")
	fs.StringVar(&o.pidFile, "pid-file", "", "pid `FILE`, locked while running (default STATE-DIR/tpmd-server.pid)")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	addFileIOFlag(fs)
	fs.BoolVar(&o.seed, "seed", true, "seed the packages; with --seed=false clients get them from each other and the web seed")
	fs.BoolVar(&o.tracker, "tracker", true, "run the built-in tracker at /announce; with --tracker=false the torrents name only the --announce trackers")
	fs.StringArrayVar(&o.announce, "announce", nil, "a standard tracker's `URL` (http://…/announce or udp://host:port) for every torrent's announce list; repeatable")
	o.swarm.addFlags(fs, "run a DHT node (BEP 5) on the torrent port, the hosts' bootstrap node, named in the signed index at the --public-url host and the --torrent-listen port (with --seed=false it seeds nothing)")
	fs.StringArrayVar(&o.mirrors, "mirror", nil, "a mirror's public `URL` (tpmd mirror --public-url), named as a web seed in every torrent; repeatable")
	o.swarm.addMemoryFlag(fs)
	fs.SortFlags = false
	return fs
}

func server(args []string) int {
	var o options
	fs := serverFlags(&o)
	fs.Usage = func() { fmt.Fprint(os.Stderr, usage); fs.PrintDefaults() }
	if code, ok := service.ParseFlags(fs, "tpmd server", args, &o.config); !ok {
		return code
	}
	check, err := repo.ParseCheck(o.check)
	if err != nil {
		fmt.Fprintf(os.Stderr, "tpmd server: --check: %v\n", err)
		return 2
	}
	if o.verifyEvery < 0 {
		fmt.Fprintf(os.Stderr, "tpmd server: --verify-interval %v: give a positive duration, or 0 for never\n", o.verifyEvery)
		return 2
	}
	for _, u := range o.announce {
		if err := checkURL(u, "http", "https", "udp"); err != nil {
			fmt.Fprintf(os.Stderr, "tpmd server: --announce %v\n", err)
			return 2
		}
	}
	for _, u := range o.mirrors {
		if err := checkURL(u, "http", "https"); err != nil {
			fmt.Fprintf(os.Stderr, "tpmd server: --mirror %v\n", err)
			return 2
		}
	}
	if err := o.swarm.check(); err != nil {
		fmt.Fprintf(os.Stderr, "tpmd server: %v\n", err)
		return 2
	}
	if o.validFor < 4*time.Second {
		fmt.Fprintf(os.Stderr, "tpmd server: --index-valid-for %v is too short: give at least 4s (default 168h)\n", o.validFor)
		return 2
	}
	if !guarded(fs, "tpmd server", "state-dir", "packages") {
		return 2
	}
	return runRole("tpmd server", o.logLevel, func(log *slog.Logger) error { return serve(o, check, log) })
}

func serve(o options, check repo.Check, log *slog.Logger) error {
	o.swarm.applyMemoryLimit(log)
	if !o.tracker && len(o.announce) == 0 && !o.swarm.on {
		log.Warn("--tracker=false without --announce or --dht: hosts find no peers, only the web seeds")
	}
	if o.publicURL == "" {
		o.publicURL = defaultPublicURL(o.httpAddr)
	}
	if o.pidFile == "" {
		o.pidFile = filepath.Join(o.stateDir, "tpmd-server.pid")
	}
	key, err := signing.LoadKey(o.key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.stateDir, 0o755); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	cfg := serverConfig(o, check, key, log)
	if o.swarm.on && len(cfg.DHTNodes()) == 0 {
		log.Warn("--dht: the index names no DHT node (the --public-url host or the --torrent-listen port is missing or 0): hosts need --dht-bootstrap")
	}
	return service.Run(log, service.Role{Name: "tpmd server", PidFile: o.pidFile, OnHUP: "SIGHUP: rescanning",
		Start: func() (service.Daemon, func(), error) {
			srv, err := actors.StartServer(cfg)
			if err != nil {
				return nil, nil, err
			}
			log.Info("tpmd server started", "pid", os.Getpid(), "http", srv.HTTPAddr(), "public_url", o.publicURL,
				"torrent", srv.TorrentAddr(), "packages", o.packages)
			return srv, func() { srv.Rescan("SIGHUP") }, nil
		}})
}

func serverConfig(o options, check repo.Check, key *signing.Key, log *slog.Logger) actors.ServerConfig {
	return actors.ServerConfig{
		PackageDir:     o.packages,
		StateDir:       o.stateDir,
		HTTPAddr:       o.httpAddr,
		PublicURL:      o.publicURL,
		TorrentAddr:    o.torrentAddr,
		Signer:         key,
		ScanInterval:   o.scanInterval,
		IndexValidFor:  o.validFor,
		VerifyInterval: o.verifyEvery,
		Check:          check,
		Logger:         log,
		NoSeed:         !o.seed,
		NoTracker:      !o.tracker,
		Announce:       o.announce,
		WebSeeds:       webSeeds(o.mirrors),
		DHT:            o.swarm.config(),
		LiveTorrents:   o.swarm.liveTorrents,
	}
}

// addFileIOFlag keeps --file-io, which chose anacrolix's file reads
// (pread or mmap), working in old unit and config files: tpmd's own
// torrent storage reads with pread on files it keeps open.
func addFileIOFlag(fs *pflag.FlagSet) {
	fs.String("file-io", "classic", "ignored")
	fs.MarkDeprecated("file-io", "tpmd reads package files with pread whatever it says; remove it")
}

// runRole makes the logger of --log-level, runs the role with it, and
// turns the outcome into the exit status: 2 for a bad --log-level, 1 for
// an error (written on stderr, after the role's name).
func runRole(role, logLevel string, run func(*slog.Logger) error) int {
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "%s: --log-level %q is not debug, info, warn or error\n", role, logLevel)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if err := run(log); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", role, err)
		return 1
	}
	return 0
}

// checkURL refuses a URL that is not absolute with one of schemes.
func checkURL(s string, schemes ...string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || !slices.Contains(schemes, u.Scheme) {
		return fmt.Errorf("%q: give an absolute %s URL", s, strings.Join(schemes, ", "))
	}
	return nil
}

// swarmOptions are the torrent client's flags that every role has.
type swarmOptions struct {
	on           bool // the DHT
	bootstrap    []string
	liveTorrents int
	memoryMiB    int // the soft memory limit of a serving role (0: none)
}

// addMemoryFlag is the soft memory limit of the roles that serve the
// catalogue to a fleet (server, mirror). A flood of demand wakes torrents
// and their connections by the thousand; what they leave is garbage the
// runtime collects at twice the live heap and returns to the system over
// minutes, so the process stood at 860 MB when its live heap was 155 MB.
func (d *swarmOptions) addMemoryFlag(fs *pflag.FlagSet) {
	fs.IntVar(&d.memoryMiB, "memory-limit", 384, "a soft memory limit in `MiB`: the Go runtime collects garbage harder as the process nears it (GOMEMLIMIT, when set, wins); 0: none")
}

// applyMemoryLimit sets the soft memory limit, unless GOMEMLIMIT did. The
// runtime spends at most about half the CPU on collection however far a
// live heap goes past it, so a large catalogue slows, it does not stop.
func (d *swarmOptions) applyMemoryLimit(log *slog.Logger) {
	if d.memoryMiB <= 0 || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetMemoryLimit(int64(d.memoryMiB) << 20)
	log.Debug("soft memory limit", "mib", d.memoryMiB)
}

func (d *swarmOptions) addFlags(fs *pflag.FlagSet, dht string) {
	fs.BoolVar(&d.on, "dht", false, dht)
	fs.StringArrayVar(&d.bootstrap, "dht-bootstrap", nil, "a DHT node to join through, `HOST:PORT` (the server's --torrent-listen address; a client also joins through the node its signed index names, after these); repeatable")
	fs.IntVar(&d.liveTorrents, "live-torrents", 1000, "at most `N` seeded torrents live at once; the others are dormant (a map entry each) until a peer asks for them")
}

func (d *swarmOptions) check() error {
	if d.liveTorrents < 1 {
		return fmt.Errorf("--live-torrents %d: give at least 1", d.liveTorrents)
	}
	if d.memoryMiB < 0 {
		return fmt.Errorf("--memory-limit %d: give MiB, or 0 for none", d.memoryMiB)
	}
	if len(d.bootstrap) > 0 && !d.on {
		return fmt.Errorf("--dht-bootstrap needs --dht")
	}
	for _, b := range d.bootstrap {
		if _, port, err := net.SplitHostPort(b); err != nil || port == "" || port == "0" {
			return fmt.Errorf("--dht-bootstrap %q: give HOST:PORT, the server's torrent address", b)
		}
	}
	return nil
}

// config is the swarm's DHT settings, nil when it is off.
func (d *swarmOptions) config() *swarm.DHTConfig {
	if !d.on {
		return nil
	}
	return &swarm.DHTConfig{Bootstrap: d.bootstrap}
}

// webSeeds are the mirrors' /packages/ URLs.
func webSeeds(mirrors []string) []string {
	var out []string
	for _, m := range mirrors {
		out = append(out, swarm.PublicWebSeed(m))
	}
	return out
}

// defaultPublicURL guesses the URL from the host name and the HTTP port.
func defaultPublicURL(httpAddr string) string {
	host, port, err := net.SplitHostPort(httpAddr)
	if err != nil {
		return "http://" + httpAddr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		if h, err := os.Hostname(); err == nil {
			host = h
		} else {
			host = "localhost"
		}
	}
	return "http://" + net.JoinHostPort(host, port)
}
