package repo

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"tpm/generation"
	"tpm/manifest"
	"tpm/store"
	"tpm/swarm"
)

// IndexFormat is the "format" of /index.json, CatalogFormat's twin.
const IndexFormat = 1

// IndexJSON is the document /index.json serves: the published catalog in
// JSON, for tools and people. Clients use the signed /index.db.
type IndexJSON struct {
	Format     int            `json:"format"`
	Generation uint64         `json:"generation"`
	Updated    time.Time      `json:"updated"`
	Packages   []IndexPackage `json:"packages"`
	Rejected   []IndexReject  `json:"rejected"`
}

// IndexPackage is one package of IndexJSON.
type IndexPackage struct {
	manifest.Manifest
	File      string `json:"file"`
	Size      int64  `json:"size"`
	SHA256    string `json:"sha256"`
	InfoHash  string `json:"infohash"`
	InfoBytes []byte `json:"info"`
	Torrent   string `json:"torrent"` // path of the .torrent on the server
}

// IndexReject is one rejected file of IndexJSON.
type IndexReject struct {
	File   string `json:"file"`
	Reason string `json:"reason"`
}

// generation builds the generation of the catalog as it is now: its
// snapshot, signature, JSON and torrents. The caller holds s.mu, so the
// catalog does not change in between.
func (s *Scanner) generation() (*generation.Generation, error) {
	var snapBuf bytes.Buffer
	var p Parts
	// The snapshot and the entries come from one transaction, so the index
	// and the torrents cannot disagree.
	err := s.cat.View(func(tx *store.CatalogTx) error {
		if _, err := tx.WriteTo(&snapBuf); err != nil {
			return err
		}
		var err error
		p, err = PartsOf(tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("scan: read snapshot: %w", err)
	}
	p.Index = snapBuf.Bytes()
	p.PublicURL, p.WebSeeds = s.opts.PublicURL, s.opts.WebSeeds
	if s.opts.Signer != nil {
		comment := fmt.Sprintf("timestamp:%d\tfile:index.db\tgeneration:%d", p.Updated.Unix(), p.Number)
		p.IndexSig, err = s.opts.Signer.Sign(p.Index, comment)
		if err != nil {
			return nil, fmt.Errorf("scan: sign index: %w", err)
		}
	}
	return Build(p)
}

// Parts is what a generation is made of: a catalog's snapshot, its
// signature and what it holds, and where the torrents say the swarm is.
type Parts struct {
	Index, IndexSig []byte
	Number          uint64
	Updated         time.Time
	Entries         []*store.CatalogEntry
	Rejections      []*store.Rejection
	Trackers        []string // the announce list
	// PublicURL is the server publishing it, the first web seed; WebSeeds
	// are the others (mirrors, or a mirror's upstreams).
	PublicURL string
	WebSeeds  []string
}

// PartsOf reads what a catalog holds: the server's own, or the verified
// index a mirror keeps.
func PartsOf(tx *store.CatalogTx) (Parts, error) {
	p := Parts{Number: tx.Generation(), Updated: tx.Updated(), Trackers: tx.Trackers()}
	var err error
	if p.Entries, err = tx.Entries(); err != nil {
		return p, err
	}
	p.Rejections, err = tx.Rejections()
	return p, err
}

// Build makes the generation of p: its JSON and its torrents. The entries'
// stats must be those of the files where they are published.
func Build(p Parts) (*generation.Generation, error) {
	g := generation.Generation{
		Number:   p.Number,
		Updated:  p.Updated,
		Index:    p.Index,
		IndexSig: p.IndexSig,
		Packages: make([]generation.Package, 0, len(p.Entries)),
	}
	doc := IndexJSON{Format: IndexFormat, Generation: p.Number, Updated: p.Updated,
		Packages: make([]IndexPackage, 0, len(p.Entries)), Rejected: []IndexReject{}}
	webSeeds := append([]string{swarm.PublicWebSeed(p.PublicURL)}, p.WebSeeds...)
	for _, e := range p.Entries {
		var ih [20]byte
		if _, err := hex.Decode(ih[:], []byte(e.InfoHash)); err != nil {
			return nil, fmt.Errorf("catalog entry %s: bad infohash: %w", e.File, err)
		}
		tor, err := swarm.MetaInfoFile(e.InfoBytes, p.Trackers, webSeeds)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.File, err)
		}
		g.Packages = append(g.Packages, generation.Package{
			Manifest: e.Manifest, File: e.File,
			Size: e.Size, SHA256: e.SHA256, InfoHash: ih, InfoBytes: e.InfoBytes, Torrent: tor,
			MTimeNS: e.MTimeNS, CTimeNS: e.CTimeNS, Inode: e.Inode,
		})
		doc.Packages = append(doc.Packages, IndexPackage{
			Manifest: e.Manifest, File: e.File, Size: e.Size, SHA256: e.SHA256,
			InfoHash: e.InfoHash, InfoBytes: e.InfoBytes, Torrent: "/torrents/" + e.File + ".torrent",
		})
	}
	for _, r := range p.Rejections {
		g.Rejected = append(g.Rejected, generation.Rejected{File: r.File, Reason: r.Reason})
		doc.Rejected = append(doc.Rejected, IndexReject{File: r.File, Reason: r.Reason})
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", " ")
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("index.json: %w", err)
	}
	g.IndexJSON = buf.Bytes()
	sum := sha256.Sum256(p.Index)
	g.IndexETag = `"` + hex.EncodeToString(sum[:]) + `"`
	return generation.New(g), nil
}
