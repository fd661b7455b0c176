// Package swarm is tpm's BitTorrent side: the deterministic single-file v1
// torrent of a package and the seeder that serves package files to the swarm.
//
// A package's torrent depends on nothing but the file's name and bytes: the
// piece length is a function of the size alone and the info dictionary holds
// only name, length, piece length and pieces. So the same file always has the
// same infohash, on every server and across rescans, and its swarm lives on.
// The tracker and web seed URLs sit outside the info dictionary
// (MetaInfoFile), so moving the repository does not change infohashes either.
package swarm

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
	"sync"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
)

// Piece lengths: powers of two from 16 KiB (the BitTorrent block size, so a
// small package is a handful of pieces) to 16 MiB, growing until a file has
// at most targetPieces pieces. Changing any of these changes every infohash.
// Small pieces spread sooner: a host can pass on a piece only once it has
// it whole. test/bench/swarm (16 hosts, 40 MB) with at most 256 pieces: the
// repository sent 2.3 times the set, against 1.5 with 1,024; with 2,048
// (all 16 KiB) anacrolix's work per piece made the run CPU-bound and slower.
const (
	MinPieceLength = 16 << 10
	MaxPieceLength = 16 << 20
	targetPieces   = 1024
)

// PieceLength is the piece length of a file of size bytes.
func PieceLength(size int64) int64 {
	l := int64(MinPieceLength)
	for l < MaxPieceLength && (size+l-1)/l > targetPieces {
		l <<= 1
	}
	return l
}

// Torrent is what hashing one package file gives.
type Torrent struct {
	Name      string
	Size      int64
	SHA256    [32]byte
	InfoBytes []byte // bencoded info dictionary
	InfoHash  [20]byte
}

// SHA256Hex and InfoHashHex are the hashes as the catalog records them.
func (t *Torrent) SHA256Hex() string   { return hex.EncodeToString(t.SHA256[:]) }
func (t *Torrent) InfoHashHex() string { return hex.EncodeToString(t.InfoHash[:]) }

// parallelMin is the write size from which Hasher runs SHA-256 on a second
// core while the pieces' SHA-1 runs on the caller's: below it the hand-off
// costs more than it saves.
const parallelMin = 64 << 10

// Hasher computes, from one pass over a file's bytes, its SHA-256 (for the
// index) and its piece SHA-1s (for the torrent). It is an io.Writer so that
// the scanner can feed the same read to the archive validator.
type Hasher struct {
	size, pieceLength int64
	n                 int64 // bytes written
	sum256            hash.Hash
	piece             hash.Hash
	inPiece           int64 // bytes of the current piece hashed so far
	pieces            []byte
	wg                sync.WaitGroup
}

// NewHasher starts hashing a file of size bytes.
func NewHasher(size int64) *Hasher {
	pl := PieceLength(size)
	return &Hasher{
		size:        size,
		pieceLength: pl,
		sum256:      sha256.New(),
		piece:       sha1.New(),
		pieces:      make([]byte, 0, sha1.Size*((size+pl-1)/pl)),
	}
}

// Write hashes p. It fails once more bytes arrive than the size given to
// NewHasher, since the piece layout depends on the size.
func (h *Hasher) Write(p []byte) (int, error) {
	if h.n+int64(len(p)) > h.size {
		return 0, fmt.Errorf("file grew past its size of %d bytes while being hashed", h.size)
	}
	h.n += int64(len(p))
	if len(p) >= parallelMin {
		h.wg.Add(1)
		go func() {
			h.sum256.Write(p)
			h.wg.Done()
		}()
		h.hashPieces(p)
		h.wg.Wait()
	} else {
		h.sum256.Write(p)
		h.hashPieces(p)
	}
	return len(p), nil
}

func (h *Hasher) hashPieces(p []byte) {
	for len(p) > 0 {
		k := min(int64(len(p)), h.pieceLength-h.inPiece)
		h.piece.Write(p[:k])
		h.inPiece += k
		p = p[k:]
		if h.inPiece == h.pieceLength {
			h.pieces = h.piece.Sum(h.pieces)
			h.piece.Reset()
			h.inPiece = 0
		}
	}
}

// Torrent finishes hashing and builds the torrent of a file called name. It
// fails if fewer bytes were written than the size.
func (h *Hasher) Torrent(name string) (*Torrent, error) {
	if h.n != h.size {
		return nil, fmt.Errorf("file shrank to %d of %d bytes while being hashed", h.n, h.size)
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	pieces := h.pieces
	if h.inPiece > 0 {
		pieces = h.piece.Sum(pieces)
	}
	info := metainfo.Info{
		Name:        name,
		Length:      h.size,
		PieceLength: h.pieceLength,
		Pieces:      pieces,
	}
	infoBytes, err := bencode.Marshal(info)
	if err != nil {
		return nil, fmt.Errorf("torrent of %s: %w", name, err)
	}
	t := &Torrent{Name: name, Size: h.size, InfoBytes: infoBytes, InfoHash: sha1.Sum(infoBytes)}
	h.sum256.Sum(t.SHA256[:0])
	return t, nil
}

// checkName refuses torrent names that a client could turn into a path
// outside its download folder.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") {
		return fmt.Errorf("torrent name %q is not a plain file name", name)
	}
	return nil
}

// MetaInfoFile builds a package's .torrent from its info dictionary: the
// trackers in the announce list, one tier each in their order (a client
// tries them all), the first also as announce for clients without BEP 12;
// the web seeds (BEP 19, base URLs such as PUBLIC_URL/packages/, to which
// clients append the torrent's name) as the url-list. No creation date, so
// the file's bytes are as stable as its infohash.
func MetaInfoFile(infoBytes []byte, trackers, webSeeds []string) ([]byte, error) {
	mi := metainfo.MetaInfo{
		InfoBytes: infoBytes,
		UrlList:   metainfo.UrlList(webSeeds),
		CreatedBy: "tpm",
	}
	if len(trackers) > 0 {
		mi.Announce = trackers[0]
	}
	if len(trackers) > 1 {
		for _, t := range trackers {
			mi.AnnounceList = append(mi.AnnounceList, []string{t})
		}
	}
	b, err := bencode.Marshal(mi)
	if err != nil {
		return nil, fmt.Errorf("torrent file: %w", err)
	}
	return b, nil
}

// PublicTracker and PublicWebSeed are the built-in tracker and the web seed
// of a tpmd server or mirror at publicURL.
func PublicTracker(publicURL string) string {
	return strings.TrimRight(publicURL, "/") + "/announce"
}

func PublicWebSeed(publicURL string) string {
	return strings.TrimRight(publicURL, "/") + "/packages/"
}
