// Package generation holds the repository server's unit of publication: a
// generation is the signed index and the torrents of exactly the packages it
// lists. The scanner (repo) makes them, the publisher (publish) serves them
// and the seeder seeds them.
//
// A Generation is immutable once made: the scanner hands the same value to
// the publisher and the seeder, and readers on many goroutines share it
// without locks. Nothing may modify a Generation or anything it points to.
package generation

import (
	"time"

	"tpm/manifest"
)

// Generation is one publication of the repository: the signed index and the
// torrents of exactly the packages it lists. The publisher swaps whole
// generations, so a client never sees an index and torrents that disagree.
type Generation struct {
	Number  uint64    // grows with every change; recorded in the index
	Updated time.Time // when the scan that made it committed

	Index     Blob      // /index.db: a bbolt snapshot of the catalog
	IndexSig  []byte    // /index.db.sig: minisign signature of Index
	IndexJSON *LazyBlob // /index.json: the same catalog as JSON, made when first asked for
	IndexETag string    // quoted strong ETag of Index (the SHA-256 of IndexSig, else of Index)

	// Trackers and WebSeeds are what every package's .torrent names (the
	// publisher makes it on request: the info dictionary and these).
	Trackers, WebSeeds []string

	Packages []Package  // by file name
	Rejected []Rejected // by file name

	// Changes, when known, is what this generation changed of the one
	// before: those that follow every generation (the seeder) apply it
	// instead of comparing 100,000 packages.
	Changes *Changes

	byFile map[string]int
	byHash map[[20]byte]int
}

// Package is one package of a generation.
type Package struct {
	manifest.Manifest        // what the package says of itself
	File              string // base name in the package directory
	Size              int64
	SHA256            string   // hex
	InfoHash          [20]byte // of InfoBytes
	InfoBytes         []byte   // bencoded info dictionary
	// The file's stat when it was hashed: the publisher serves the file only
	// while it still looks like this.
	MTimeNS int64
	CTimeNS int64
	Inode   uint64
}

// Changes is what a generation changed of generation From.
type Changes struct {
	From uint64
	// Added are the packages new in this generation, or whose files were
	// hashed again (a file touched, its bytes the same); Removed are those
	// of From it no longer publishes.
	Added, Removed [][20]byte
}

// Rejected is a file of the package directory that is not published.
type Rejected struct {
	File   string
	Reason string
}

// New indexes g's packages by file name and infohash and returns
// it; g must not be modified afterwards.
func New(g Generation) *Generation {
	g.byFile = make(map[string]int, len(g.Packages))
	g.byHash = make(map[[20]byte]int, len(g.Packages))
	for i := range g.Packages {
		g.byFile[g.Packages[i].File] = i
		g.byHash[g.Packages[i].InfoHash] = i
	}
	return &g
}

// Package returns the published package of file, or nil.
func (g *Generation) Package(file string) *Package {
	if i, ok := g.byFile[file]; ok {
		return &g.Packages[i]
	}
	return nil
}

// ByInfoHash returns the published package whose torrent has infohash ih, or
// nil.
func (g *Generation) ByInfoHash(ih [20]byte) *Package {
	if i, ok := g.byHash[ih]; ok {
		return &g.Packages[i]
	}
	return nil
}
