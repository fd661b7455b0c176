// Package engine is the install engine: transactions that put packages onto
// a prefix, upgrade them and take them away, with receipts in the store, a
// journal that makes every transaction survive a crash, and verification of
// the disk against the receipts. It is a library: the CLI's --offline mode
// and the daemon's installer drive it the same way.
package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"tpm/builder"
	"tpm/store"
	"tpm/tarball"
)

// Options configure an Engine.
type Options struct {
	// StateDir holds the database; maintainer scripts are written to a
	// private folder under it while they run (/tmp may be noexec).
	StateDir string
	Limits   tarball.Limits
	// ScriptTimeout bounds every maintainer script.
	ScriptTimeout time.Duration
	// Source packages: where builds run (default /tmp/tpm), how long one may
	// take (default 1h), and the symlink farm relative to the prefix
	// (default usr/local).
	BuildRoot    string
	BuildTimeout time.Duration
	LinkDir      string
	// Step is called before every step that changes the disk or the
	// database, with a short description. Tests use it to kill the process
	// at any point and check that recovery leaves receipts and disk agreeing.
	Step func(desc string)
	// Now stamps receipts.
	Now func() time.Time
	// Root says whether the process runs as root; setuid and setgid bits are
	// kept only for root installing into "/".
	Root bool
	// CheckDatabase checks every page of the state database at open, as
	// is done anyway after an unclean stop (store.OpenStateChecked).
	CheckDatabase bool
}

// Hooks are what one transaction reports to as it goes, and how it builds
// source packages. Every field may be nil.
type Hooks struct {
	// Output receives each line a maintainer script or a source build
	// prints, with the package and the script or build step.
	Output func(pkg, step, line string)
	// Applied is told about each op as soon as it is done, post-script
	// included, so a long transaction shows progress.
	Applied func(OpResult)
	// Build runs one source build; the daemon hands builds to its builder
	// actor through it. Default: builder.Build on the caller's goroutine.
	Build func(context.Context, builder.Spec, builder.LogFunc) (*builder.Result, error)
}

func (h Hooks) withDefaults() Hooks {
	if h.Output == nil {
		h.Output = func(string, string, string) {}
	}
	if h.Applied == nil {
		h.Applied = func(OpResult) {}
	}
	if h.Build == nil {
		h.Build = builder.Build
	}
	return h
}

// Engine runs transactions against one state database. It is not safe for
// concurrent use: one transaction at a time, as the database allows anyway.
type Engine struct {
	db   *store.State
	opts Options
	// When the copy of the database was last written, and whether a
	// transaction went in since (backup). Only the one writer (Apply,
	// then Close) touches them.
	lastBackup time.Time
	backupDue  bool
}

// DatabaseFile is the state database's name inside the state directory.
const DatabaseFile = "tpm.db"

// Open opens the state database in opts.StateDir and finishes or undoes any
// transaction that a crash interrupted, so every caller starts from a state
// where receipts and disk agree.
func Open(ctx context.Context, opts Options) (*Engine, *Recovery, error) {
	if opts.Limits == (tarball.Limits{}) {
		opts.Limits = tarball.DefaultLimits()
	}
	if opts.ScriptTimeout == 0 {
		opts.ScriptTimeout = 5 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Step == nil {
		opts.Step = func(string) {}
	}
	stateDir, err := filepath.Abs(opts.StateDir)
	if err != nil {
		return nil, nil, fmt.Errorf("state directory: %w", err)
	}
	opts.StateDir = stateDir // scripts run in the prefix, so a relative path would break
	if err := os.MkdirAll(opts.StateDir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("state directory: %w", err)
	}
	open := store.OpenState
	if opts.CheckDatabase {
		open = store.OpenStateChecked
	}
	db, err := open(filepath.Join(opts.StateDir, DatabaseFile))
	if err != nil {
		return nil, nil, err
	}
	e := &Engine{db: db, opts: opts}
	rec, err := e.recover(ctx)
	if derr := db.Damaged(); derr != nil {
		// A damaged page met while reading the journal: the one line that
		// gives the way back, whatever the recovery made of it.
		err = derr
	}
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return e, rec, nil
}

// OpenWhenFree is Open that waits, polling every interval, while another
// process or engine holds the state database (a predecessor's transaction
// lets go once its current package is in), for at most limit. waiting is
// called once, when the first try finds it held, with who holds it. It
// gives up when ctx ends, or after limit with an error that names the
// holder (wrapping store.ErrLocked).
func OpenWhenFree(ctx context.Context, opts Options, interval, limit time.Duration, waiting func(holder string)) (*Engine, *Recovery, error) {
	deadline := time.Now().Add(limit)
	for first := true; ; first = false {
		e, rec, err := Open(ctx, opts)
		if !errors.Is(err, store.ErrLocked) || ctx.Err() != nil {
			return e, rec, err
		}
		if first && waiting != nil {
			waiting(Holder(opts.StateDir))
		}
		if time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("the state database %s is still in use after %v, by %s: %w", filepath.Join(opts.StateDir, DatabaseFile), limit, Holder(opts.StateDir), err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(interval):
		}
	}
}

// Holder says who holds the state database in stateDir: this process (a
// transaction of an earlier engine that has not let go), another process
// by pid and command, or that the kernel does not say.
func Holder(stateDir string) string {
	pid, ok := store.LockHolder(filepath.Join(stateDir, DatabaseFile))
	switch {
	case !ok:
		return "a process the kernel does not name"
	case pid == os.Getpid():
		return fmt.Sprintf("this process (pid %d: a transaction that has not finished its package)", pid)
	}
	comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return fmt.Sprintf("pid %d (%s)", pid, strings.TrimSpace(string(comm)))
}

// Close releases the database.
func (e *Engine) Close() error {
	var err error
	if e.backupDue {
		err = e.backup(true)
	}
	return errors.Join(err, e.db.Close())
}

// StateDir is the state directory, absolute.
func (e *Engine) StateDir() string { return e.opts.StateDir }

// State gives read access to the receipts for queries.
func (e *Engine) State() *store.State { return e.db }

// CleanPrefix turns a user's --prefix into the absolute, clean form receipts
// are keyed by.
func CleanPrefix(prefix string) (string, error) {
	if prefix == "" {
		prefix = "/"
	}
	abs, err := filepath.Abs(prefix)
	if err != nil {
		return "", fmt.Errorf("prefix %s: %w", prefix, err)
	}
	return abs, nil
}
