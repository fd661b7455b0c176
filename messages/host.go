package messages

// The host daemon's messages (tpmd client): what its actors say to each
// other. They travel only inside one process, so they are plain Go values;
// a *Reply sent to a request's actor is written to that request's reply
// FIFO. Requests (*Request) reach the installer with the request's actor as
// sender, so answers go straight back to it.

import (
	"github.com/asynkron/protoactor-go/actor"

	"tpm/builder"
	"tpm/index"
	"tpm/messages/wire"
)

// IndexReady carries a verified index from the syncer, through the host's
// supervisor (which keeps the last one for a restarted installer), to the
// installer. The snapshot is immutable. Synced are the requests' actors of
// the syncs this fetch answers: the installer answers them (with
// Changed) once it has the index, so a query sent after "tpm sync" said
// generation N is answered from generation N.
type IndexReady struct {
	Index   *index.Snapshot
	Synced  []*actor.PID
	Changed bool
}

// NeedIndex is sent by a (re)started installer to the supervisor, which
// answers with IndexReady when it has an index.
type NeedIndex struct{}

// SyncNow asks the syncer to fetch the index at once; the sender (a
// request's actor) gets the outcome as a final Reply with a SyncResult.
type SyncNow struct{}

// NeedSeeds is sent by a (re)started swarm actor; the supervisor forwards
// it to the installer, which answers the swarm with SeedFiles: every cache
// file a receipt references (Add), and those none does (Remove).
type NeedSeeds struct{}

// SeedFile is one cache file and its torrent.
type SeedFile struct {
	File      string
	InfoHash  [20]byte
	InfoBytes []byte
	SHA256    string
	Size      int64
}

// SeedFiles asks the swarm actor to seed (Add) or drop and delete (Remove)
// cache files. Reset says Add is everything to seed (the answer to
// NeedSeeds). The swarm answers nothing.
type SeedFiles struct {
	Add, Remove []SeedFile
	Reset       bool
}

// Download asks the swarm actor for one package file of a transaction. The
// sender gets DownloadProgress now and then and exactly one DownloadDone.
type Download struct {
	Txn uint64
	SeedFile
}

// DownloadProgress is where a download is.
type DownloadProgress struct {
	Txn          uint64
	File         string
	Bytes, Total int64
	Rate         float64 // bytes per second
	Peers        int
}

// DownloadDone is where a package file is (Path), or why it is not.
type DownloadDone struct {
	Txn  uint64
	File string
	Path string
	Err  error
}

// CancelDownloads stops the downloads of a transaction; each still ends with
// its DownloadDone.
type CancelDownloads struct{ Txn uint64 }

// SwarmStatusRequest asks the swarm actor for its figures (SwarmStatus).
type SwarmStatusRequest struct{}

// SwarmStatus is what the host's torrent client does.
type SwarmStatus struct {
	Port                          int
	Seeding, Peers                int
	BytesUp, BytesDown            int64
	Downloading, DownloadsWaiting int
}

// BuildRequest asks the builder actor to build one source package. Output
// lines go to OutputTo (a request's actor) as output replies; the sender
// gets one BuildResult. A restart or stop of the builder kills the build
// and answers with an error.
type BuildRequest struct {
	ID       uint64
	Spec     builder.Spec
	OutputTo *actor.PID
}

// BuildResult is a build's outcome.
type BuildResult struct {
	ID     uint64
	Result *builder.Result
	Err    error
}

// RequestAnswered tells the gateway that a request's final reply is
// written: its slot is free at once, so a client asking one question after
// another is never refused for the actors that linger after answering.
type RequestAnswered struct{ ID string }

// Part is one part of a long result, sent to a request's actor by a
// goroutine that waits for PartWritten before it reads the next: a CLI
// that reads slowly slows its own request only, and nothing piles up in a
// mailbox.
type Part struct{ Reply *wire.Reply }

// PartWritten answers Part once it is written; Gone says the request's
// CLI left, so the rest of the result is not wanted.
type PartWritten struct{ Gone bool }
