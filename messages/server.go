package messages

// The repository server's messages: what a scan publishes (Generation) and
// what the server's actors say to each other. They travel only inside one
// tpmd process, so they are plain Go values, not a versioned wire format.
//
// A Generation is immutable once made: the scanner hands the same value to
// the publisher and the seeder, and readers on many goroutines share it
// without locks. Nothing may modify a Generation or anything it points to.

import (
	"time"
)

// Generation is one publication of the repository: the signed index and the
// torrents of exactly the packages it lists. The publisher swaps whole
// generations, so a client never sees an index and torrents that disagree.
type Generation struct {
	Number  uint64    // grows with every change; recorded in the index
	Updated time.Time // when the scan that made it committed

	Index     []byte // /index.db: a bbolt snapshot of the catalog
	IndexSig  []byte // /index.db.sig: minisign signature of Index
	IndexJSON []byte // /index.json: the same catalog as JSON
	IndexETag string // quoted strong ETag of Index (its SHA-256)

	Packages []PublishedPackage // by file name
	Rejected []RejectedFile     // by file name

	byFile map[string]int
	byHash map[[20]byte]int
}

// PublishedPackage is one package of a generation.
type PublishedPackage struct {
	File         string // base name in the package directory
	Name         string
	Version      string
	Architecture string
	Size         int64
	SHA256       string   // hex
	InfoHash     [20]byte // of InfoBytes
	InfoBytes    []byte   // bencoded info dictionary
	Torrent      []byte   // the whole .torrent, for /torrents/FILE.torrent
	// The file's stat when it was hashed: the publisher serves the file only
	// while it still looks like this.
	MTimeNS int64
	CTimeNS int64
	Inode   uint64
}

// RejectedFile is a file of the package directory that is not published.
type RejectedFile struct {
	File   string
	Reason string
}

// NewGeneration indexes g's packages by file name and infohash and returns
// it; g must not be modified afterwards.
func NewGeneration(g Generation) *Generation {
	g.byFile = make(map[string]int, len(g.Packages))
	g.byHash = make(map[[20]byte]int, len(g.Packages))
	for i := range g.Packages {
		g.byFile[g.Packages[i].File] = i
		g.byHash[g.Packages[i].InfoHash] = i
	}
	return &g
}

// Package returns the published package of file, or nil.
func (g *Generation) Package(file string) *PublishedPackage {
	if i, ok := g.byFile[file]; ok {
		return &g.Packages[i]
	}
	return nil
}

// ByInfoHash returns the published package whose torrent has infohash ih, or
// nil.
func (g *Generation) ByInfoHash(ih [20]byte) *PublishedPackage {
	if i, ok := g.byHash[ih]; ok {
		return &g.Packages[i]
	}
	return nil
}

// ScanStats is what one scan did, for its log line.
type ScanStats struct {
	Added, Changed, Removed, Rejected int // files newly in each state
	Unchanged                         int // files taken from the catalog without reading
	Skipped                           int // files that changed while being read; the next scan retries
	BytesRead                         int64
	Duration                          time.Duration
	Published                         int  // packages in the resulting generation
	NewGeneration                     bool // false when nothing changed
	Rejections                        []RejectedFile
}

// Rescan asks the scanner for a scan now: on SIGHUP, on the timer, on a
// request, or when the publisher finds a file that changed since its scan.
// Requests that arrive during a scan fold into one scan after it.
type Rescan struct {
	Reason string
}

// ScanFinished is sent by a scan's goroutine to the scanner that started it.
type ScanFinished struct {
	Seq        uint64      // which scan of the actor instance; results of an earlier instance are still used
	Generation *Generation // nil on error
	Stats      ScanStats
	Err        error
}

// GenerationReady carries a new generation from the scanner, through the
// server's supervisor, to the publisher and the seeder.
type GenerationReady struct {
	Generation *Generation
}

// NeedGeneration is sent by a (re)started publisher or seeder to the
// supervisor, which answers with the last generation if there is one.
type NeedGeneration struct{}

// SeedSynced is sent by a seeder's sync goroutine to the seeder actor.
type SeedSynced struct {
	Number               uint64
	Added, Dropped, Kept int
	Err                  error
	Duration             time.Duration
}

// Crash makes the actor that receives it panic. Tests send it to see the
// supervisor restart a component; nothing else does.
type Crash struct {
	Reason string
}
