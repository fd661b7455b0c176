package repo

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
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
// catalog does not change in between. prev is what the catalog published
// before ch was committed: the packages are prev's with ch's, not 100,000
// entries decoded again.
func (s *Scanner) generation(ch *catalogChanges, prev *generation.Generation) (*generation.Generation, error) {
	var p Parts
	// The snapshot and the rest come from one transaction, so the index
	// and the torrents cannot disagree.
	err := s.cat.View(func(tx *store.CatalogTx) error {
		var err error
		if p, err = partsAfter(tx, prev, ch); err != nil {
			return err
		}
		return s.snapshot(tx, &p)
	})
	if err != nil {
		return nil, fmt.Errorf("scan: read snapshot: %w", err)
	}
	p.PublicURL, p.WebSeeds, p.SpoolDir = s.opts.PublicURL, s.opts.WebSeeds, s.opts.SpoolDir
	return Build(p)
}

// snapshot spools tx's snapshot into p.Index while the signer reads back
// what is spooled, side by side. Written through the hashes (the file, a
// sha256 and the signer's pipe one after the other for every chunk), eight
// rescans of 100,000 packages took 415 to 680 ms each from SIGHUP to
// publication; hashed after the spooling, 378 to 401 ms, of which the
// snapshot was 120 (a 59 MB index). The signature makes the ETag, so the
// index is hashed once (a sha256 only when nothing signs it).
func (s *Scanner) snapshot(tx *store.CatalogTx, p *Parts) error {
	var readers []func(io.Reader) error
	sum := sha256.New()
	if s.opts.Signer == nil {
		readers = append(readers, func(r io.Reader) error {
			_, err := io.CopyBuffer(sum, r, make([]byte, 256<<10))
			return err
		})
	} else {
		comment := fmt.Sprintf("timestamp:%d\tfile:index.db\tgeneration:%d", p.Updated.Unix(), p.Number)
		readers = append(readers, func(r io.Reader) error {
			sig, err := s.opts.Signer.SignReader(r, comment)
			if err != nil {
				return fmt.Errorf("sign index: %w", err)
			}
			p.IndexSig = sig
			return nil
		})
	}
	index, err := generation.SpoolBlobFollowed(s.opts.SpoolDir, func(f io.Writer) error {
		_, err := tx.WriteTo(f)
		return err
	}, readers...)
	if err != nil {
		return err
	}
	p.Index = index
	if s.opts.Signer == nil {
		sum.Sum(p.IndexSum[:0])
	}
	return nil
}

// partsAfter is PartsOf(tx) when tx is prev's catalog with ch committed:
// prev's packages, less the files ch rejected or deleted, with the entries
// ch put (TestRescanMatchesAFullRead holds it to PartsOf), and what that
// changed of prev.
func partsAfter(tx *store.CatalogTx, prev *generation.Generation, ch *catalogChanges) (Parts, error) {
	p := Parts{Number: tx.Generation(), Updated: tx.Updated(), Trackers: tx.Trackers()}
	var err error
	if p.Rejections, err = tx.Rejections(); err != nil {
		return p, err
	}
	gone := make(map[string]bool, len(ch.rejects)+len(ch.deletes)+len(ch.puts))
	for _, r := range ch.rejects {
		gone[r.File] = true
	}
	for _, f := range ch.deletes {
		gone[f] = true
	}
	puts := make([]generation.Package, 0, len(ch.puts))
	for _, e := range ch.puts {
		pkg, err := packageOf(e)
		if err != nil {
			return p, err
		}
		gone[e.File] = true
		puts = append(puts, pkg)
	}
	slices.SortFunc(puts, func(a, b generation.Package) int { return strings.Compare(a.File, b.File) })
	p.Changes = &generation.Changes{From: prev.Number}
	kept := make(map[[20]byte]bool, len(puts))
	for _, pkg := range puts {
		p.Changes.Added = append(p.Changes.Added, pkg.InfoHash)
		kept[pkg.InfoHash] = true
	}
	p.Packages = make([]generation.Package, 0, len(prev.Packages)+len(puts))
	for _, pkg := range prev.Packages {
		for len(puts) > 0 && puts[0].File < pkg.File {
			p.Packages, puts = append(p.Packages, puts[0]), puts[1:]
		}
		switch {
		case !gone[pkg.File]:
			p.Packages = append(p.Packages, pkg)
		case !kept[pkg.InfoHash]: // a file put again, same bytes, keeps its torrent
			p.Changes.Removed = append(p.Changes.Removed, pkg.InfoHash)
		}
	}
	p.Packages = append(p.Packages, puts...)
	if p.Number == prev.Number {
		p.Changes = nil // nothing committed: the same generation, read again
	}
	return p, nil
}

