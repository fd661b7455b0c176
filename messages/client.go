package messages

// The host daemon's messages (tpmd client): what its actors say to each
// other. Like the server's, they stay inside one process, so they are plain
// Go values. Shared state that outlives an actor's restart (the index, the
// engine, the torrent client) is not carried here but held by the daemon.

import (
	"context"
	"errors"
	"time"
)

// Replier is the stream back to one CLI request. Send never blocks for
// long; it returns an error wrapping ErrReplyGone once the CLI has left.
// After a final reply (result or error) every further Send is dropped, so
// that a supervisor reporting a failure and a late goroutine never both end
// the stream.
type Replier interface {
	Send(r *Reply) error
	// Gone is closed when a write found the CLI gone.
	Gone() <-chan struct{}
	// Finished reports whether the final reply was sent.
	Finished() bool
}

// ErrReplyGone means the CLI that asked no longer reads its reply FIFO.
var ErrReplyGone = errors.New("the CLI went away")

// FifoLine is one line (or a read failure) from a request FIFO.
type FifoLine struct {
	Admin bool // from admin.fifo
	Line  []byte
	Err   error
}

// AdminRequest asks the installer for install, upgrade or remove.
type AdminRequest struct {
	Req   *Request
	Reply Replier
}

// TransactionDone tells the installer a request's goroutine finished.
type TransactionDone struct {
	ID string
}

// SyncNow asks the syncer to fetch the index at once; Reply (may be nil)
// gets the outcome.
type SyncNow struct {
	Reply Replier
}

// SyncTick is the syncer's periodic timer.
type SyncTick struct{}

// SyncDone is the outcome of one fetch of the index.
type SyncDone struct {
	Generation uint64
	Changed    bool
	Err        error
	Took       time.Duration
}

// SyncResult is the result data of the "sync" verb.
type SyncResult struct {
	Generation uint64 `json:"generation"`
	Changed    bool   `json:"changed"`
}

// Download asks the swarm actor for one package file; the outcome comes
// back on Done (buffered by the sender) exactly once.
type Download struct {
	Ctx       context.Context
	File      string
	InfoHash  [20]byte
	InfoBytes []byte
	SHA256    string
	Size      int64
	Progress  func(bytes, total int64, rate float64, peers int)
	Done      chan<- DownloadResult
}

// DownloadResult is where a package file is, or why it is not.
type DownloadResult struct {
	File string
	Path string
	Err  error
}

// SeedFiles asks the swarm actor to seed (Add) or drop and delete (Remove)
// cache files; it answers nothing.
type SeedFiles struct {
	Add    []SeedFile
	Remove []SeedFile
}

// SeedFile is one cache file and its torrent.
type SeedFile struct {
	File      string
	InfoHash  [20]byte
	InfoBytes []byte
	SHA256    string
	Size      int64
}

// SwarmReady tells the swarm actor its start-up seeding finished.
type SwarmReady struct {
	Seeded  int
	Removed int
	Err     error
}

// Build asks the builder to run one source build (Run, which configures,
// makes and installs into a staging folder) and to send its outcome on
// Done. The builder runs it off its mailbox and cancels it when it is
// restarted or the daemon stops; the engine's transaction waits on Done.
type Build struct {
	Name string
	Run  func(ctx context.Context) error
	Done chan<- error // buffered by the sender: the builder never blocks on it
}

// BuildFinished tells the builder a build's goroutine ended.
type BuildFinished struct{ Key string }
