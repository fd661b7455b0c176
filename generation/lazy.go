package generation

import "sync"

// LazyBlob is a Blob made when it is first read. /index.json is asked for
// by people and tools, rarely, and writing it for 100,000 packages was a
// fifth of every rescan; a generation nobody asks it of never makes it.
type LazyBlob struct {
	make func() (Blob, error)

	mu   sync.Mutex // one maker at a time; the others wait for its Blob
	done bool
	blob Blob
}

// NewLazyBlob returns a LazyBlob that make makes on first use. A failed
// make (a full disk) is tried again by the next reader.
func NewLazyBlob(make func() (Blob, error)) *LazyBlob { return &LazyBlob{make: make} }

// Get returns the blob, making it if no reader has yet. A nil LazyBlob is
// empty.
func (l *LazyBlob) Get() (Blob, error) {
	if l == nil {
		return Blob{}, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		b, err := l.make()
		if err != nil {
			return Blob{}, err
		}
		l.blob, l.done = b, true
		l.make = nil // what it closed over may go
	}
	return l.blob, nil
}
