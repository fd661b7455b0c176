package fairqueue

import (
	"fmt"
	"slices"
	"testing"
)

func TestUsersTakeTurns(t *testing.T) {
	q := New[string](4, 2)
	for i := range 5 {
		q.Push(1000, fmt.Sprint("flood", i))
	}
	q.Push(0, "root")
	q.Push(1001, "other")
	var got []string
	for {
		_, it, ok := q.Next()
		if !ok {
			break
		}
		got = append(got, it)
	}
	// The flooding user has its 2 slots; root and the other user get theirs.
	want := []string{"flood0", "root", "other", "flood1"}
	if !slices.Equal(got, want) {
		t.Fatalf("started %q, want %q", got, want)
	}
	if q.Waiting() != 3 || q.Running() != 4 {
		t.Fatalf("waiting %d running %d, want 3 and 4", q.Waiting(), q.Running())
	}
}

func TestPerUserCapHoldsWithSlotsFree(t *testing.T) {
	q := New[int](4, 2)
	for i := range 3 {
		q.Push(7, i)
	}
	for range 2 {
		if _, _, ok := q.Next(); !ok {
			t.Fatal("a free slot was not taken")
		}
	}
	if _, it, ok := q.Next(); ok {
		t.Fatalf("a third item of one user started (%d) with a per-user cap of 2", it)
	}
	q.Done(7)
	if u, it, ok := q.Next(); !ok || u != 7 || it != 2 {
		t.Fatalf("after one ended: %d %d %v, want user 7's item 2", u, it, ok)
	}
}

func TestDoneOfUnknownUserChangesNothing(t *testing.T) {
	q := New[int](1, 1)
	q.Push(1, 1)
	q.Push(2, 2)
	q.Next()
	q.Done(2) // never started: must not free user 1's slot
	if _, _, ok := q.Next(); ok {
		t.Fatal("a stray Done freed a slot")
	}
}

func TestResetHandsBackWhatWaits(t *testing.T) {
	q := New[int](1, 1)
	for i := range 3 {
		q.Push(i, i)
	}
	q.Next()
	var back []int
	q.Reset(func(i int) { back = append(back, i) })
	if !slices.Equal(back, []int{1, 2}) || q.Waiting() != 0 || q.Running() != 0 {
		t.Fatalf("reset handed back %v, left %d waiting %d running", back, q.Waiting(), q.Running())
	}
	q.Push(5, 5)
	if u, _, ok := q.Next(); !ok || u != 5 {
		t.Fatal("after a reset the queue did not start new work")
	}
}
