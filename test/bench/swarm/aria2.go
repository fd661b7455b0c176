package main

import (
	"context"
	"fmt"
	"os/exec"
	"time"
)

// The first standard client's baseline (baseline.go): aria2c, one process
// a host for the whole set. It says a file is complete with
// --on-bt-download-complete, whose third argument is the file's path.

func measureAria2(ctx context.Context, nw *network, set packageSet, dir, bin, keyPath string, phase time.Duration) (baselineResult, error) {
	return measureBaseline(ctx, nw, set, dir, bin, keyPath, phase, baselineClient{
		name: "aria2",
		hook: "#!/bin/sh\n# GID, number of files, first file\ntouch \"$3.complete\"\n",
		start: func(ctx context.Context, i int, h host, dl string, torrents []string, hook string) ([]*exec.Cmd, error) {
			args := append([]string{"--dir", dl, "--listen-port=6881", "--enable-dht=false", "--enable-dht6=false",
				"--bt-enable-lpd=false", "--follow-torrent=false", "--summary-interval=0", "--console-log-level=warn",
				"--seed-time=600", "--seed-ratio=0.0", "--file-allocation=none", "--max-concurrent-downloads=" + fmt.Sprint(len(torrents)),
				"--on-bt-download-complete=" + hook}, torrents...)
			cmd, err := startLogged(ctx, h, dl+".log", "aria2c", args...)
			if err != nil {
				return nil, err
			}
			return []*exec.Cmd{cmd}, nil
		},
	})
}
