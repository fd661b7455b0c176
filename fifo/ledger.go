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
// answered or refused, and one cleaner goroutine (Clean) removes; it is
// safe for all of them at once, with its own lock, as a part shared by the
// readers and the gateway that owns it.
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
// (past that, the stale sweep finds them).
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

// CleanConfig is how Clean runs.
type CleanConfig struct {
	SweepEvery, StaleAge time.Duration
	Warn                 func(msg string, args ...any)           // what it gives up on
	Removed              func(name string, uid int)              // each stale directory the sweep removes
	BeforeRemove         func(ctx context.Context, token string) // tests only: holds a removal
}

// Clean removes the queued directories as they come, and sweeps the spool
// for stale ones, until ctx ends. It follows no link.
func (b *Ledger) Clean(ctx context.Context, spool string, cfg CleanConfig) {
	sweep := time.NewTicker(cfg.SweepEvery)
	defer sweep.Stop()
	for {
		for tok, ok := b.next(); ok && ctx.Err() == nil; tok, ok = b.next() {
			if cfg.BeforeRemove != nil {
				cfg.BeforeRemove(ctx, tok)
			}
			if err := RemoveRequest(ctx, spool, tok); err != nil && ctx.Err() == nil {
				cfg.Warn("left a request directory in the spool", "err", err)
			}
			b.done(tok)
		}
		select {
		case <-ctx.Done():
			return
		case <-b.wake:
		case now := <-sweep.C:
			if err := SweepStale(ctx, spool, now.Add(-cfg.StaleAge), cfg.Removed); err != nil && ctx.Err() == nil {
				cfg.Warn("left stale request directories in the spool", "err", err)
			}
		}
	}
}
