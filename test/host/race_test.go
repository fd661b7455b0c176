//go:build race

package host

// Under -race the daemon is built with the race detector too, so the
// end-to-end tests check the daemon's goroutines, not just the test's.
func init() { buildFlags = append(buildFlags, "-race") }
