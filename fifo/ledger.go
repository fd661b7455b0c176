package fifo

import (
	"context"
	"sync"
	"time"
)

// Ledger counts the request directories of each uid in a spool and queues
// their removal: a directory counts from the moment its token arrives
// until it is removed, so one user cannot fill the spool while the daemon
// runs. The daemon's FIFO readers admit, the daemon removes what it
// answered or refused, and one cleaner goroutine (Clean) removes, and
// sweeps what no token named; it is safe for all of them at once, with its
// own lock, as a part shared by the readers and the gateway that owns it.
type Ledger struct {
	maxPerUID, maxUncounted int

	mu        sync.Mutex
	live      map[string]int // counted directories: token → uid
	byUID     map[int]int
	queue     []string
	queued    map[string]bool // whether it counted when queued
	uncounted int             // queued that do not count
	wake      chan struct{}
}

// NewLedger is a ledger that admits maxPerUID directories of a uid at once
// and queues at most maxUncounted removals of directories it did not admit
// (past that, the sweep finds them).
func NewLedger(maxPerUID, maxUncounted int) *Ledger {
	return &Ledger{maxPerUID: maxPerUID, maxUncounted: maxUncounted,
		live: map[string]int{}, byUID: map[int]int{}, queued: map[string]bool{}, wake: make(chan struct{}, 1)}
}

// Admit counts tok's directory against uid, unless uid has its fill; it
// returns how many uid has.
func (b *Ledger) Admit(tok string, uid int) (int, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.live[tok]; ok {
		return b.byUID[uid], true // the same token again: one directory
	}
	if b.byUID[uid] >= b.maxPerUID {
		return b.byUID[uid], false
	}
	b.live[tok] = uid
	b.byUID[uid]++
	return b.byUID[uid], true
}

// Remove queues the removal of tok's directory, once.
func (b *Ledger) Remove(tok string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.queued[tok]; ok {
		return
	}
	_, counted := b.live[tok]
	if !counted {
		if b.uncounted >= b.maxUncounted {
			return
		}
		b.uncounted++
	}
	b.queued[tok] = counted
	b.queue = append(b.queue, tok)
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// next takes the next queued removal.
func (b *Ledger) next() (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.queue) == 0 {
		b.queue = nil // let a long queue's array go
		return "", false
	}
	tok := b.queue[0]
	b.queue = b.queue[1:]
	return tok, true
}

// done uncounts tok's directory: it was removed, or given up on.
func (b *Ledger) done(tok string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if counted, ok := b.queued[tok]; ok && !counted {
		b.uncounted--
	}
	delete(b.queued, tok)
	uid, ok := b.live[tok]
	if !ok {
		return
	}
	delete(b.live, tok)
	if b.byUID[uid]--; b.byUID[uid] <= 0 {
		delete(b.byUID, uid)
	}
}

// known says whether the ledger counts tok's directory or queued its
// removal: the sweep leaves those alone.
func (b *Ledger) known(tok string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, live := b.live[tok]
	_, queued := b.queued[tok]
	return live || queued
}

// expected is how many directories the ledger accounts for: those it
// counts, and those it queued for removal that do not count.
func (b *Ledger) expected() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.live) + b.uncounted
}

// CleanConfig is how Clean runs.
type CleanConfig struct {
	// Sweep bounds the directories no token named.
	Sweep SweepConfig
	// SweepEvery is how often a round of the sweep begins; CheckEvery how
	// often the spool's directories are counted (one fstat), a round
	// beginning at once when there are more than Pressure beyond those the
	// ledger accounts for and those the last round left.
	SweepEvery, CheckEvery time.Duration
	Pressure               int
	Warn                   func(msg string, args ...any)           // what it gives up on
	Swept                  func(SweepReport)                       // after each round of the sweep
	BeforeRemove           func(ctx context.Context, token string) // tests only: holds a removal
}

// Clean removes the queued directories as they come, and sweeps the spool
// for directories no token named (see SweepConfig) a bounded pass at a
// time between them, until ctx ends. It follows no link.
func (b *Ledger) Clean(ctx context.Context, spool string, cfg CleanConfig) {
	sw, err := newSweeper(spool, cfg.Sweep)
	if err != nil {
		cfg.Warn("cannot sweep the spool: directories without a token stay until tpmd restarts", "err", err)
	} else {
		defer sw.close()
	}
	every := time.NewTicker(cfg.SweepEvery)
	defer every.Stop()
	check := time.NewTicker(cfg.CheckEvery)
	defer check.Stop()
	for {
		b.removeQueued(ctx, spool, cfg)
		if ctx.Err() != nil {
			return
		}
		if sw != nil && sw.round != nil {
			if rep := sw.pass(ctx, b); rep != nil && ctx.Err() == nil && cfg.Swept != nil {
				cfg.Swept(*rep)
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-b.wake:
		case now := <-every.C:
			if sw != nil {
				sw.begin(now)
			}
		case now := <-check.C:
			if sw != nil && sw.pressed(b.expected(), cfg.Pressure) {
				sw.begin(now)
			}
		}
	}
}

// removeQueued removes the directories queued for removal.
func (b *Ledger) removeQueued(ctx context.Context, spool string, cfg CleanConfig) {
	for tok, ok := b.next(); ok && ctx.Err() == nil; tok, ok = b.next() {
		if cfg.BeforeRemove != nil {
			cfg.BeforeRemove(ctx, tok)
		}
		if err := RemoveRequest(ctx, spool, tok); err != nil && ctx.Err() == nil {
			cfg.Warn("left a request directory in the spool", "err", err)
		}
		b.done(tok)
	}
}
