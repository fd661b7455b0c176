package service

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// fakeDaemon records its stop; failed delivers what the test sends.
type fakeDaemon struct {
	failed  chan error
	stopped atomic.Bool
}

func (d *fakeDaemon) Failed() <-chan error { return d.failed }

func (d *fakeDaemon) Stop(context.Context) error {
	d.stopped.Store(true)
	return nil
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// A failure stops the daemon, is returned, and frees the pid file.
func TestRunStopsOnFailure(t *testing.T) {
	pid := filepath.Join(t.TempDir(), "d.pid")
	d := &fakeDaemon{failed: make(chan error, 1)}
	boom := errors.New("a component failed")
	err := Run(quiet, Role{Name: "tpmd test", PidFile: pid, Start: func() (Daemon, func(), error) {
		if _, err := LockPidFile(pid, "tpmd test"); err == nil {
			t.Error("the pid file is not locked while the daemon starts")
		}
		d.failed <- boom
		return d, nil, nil
	}})
	if !errors.Is(err, boom) || !d.stopped.Load() {
		t.Fatalf("Run = %v, stopped %v", err, d.stopped.Load())
	}
	if _, err := os.Stat(pid); !os.IsNotExist(err) {
		t.Fatalf("pid file left: %v", err)
	}
}

// SIGHUP runs the reload, SIGTERM stops the daemon cleanly.
func TestRunSignals(t *testing.T) {
	d := &fakeDaemon{failed: make(chan error)}
	reloaded := make(chan struct{}, 1)
	err := Run(quiet, Role{Name: "tpmd test", PidFile: filepath.Join(t.TempDir(), "d.pid"), OnHUP: "SIGHUP: reloading",
		Start: func() (Daemon, func(), error) {
			// Both signals are caught by now; SIGTERM goes once the
			// reload ran.
			syscall.Kill(os.Getpid(), syscall.SIGHUP)
			go func() {
				select {
				case <-reloaded:
				case <-time.After(10 * time.Second):
					t.Error("SIGHUP did not reload")
				}
				syscall.Kill(os.Getpid(), syscall.SIGTERM)
			}()
			return d, func() { reloaded <- struct{}{} }, nil
		}})
	if err != nil || !d.stopped.Load() {
		t.Fatalf("Run = %v, stopped %v", err, d.stopped.Load())
	}
}

// A daemon that does not start is not stopped, and its error is returned.
func TestRunStartFails(t *testing.T) {
	boom := errors.New("port in use")
	err := Run(quiet, Role{Name: "tpmd test", PidFile: filepath.Join(t.TempDir(), "d.pid"),
		Start: func() (Daemon, func(), error) { return nil, nil, boom }})
	if !errors.Is(err, boom) {
		t.Fatalf("Run = %v", err)
	}
}

// SIGTERM during a start that hangs (a first fetch of the index waits up
// to 45 s) ends Run within the stop budget, not when the start ends.
func TestRunStopsDuringAStart(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	done := make(chan error, 1)
	go func() {
		done <- Run(quiet, Role{Name: "tpmd test", PidFile: filepath.Join(t.TempDir(), "d.pid"),
			Start: func() (Daemon, func(), error) {
				syscall.Kill(os.Getpid(), syscall.SIGTERM)
				<-release
				return &fakeDaemon{failed: make(chan error)}, nil, nil
			}})
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "stopped while starting") {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("SIGTERM during a start that hangs did not end Run")
	}
}

// SIGTERM during a start that ends soon after stops what came up.
func TestRunStopsWhatStartedAfterSIGTERM(t *testing.T) {
	d := &fakeDaemon{failed: make(chan error)}
	err := Run(quiet, Role{Name: "tpmd test", PidFile: filepath.Join(t.TempDir(), "d.pid"),
		Start: func() (Daemon, func(), error) {
			syscall.Kill(os.Getpid(), syscall.SIGTERM)
			time.Sleep(100 * time.Millisecond) // the signal is taken while the start runs
			return d, nil, nil
		}})
	if err != nil || !d.stopped.Load() {
		t.Fatalf("Run = %v, stopped %v", err, d.stopped.Load())
	}
}
