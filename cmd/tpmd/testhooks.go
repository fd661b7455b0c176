//go:build tpmd_testhooks

package main

import (
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
)

// A tpmd built with -tags tpmd_testhooks (only the end-to-end tests build
// it so) takes --test-kill-at-step TEXT: it kills itself with SIGKILL
// before the engine step whose description starts with TEXT, the way a
// power cut would, to show that the next start recovers; and --test-linger,
// to show that an answered request frees its slot while its actor lingers.
// The released tpmd has neither flag.
func addTestFlags(fs *pflag.FlagSet, o *hostOptions) {
	fs.Func("test-kill-at-step", "testing only: SIGKILL ourselves before the engine step starting with `TEXT`", func(text string) error {
		o.step = func(desc string) {
			if strings.HasPrefix(desc, text) {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
				time.Sleep(time.Minute)
			}
		}
		return nil
	})
	fs.DurationVar(&o.linger, "test-linger", 0, "testing only: how long a request's actor stays after its final reply")
}
