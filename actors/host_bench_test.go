package actors

import (
	"testing"

	"tpm/messages/wire"
)

// BenchmarkInfoThroughFIFOs is one info request through the FIFOs, from
// the request line to the final reply, as tpm info does it.
func BenchmarkInfoThroughFIFOs(b *testing.B) {
	_, run := startPair(b)
	for b.Loop() {
		if r := final(b, request(b, run, "info", "small")); r.Type != wire.ReplyResult {
			b.Fatalf("info: %+v", r)
		}
	}
}
