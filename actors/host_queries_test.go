package actors

import (
	"testing"

	"tpm/messages"
)

// TestQueryQueueTakesUIDsInTurn: a user with many queries waiting holds at
// most maxQueriesUID slots, and another user's query starts next.
func TestQueryQueueTakesUIDsInTurn(t *testing.T) {
	var q queryQueue
	for i := range 10 {
		q.push(waitingQuery{req: &messages.Request{UID: 1000, Args: []string{string(rune('a' + i))}}})
	}
	q.push(waitingQuery{req: &messages.Request{UID: 0, Args: []string{"root"}}})
	q.push(waitingQuery{req: &messages.Request{UID: 1001, Args: []string{"other"}}})
	var started []string
	for {
		w, ok := q.next()
		if !ok {
			break
		}
		started = append(started, w.req.Args[0])
	}
	// 4 slots: a, root, other (in turn), then b; 1000 is at its bound.
	if got := len(started); got != maxQueries {
		t.Fatalf("started %q, want %d", started, maxQueries)
	}
	want := map[string]bool{"a": true, "root": true, "other": true, "b": true}
	for _, s := range started {
		if !want[s] {
			t.Fatalf("started %q", started)
		}
	}
	q.done(0)
	if w, ok := q.next(); ok {
		t.Fatalf("uid 1000 holds %d slots and took one more (%s)", maxQueriesUID, w.req.Args[0])
	}
	q.done(1000)
	if w, ok := q.next(); !ok || w.req.Args[0] != "c" {
		t.Fatalf("after a slot of 1000 is free: %+v %v", w, ok)
	}
	var drained int
	q.drain(func(waitingQuery) { drained++ })
	if drained != 7 || q.queued != 0 {
		t.Fatalf("drained %d, %d left", drained, q.queued)
	}
}

func TestWarnLimiter(t *testing.T) {
	var w warnLimiter
	now := w.start.Add(warnWindow)
	logged := 0
	for range 1000 {
		if _, ok := w.allow(now); ok {
			logged++
		}
	}
	if logged != warnBurst {
		t.Fatalf("%d warnings logged in a window, want %d", logged, warnBurst)
	}
	dropped, ok := w.allow(now.Add(warnWindow))
	if !ok || dropped != 1000-warnBurst {
		t.Fatalf("next window: %v, dropped %d, want %d", ok, dropped, 1000-warnBurst)
	}
}
