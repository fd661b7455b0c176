package swarm

import (
	"fmt"
	"testing"
	"time"
)

// A file seeded before it was recorded whole is recorded once its pieces
// are checked, however fast the check: a check over before the torrent was
// looked at left the file unrecorded until it went dormant.
func TestSeededFileIsRecordedWholeOnceChecked(t *testing.T) {
	c := newTestPeer(t)
	for i := range 30 {
		tor := writePackage(t, c.cfg.CacheDir, fmt.Sprintf("s%d-1-any.tpkg", i), randomBytes(64<<10, uint64(40+i)))
		spec := specOf(tor, "")
		spec.WebSeeds = nil
		if err := c.Seed(spec); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 20*time.Second, fmt.Sprintf("file %d recorded whole", i), func() bool { return c.completion.isWhole(tor.InfoHash) })
	}
}
