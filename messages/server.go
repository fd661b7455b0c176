package messages

// The repository server's messages: what its actors say to each other. They
// travel only inside one tpmd process, so they are plain Go values, not a
// versioned wire format.

import "tpm/generation"

// Rescan asks the scanner for a scan now: on SIGHUP, on the timer, on a
// request, or when the publisher finds a file that changed since its scan.
// Requests that arrive during a scan fold into one scan after it.
type Rescan struct {
	Reason string
	// Verify reads every published file again (repo.Scanner.Verify).
	Verify bool
}

// GenerationReady carries a new generation from the scanner, through the
// server's supervisor, to the publisher and the seeder.
type GenerationReady struct {
	Generation *generation.Generation
}

// NeedGeneration is sent by a (re)started publisher or seeder to the
// supervisor, which answers with the last generation if there is one.
type NeedGeneration struct{}
