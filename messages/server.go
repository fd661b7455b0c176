package messages

// The repository server's messages: what its actors say to each other. They
// travel only inside one tpmd process, so they are plain Go values, not a
// versioned wire format.

import (
	"github.com/asynkron/protoactor-go/actor"

	"tpm/generation"
)

// Demand says that a host announced to the server's tracker that it wants
// a package: the seeder (or the mirror's copier) wakes its torrent, if
// dormant, before the host's handshake arrives.
type Demand struct {
	InfoHash [20]byte
}

// Rescan asks the scanner for a scan now: on SIGHUP, on the timer, on a
// request, or when the publisher finds a file that changed since its scan.
// Requests that arrive during a scan fold into one scan after it.
type Rescan struct {
	Reason string
	// Verify reads every published file again (repo.Scanner.Verify).
	Verify bool
	// Whole lists the directory whole instead of taking its changes from
	// the scanner's watch (repo.Scanner.ScanWhole).
	Whole bool
}

// GenerationReady carries a new generation from the scanner, through the
// server's supervisor, to the publisher and the seeder.
type GenerationReady struct {
	Generation *generation.Generation
}

// NeedGeneration is sent by a (re)started publisher or seeder to the
// supervisor, which answers with the last generation if there is one.
type NeedGeneration struct{}

// SeederUp tells the publisher, through the supervisor (which keeps the
// last for a restarted publisher), of the torrent client that seeds what
// is published: the server's seeder, or the mirror's copier. The tracker
// names it as a peer on Port; /healthz and the metrics ask Figures (the
// actor that owns the client) for its SeederFigures. Port 0 says none
// runs.
type SeederUp struct {
	Port    int
	Figures *actor.PID
}

// SeederFiguresRequest asks the actor that owns the seeding torrent client
// for its figures, answered with SeederFigures.
type SeederFiguresRequest struct{}

// SeederFigures is what /healthz and the metrics say of the seeding torrent
// client; all zero when none is open.
type SeederFigures struct {
	Loaded, Complete int   // torrents held, and those verified and seeded
	Live             int   // torrents live (not dormant)
	Uploaded         int64 // data bytes sent to peers since the start
	// Refused counts the piece requests refused since the start because
	// other peers have the piece or are getting it.
	Refused int64
}