// Parts is what a generation is made of: a catalog's snapshot, its
// signature and what it holds, and where the torrents say the swarm is.
type Parts struct {
	Index    generation.Blob
	IndexSum [32]byte // SHA-256 of Index, needed only when IndexSig is empty
	IndexSig []byte
	Number   uint64
	Updated  time.Time
	Entries  []*store.CatalogEntry
	// Packages, when set, are the generation's packages already made (by
	// file name), and Entries is not read.
	Packages   []generation.Package
	Rejections []*store.Rejection
	Trackers   []string // the announce list
	// PublicURL is the server publishing it, the first web seed; WebSeeds
	// are the others (mirrors, or a mirror's upstreams).
	PublicURL string
	WebSeeds  []string
	// SpoolDir is where index.json is spooled ("": memory).
	SpoolDir string
	// Changes is what the generation changes of the one before, when
	// known.
	Changes *generation.Changes
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
		Packages: p.Packages,
		Trackers: p.Trackers,
		WebSeeds: append([]string{swarm.PublicWebSeed(p.PublicURL)}, p.WebSeeds...),
		Changes:  p.Changes,
	}
	if g.Packages == nil {
		g.Packages = make([]generation.Package, 0, len(p.Entries))
		for _, e := range p.Entries {
			pkg, err := packageOf(e)
			if err != nil {
				return nil, err
			}
			g.Packages = append(g.Packages, pkg)
		}
	}
	for _, r := range p.Rejections {
		g.Rejected = append(g.Rejected, generation.Rejected{File: r.File, Reason: r.Reason})
	}
	g.IndexETag = indexETag(p)
	made, dir := generation.New(g), p.SpoolDir
	// Made from the generation, and closing over dir alone: a closure on p
	// would keep p's entries (a mirror's 100,000, decoded) in memory for as
	// long as the generation is published and nobody asks for index.json.
	made.IndexJSON = generation.NewLazyBlob(func() (generation.Blob, error) {
		b, err := generation.SpoolBlob(dir, func(w io.Writer) error { return writeIndexJSON(w, made) })
		if err != nil {
			return b, fmt.Errorf("index.json: %w", err)
		}
		return b, nil
	})
	return made, nil
}

// packageOf is the generation's package of a catalog entry.
func packageOf(e *store.CatalogEntry) (generation.Package, error) {
	var ih [20]byte
	if _, err := hex.Decode(ih[:], []byte(e.InfoHash)); err != nil {
		return generation.Package{}, fmt.Errorf("catalog entry %s: bad infohash: %w", e.File, err)
	}
	return generation.Package{
		Manifest: e.Manifest, File: e.File,
		Size: e.Size, SHA256: e.SHA256, InfoHash: ih, InfoBytes: e.InfoBytes,
		MTimeNS: e.MTimeNS, CTimeNS: e.CTimeNS, Inode: e.Inode,
	}, nil
}

// writeIndexJSON writes the IndexJSON of g one package at a time: encoded
// whole, the document of 100,000 packages held 50 MB at once.
func writeIndexJSON(w io.Writer, g *generation.Generation) error {
	updated, err := json.Marshal(g.Updated)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "{\n \"format\": %d,\n \"generation\": %d,\n \"updated\": %s,\n \"packages\": [", IndexFormat, g.Number, updated)
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
	for i := range g.Packages {
		e := &g.Packages[i]
		if err := item(i, IndexPackage{Manifest: e.Manifest, File: e.File, Size: e.Size, SHA256: e.SHA256,
			InfoHash: hex.EncodeToString(e.InfoHash[:]), InfoBytes: e.InfoBytes, Torrent: "/torrents/" + e.File + ".torrent"}); err != nil {
			return err
		}
	}
	io.WriteString(w, "\n ],\n \"rejected\": [")
	for i, r := range g.Rejected {
		if err := item(i, IndexReject{File: r.File, Reason: r.Reason}); err != nil {
			return err
		}
	}
	_, err = io.WriteString(w, "\n ]\n}\n")
	return err
}

// indexETag is the strong ETag of p's index: the SHA-256 of its signature
// (made over the index's BLAKE2b-512 and a comment naming the generation,
// so no two indexes share it, and the origin and every mirror serving one
// index give the same), or of the index when it is not signed.
func indexETag(p Parts) string {
	sum := p.IndexSum
	if len(p.IndexSig) > 0 {
		sum = sha256.Sum256(p.IndexSig)
	}
	return `"` + hex.EncodeToString(sum[:]) + `"`
}
