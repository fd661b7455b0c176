package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// The second standard client's baseline (baseline.go): Transmission's
// transmission-cli (3.00). It takes one torrent a process, so every host
// runs one process per torrent of the set, each with its own peer port and
// configuration folder, all downloading into the host's folder. It seeds
// until it is stopped: its defaults set no ratio or idle limit, and it
// exits only once its torrent is stopped (SIGINT). It catches no SIGTERM,
// so stopAll ends it at once, without a "stopped" announce that the next
// run's fresh server would not read anyway (and without flushing its
// status lines, block-buffered into the log).
//
// Its times include a wait of its own: libtransmission says which peers it
// is interested in only at its rechoke, every 10 s, so a host asks nothing
// for up to 10 s after it connects, and asks a host that got pieces since
// only at the next rechoke. On a small set that wait is most of its time,
// and the seeder sends nearly every host the whole set.

// transmissionPort is the first process's peer port on every host; the k-th
// torrent's process listens on transmissionPort+k, as the processes of a
// host share its address.
const transmissionPort = 51413

// transmissionSettings is what no flag of transmission-cli sets, written as
// settings.json into every process's fresh configuration folder; the rest
// are Transmission's defaults (PEX on, as in aria2c). Without DHT and local
// peer discovery the tracker is the only way to find peers, as for aria2c
// and tpm: LPD would find the other hosts by multicast on the bridge, and
// DHT would look for bootstrap nodes outside a network that has no way
// out. Without uTP, because Transmission tries uTP first with every peer a
// tracker names, and the tpmd seeder speaks TCP only (as tpm's hosts and
// aria2c do): the attempt to the seeder never fell back to TCP (no byte in
// 80 s, two hosts of 8 MB).
const transmissionSettings = `{
    "dht-enabled": false,
    "lpd-enabled": false,
    "utp-enabled": false
}
`

func measureTransmission(ctx context.Context, nw *network, set packageSet, dir, bin, keyPath string, phase time.Duration) (baselineResult, error) {
	return measureBaseline(ctx, nw, set, dir, bin, keyPath, phase, baselineClient{
		name: "transmission",
		// The script runs with / as its folder; -w is absolute, so
		// TR_TORRENT_DIR is too.
		hook: "#!/bin/sh\n# Transmission names the finished torrent in the environment.\n: > \"$TR_TORRENT_DIR/$TR_TORRENT_NAME.complete\"\n",
		start: func(ctx context.Context, i int, h host, dl string, torrents []string, hook string) ([]*exec.Cmd, error) {
			dl, err := filepath.Abs(dl)
			if err != nil {
				return nil, err
			}
			var cmds []*exec.Cmd
			for k, t := range torrents {
				cfg := fmt.Sprintf("%s-cfg%d", dl, k+1)
				if err := os.MkdirAll(cfg, 0o755); err != nil {
					return cmds, err
				}
				if err := os.WriteFile(filepath.Join(cfg, "settings.json"), []byte(transmissionSettings), 0o644); err != nil {
					return cmds, err
				}
				// -M: no NAT-PMP or UPnP, nothing to map inside the
				// namespaces. -D -U: no speed limits (the defaults, said
				// outright). -ep: encryption preferred, the default; the
				// tpmd seeder answers obfuscated handshakes, and
				// transmission peers encrypt among themselves.
				args := []string{"-g", cfg, "-w", dl, "-p", strconv.Itoa(transmissionPort + k), "-M", "-D", "-U", "-ep", "-f", hook, t}
				cmd, err := startLogged(ctx, h, fmt.Sprintf("%s-%d.log", dl, k+1), "transmission-cli", args...)
				if err != nil {
					return cmds, err
				}
				cmds = append(cmds, cmd)
			}
			return cmds, nil
		},
	})
}
