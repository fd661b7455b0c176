package service

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// stopBudget is how long a clean stop may take; upstart and systemd wait
// longer before they kill.
const stopBudget = 5 * time.Second

// Daemon is a started daemon as Run drives it.
type Daemon interface {
	// Failed delivers the failure that leaves the daemon incomplete: it is
	// then stopped, for the service manager to start it again.
	Failed() <-chan error
	Stop(context.Context) error
}

// Role is what Run needs of one kind of daemon.
type Role struct {
	// Name names the daemon in the refusal of a second one ("tpmd server").
	Name    string
	PidFile string
	// OnHUP, when set, is logged at each SIGHUP before the reload Start
	// returned runs. Without it SIGHUP keeps its default action: a role
	// that has nothing to reload does not pretend to.
	OnHUP string
	// Start starts the daemon, once the pid file is ours and the signals
	// are caught, and returns it with what SIGHUP does (nil without OnHUP).
	Start func() (d Daemon, reload func(), err error)
}

// Run locks the role's pid file, starts the daemon, and runs it until
// SIGTERM or SIGINT or its failure, then stops it within the stop budget.
// It returns the failure, or the error that kept the daemon from starting.
func Run(log *slog.Logger, r Role) error {
	release, err := LockPidFile(r.PidFile, r.Name)
	if err != nil {
		return err
	}
	defer release()

	// Caught before the start: a signal during it stops the daemon once it
	// is up, instead of killing it half-started.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	var hup chan os.Signal // nil, so never ready, when the role has no reload
	if r.OnHUP != "" {
		hup = make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
	}

	d, reload, err := start(ctx, log, r.Start)
	if err != nil || d == nil {
		return err
	}
	for {
		select {
		case <-hup:
			log.Info(r.OnHUP)
			reload()
		case <-ctx.Done():
			log.Info("stopping")
			stopWithin(log, d.Stop)
			return nil
		case failure := <-d.Failed():
			log.Error("stopping after a component failed", "err", failure)
			stopWithin(log, d.Stop)
			return failure
		}
	}
}

// start runs the role's start. A stop asked for meanwhile gives the start
// the stop budget to finish, then stops what came up; a start that takes
// longer (a first fetch of the index waits up to 45 s) is left to the
// process's exit, since everything it writes survives a crash. A nil
// daemon without an error means it was stopped while starting.
func start(ctx context.Context, log *slog.Logger, run func() (Daemon, func(), error)) (Daemon, func(), error) {
	type started struct {
		d      Daemon
		reload func()
		err    error
	}
	up := make(chan started, 1)
	go func() {
		d, reload, err := run()
		up <- started{d, reload, err}
	}()
	select {
	case s := <-up:
		return s.d, s.reload, s.err
	case <-ctx.Done():
	}
	log.Info("stopping while starting")
	select {
	case s := <-up:
		if s.err == nil {
			stopWithin(log, s.d.Stop)
		}
		return nil, nil, s.err
	case <-time.After(stopBudget - time.Second):
		return nil, nil, errors.New("stopped while starting: the start did not end within the stop budget")
	}
}

// stopWithin stops the daemon within the stop budget, leaving the process
// manager half a second.
func stopWithin(log *slog.Logger, stop func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), stopBudget-500*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := stop(ctx); err != nil {
		log.Warn("unclean stop", "err", err)
	}
	log.Info("stopped", "took", time.Since(start).Round(time.Millisecond))
}
