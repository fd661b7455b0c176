package repo

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
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
	var p Parts
	// The snapshot and the entries come from one transaction, so the index
	// and the torrents cannot disagree.
	err := s.cat.View(func(tx *store.CatalogTx) error {
		sum := sha256.New()
		index, err := generation.SpoolBlob(s.opts.SpoolDir, func(w io.Writer) error {
			_, err := tx.WriteTo(io.MultiWriter(w, sum))
			return err
		})
		if err != nil {
			return err
		}
		if p, err = PartsOf(tx); err != nil {
			return err
		}
		p.Index = index
		sum.Sum(p.IndexSum[:0])
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan: read snapshot: %w", err)
	}
	p.PublicURL, p.WebSeeds, p.SpoolDir = s.opts.PublicURL, s.opts.WebSeeds, s.opts.SpoolDir
	if s.opts.Signer != nil {
		comment := fmt.Sprintf("timestamp:%d\tfile:index.db\tgeneration:%d", p.Updated.Unix(), p.Number)
		p.IndexSig, err = s.opts.Signer.SignReader(p.Index.Reader(), comment)
		if err != nil {
			return nil, fmt.Errorf("scan: sign index: %w", err)
		}
	}
	return Build(p)
}

// Parts is what a generation is made of: a catalog's snapshot, its
// signature and what it holds, and where the torrents say the swarm is.
type Parts struct {
	Index      generation.Blob
	IndexSum   [32]byte // SHA-256 of Index
	IndexSig   []byte
	Number     uint64
	Updated    time.Time
	Entries    []*store.CatalogEntry
	Rejections []*store.Rejection
	Trackers   []string // the announce list
	// PublicURL is the server publishing it, the first web seed; WebSeeds
	// are the others (mirrors, or a mirror's upstreams).
	PublicURL string
	WebSeeds  []string
	// SpoolDir is where index.json is spooled ("": memory).
	SpoolDir string
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

// Build makes the generation of p: its packages and its JSON. The
// entries' stats must be those of the files where they are published.
func Build(p Parts) (*generation.Generation, error) {
	g := generation.Generation{
		Number:   p.Number,
		Updated:  p.Updated,
		Index:    p.Index,
		IndexSig: p.IndexSig,
		Packages: make([]generation.Package, 0, len(p.Entries)),
		Trackers: p.Trackers,
		WebSeeds: append([]string{swarm.PublicWebSeed(p.PublicURL)}, p.WebSeeds...),
	}
	for _, e := range p.Entries {
		var ih [20]byte
		if _, err := hex.Decode(ih[:], []byte(e.InfoHash)); err != nil {
			return nil, fmt.Errorf("catalog entry %s: bad infohash: %w", e.File, err)
		}
		g.Packages = append(g.Packages, generation.Package{
			Manifest: e.Manifest, File: e.File,
			Size: e.Size, SHA256: e.SHA256, InfoHash: ih, InfoBytes: e.InfoBytes,
			MTimeNS: e.MTimeNS, CTimeNS: e.CTimeNS, Inode: e.Inode,
		})
	}
	for _, r := range p.Rejections {
		g.Rejected = append(g.Rejected, generation.Rejected{File: r.File, Reason: r.Reason})
	}
	var err error
	g.IndexJSON, err = generation.SpoolBlob(p.SpoolDir, func(w io.Writer) error { return writeIndexJSON(w, p) })
	if err != nil {
		return nil, fmt.Errorf("index.json: %w", err)
	}
	g.IndexETag = `"` + hex.EncodeToString(p.IndexSum[:]) + `"`
	return generation.New(g), nil
}

// writeIndexJSON writes the IndexJSON of p one package at a time: encoded
// whole, the document of 100,000 packages held 50 MB at once.
func writeIndexJSON(w io.Writer, p Parts) error {
	updated, err := json.Marshal(p.Updated)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "{\n \"format\": %d,\n \"generation\": %d,\n \"updated\": %s,\n \"packages\": [", IndexFormat, p.Number, updated)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("  ", " ")
	item := func(i int, v any) error {
		buf.Reset()
		if err := enc.Encode(v); err != nil {
			return err
		}
		sep := ",\n  "
		if i == 0 {
			sep = "\n  "
		}
		io.WriteString(w, sep)
		_, err := w.Write(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
		return err
	}
	for i, e := range p.Entries {
		if err := item(i, IndexPackage{Manifest: e.Manifest, File: e.File, Size: e.Size, SHA256: e.SHA256,
			InfoHash: e.InfoHash, InfoBytes: e.InfoBytes, Torrent: "/torrents/" + e.File + ".torrent"}); err != nil {
			return err
		}
	}
	io.WriteString(w, "\n ],\n \"rejected\": [")
	for i, r := range p.Rejections {
		if err := item(i, IndexReject{File: r.File, Reason: r.Reason}); err != nil {
			return err
		}
	}
	_, err = io.WriteString(w, "\n ]\n}\n")
	return err
}
