// Package fairqueue schedules work of many users over a few slots: at most
// Slots run at once and PerUser of one user, and the users with work
// waiting are taken in turn, so a user's flood waits behind itself only and
// another user's request always finds a slot soon. It is a plain value for
// one goroutine (an actor) to own.
package fairqueue

// Queue holds the items waiting and counts those running, by user.
type Queue[T any] struct {
	Slots   int // running at once, in all
	PerUser int // running at once for one user
	waiting map[int][]T
	turn    []int // users with items waiting, the next first
	running map[int]int
	queued  int
	total   int // running
}

// New is a queue with the given slots.
func New[T any](slots, perUser int) *Queue[T] {
	return &Queue[T]{Slots: slots, PerUser: perUser, waiting: map[int][]T{}, running: map[int]int{}}
}

// Push adds user's item behind the user's others.
func (q *Queue[T]) Push(user int, item T) {
	if len(q.waiting[user]) == 0 {
		q.turn = append(q.turn, user)
	}
	q.waiting[user] = append(q.waiting[user], item)
	q.queued++
}

// Next takes the item to start, if a slot is free for it, and counts it
// as running until Done.
func (q *Queue[T]) Next() (user int, item T, ok bool) {
	if q.total >= q.Slots {
		return 0, item, false
	}
	for i, u := range q.turn {
		if q.running[u] >= q.PerUser {
			continue
		}
		item = q.waiting[u][0]
		q.waiting[u] = q.waiting[u][1:]
		q.turn = append(q.turn[:i:i], q.turn[i+1:]...)
		if len(q.waiting[u]) > 0 {
			q.turn = append(q.turn, u) // the others go first
		} else {
			delete(q.waiting, u)
		}
		q.queued--
		q.running[u]++
		q.total++
		return u, item, true
	}
	return 0, item, false
}

// Done frees the slot of one of user's running items.
func (q *Queue[T]) Done(user int) {
	if q.running[user] <= 0 {
		return // not running: a slot of an instance reset since
	}
	q.total--
	if q.running[user]--; q.running[user] == 0 {
		delete(q.running, user)
	}
}

// Waiting is how many items wait.
func (q *Queue[T]) Waiting() int { return q.queued }

// Running is how many items run.
func (q *Queue[T]) Running() int { return q.total }

// Reset empties the queue, passing each waiting item to fn, and forgets
// the running ones.
func (q *Queue[T]) Reset(fn func(T)) {
	for _, u := range q.turn {
		for _, it := range q.waiting[u] {
			fn(it)
		}
	}
	q.waiting, q.turn, q.queued = map[int][]T{}, nil, 0
	q.running, q.total = map[int]int{}, 0
}
