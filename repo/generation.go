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
	var entries []*store.CatalogEntry
	var rejections []*store.Rejection
	var number uint64
	var updated time.Time
	// The snapshot and the entries come from one transaction, so the index
	// and the torrents cannot disagree.
	err := s.cat.View(func(tx *store.CatalogTx) error {
		if _, err := tx.WriteTo(&snapBuf); err != nil {
			return err
		}
		var err error
		if entries, err = tx.Entries(); err != nil {
			return err
		}
		if rejections, err = tx.Rejections(); err != nil {
			return err
		}
		number, updated = tx.Generation(), tx.Updated()
		return nil
	})
	snap := snapBuf.Bytes()
	if err != nil {
		return nil, fmt.Errorf("scan: read snapshot: %w", err)
	}

	g := generation.Generation{
		Number:   number,
		Updated:  updated,
		Index:    snap,
		Packages: make([]generation.Package, 0, len(entries)),
	}
	doc := IndexJSON{Format: IndexFormat, Generation: number, Updated: updated,
		Packages: make([]IndexPackage, 0, len(entries)), Rejected: []IndexReject{}}
	webSeeds := append([]string{swarm.PublicWebSeed(s.opts.PublicURL)}, s.opts.WebSeeds...)
	for _, e := range entries {
		var ih [20]byte
		if _, err := hex.Decode(ih[:], []byte(e.InfoHash)); err != nil {
			return nil, fmt.Errorf("scan: catalog entry %s: bad infohash: %w", e.File, err)
		}
		tor, err := swarm.MetaInfoFile(e.InfoBytes, s.opts.Trackers, webSeeds)
		if err != nil {
			return nil, fmt.Errorf("scan: %s: %w", e.File, err)
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
	for _, r := range rejections {
		g.Rejected = append(g.Rejected, generation.Rejected{File: r.File, Reason: r.Reason})
		doc.Rejected = append(doc.Rejected, IndexReject{File: r.File, Reason: r.Reason})
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", " ")
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("scan: index.json: %w", err)
	}
	g.IndexJSON = buf.Bytes()

	sum := sha256.Sum256(snap)
	g.IndexETag = `"` + hex.EncodeToString(sum[:]) + `"`
	if s.opts.Signer != nil {
		comment := fmt.Sprintf("timestamp:%d\tfile:index.db\tgeneration:%d", updated.Unix(), number)
		g.IndexSig, err = s.opts.Signer.Sign(snap, comment)
		if err != nil {
			return nil, fmt.Errorf("scan: sign index: %w", err)
		}
	}
	return generation.New(g), nil
}
