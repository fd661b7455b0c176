package swarm

import (
	"fmt"
	"io"
	"runtime"
	"testing"

	alog "github.com/anacrolix/log"
)

// anacrolix/torrent names each torrent's logger after its infohash and
// logs through it at debug level, filtered out or not; anacrolix/log
// v0.17.0 kept every permutation of names it was ever given (about 2 KB per
// torrent a client held, for good). The copy in third_party keeps none
// unless GO_LOG_REPORT_RULES asks for its reports.
func TestLoggerKeepsNothingPerName(t *testing.T) {
	if testing.Short() {
		t.Skip("measures the heap")
	}
	base := alog.NewLogger("test")
	base.SetHandlers(alog.StreamHandler{W: io.Discard, Fmt: alog.LineFormatter})
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	const names = 20000
	for i := range names {
		base.WithNames(fmt.Sprintf("%040x", i)).Levelf(alog.Debug, "dropping connection %d", i)
	}
	if grew := int64(heap()) - int64(before); grew > 2<<20 {
		t.Fatalf("logging under %d names kept %d KB", names, grew>>10)
	}
}
