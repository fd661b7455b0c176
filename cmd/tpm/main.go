// Command tpm is the Torrent Package Manager's command line.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"tpm/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
	stop()
	os.Exit(code)
}
