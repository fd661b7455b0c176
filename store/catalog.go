package store

// This file holds the repository catalog: what the server knows about every
// file of its package directory. It is also the published index: /index.db is
// a snapshot of this very database, so a client opens it with
// OpenCatalogReadOnly and reads it with the same types.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"tpm/manifest"
)

var (
	bucketCatalog  = []byte("catalog")  // file name → CatalogEntry (JSON)
	bucketRejected = []byte("rejected") // file name → Rejection (JSON)
	bucketCatMeta  = []byte("meta")     // see the keys below
	keyFormat      = []byte("format")
	keyGeneration  = []byte("generation")
	keyUpdated     = []byte("updated")
	keyValidUntil  = []byte("valid-until")
	keyTrackers    = []byte("trackers")  // JSON list of announce URLs
	keyDHTNodes    = []byte("dht-nodes") // JSON list of "host:port"
)

// CatalogFormat is the version of the catalog's layout. A reader that finds
// another value must refuse the file rather than guess.
const CatalogFormat = "1"

// CatalogEntry is one published package file.
type CatalogEntry struct {
	manifest.Manifest
	File   string `json:"file"`   // base name in the package directory
	Size   int64  `json:"size"`   // bytes
	SHA256 string `json:"sha256"` // hex, of the whole file
	// InfoHash is the hex SHA-1 of InfoBytes, the bencoded info dictionary
	// of the package's torrent. The rest of the .torrent (tracker, web seed)
	// depends on the server's public URL and is not part of the catalog.
	InfoHash  string `json:"infohash"`
	InfoBytes []byte `json:"info"`
	// What the file looked like when it was hashed: a rescan re-reads the
	// file only when one of these differs. ctime is kept beside the mtime
	// because a tool can set an mtime back but never a ctime.
	MTimeNS int64  `json:"mtime_ns"`
	CTimeNS int64  `json:"ctime_ns"`
	Inode   uint64 `json:"inode"`
}

// Rejection is a file of the package directory that is not published, and
// why. Its stat is kept so that an unchanged bad file is not re-read (and
// re-reported) on every rescan.
type Rejection struct {
	File    string `json:"file"`
	Reason  string `json:"reason"`
	Size    int64  `json:"size"`
	MTimeNS int64  `json:"mtime_ns"`
	CTimeNS int64  `json:"ctime_ns"`
	Inode   uint64 `json:"inode"`
}

// Catalog is the repository catalog database.
type Catalog struct {
	bolt *bolt.DB
}

// OpenCatalog opens (creating if needed) the catalog at path for the server.
// bbolt's exclusive flock makes a second server on the same state directory
// fail at once with ErrLocked.
func OpenCatalog(path string) (*Catalog, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("open catalog: %w", err)
	}
	if err := CheckFile(path); err != nil {
		if errors.Is(err, ErrDamaged) {
			return nil, fmt.Errorf("catalog: %w: restore it from a backup; a catalog made anew restarts at generation 1, which hosts refuse as older than theirs", err)
		}
		return nil, fmt.Errorf("open catalog %s: %w", path, err)
	}
	b, err := bolt.Open(path, 0o644, &bolt.Options{Timeout: 250 * time.Millisecond})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open catalog %s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open catalog %s: %w", path, err)
	}
	// Only write when something is missing: every commit changes the file,
	// and an unchanged catalog should snapshot to the same bytes (and so the
	// same ETag) after a restart.
	ready := false
	b.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketCatMeta)
		ready = tx.Bucket(bucketCatalog) != nil && tx.Bucket(bucketRejected) != nil &&
			meta != nil && meta.Get(keyFormat) != nil
		return nil
	})
	update := b.Update
	if ready {
		update = b.View
	}
	err = update(func(tx *bolt.Tx) error {
		if ready {
			if f := tx.Bucket(bucketCatMeta).Get(keyFormat); string(f) != CatalogFormat {
				return fmt.Errorf("catalog format %q is not %q", f, CatalogFormat)
			}
			return nil
		}
		for _, name := range [][]byte{bucketCatalog, bucketRejected, bucketCatMeta} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketCatMeta)
		switch f := meta.Get(keyFormat); {
		case f == nil:
			return meta.Put(keyFormat, []byte(CatalogFormat))
		case string(f) != CatalogFormat:
			return fmt.Errorf("catalog format %q is not %q", f, CatalogFormat)
		}
		return nil
	})
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("open catalog %s: %w", path, err)
	}
	return &Catalog{bolt: b}, nil
}

// OpenCatalogReadOnly opens a catalog, such as a downloaded index.db, for
// reading only. It refuses a file without the catalog's buckets or of another
// format.
func OpenCatalogReadOnly(path string) (*Catalog, error) {
	b, err := bolt.Open(path, 0o444, &bolt.Options{ReadOnly: true, Timeout: 250 * time.Millisecond})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open catalog %s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open catalog %s: %w", path, err)
	}
	err = b.View(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketCatalog, bucketRejected, bucketCatMeta} {
			if tx.Bucket(name) == nil {
				return fmt.Errorf("not a catalog: bucket %q is missing", name)
			}
		}
		if f := tx.Bucket(bucketCatMeta).Get(keyFormat); string(f) != CatalogFormat {
			return fmt.Errorf("catalog format %q is not %q", f, CatalogFormat)
		}
		return nil
	})
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("open catalog %s: %w", path, err)
	}
	return &Catalog{bolt: b}, nil
}

// Close releases the database and its lock.
func (c *Catalog) Close() error { return c.bolt.Close() }

// Path is the database file.
func (c *Catalog) Path() string { return c.bolt.Path() }

// View runs fn in a read-only transaction: it sees one consistent state.
func (c *Catalog) View(fn func(*CatalogTx) error) error {
	return c.bolt.View(func(tx *bolt.Tx) error { return fn(&CatalogTx{tx}) })
}

// Update runs fn in one read-write transaction: all of it commits or none.
func (c *Catalog) Update(fn func(*CatalogTx) error) error {
	return c.bolt.Update(func(tx *bolt.Tx) error { return fn(&CatalogTx{tx}) })
}

// WriteSnapshot writes a consistent copy of the whole database file to w,
// while writers may go on; it is what /index.db serves.
func (c *Catalog) WriteSnapshot(w io.Writer) (int64, error) {
	var n int64
	err := c.bolt.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("snapshot of catalog: %w", err)
	}
	return n, nil
}

// Snapshot returns WriteSnapshot's bytes.
func (c *Catalog) Snapshot() ([]byte, error) {
	var buf bytes.Buffer
	if _, err := c.WriteSnapshot(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// CatalogTx is a transaction over the catalog.
type CatalogTx struct {
	tx *bolt.Tx
}

// WriteTo writes the database as this transaction sees it to w: a snapshot
// that agrees with everything else read in the same transaction.
func (t *CatalogTx) WriteTo(w io.Writer) (int64, error) {
	return t.tx.WriteTo(w)
}

// getJSON decodes the value of key in b, or returns nil when there is none.
func getJSON[T any](b *bolt.Bucket, key, what string) (*T, error) {
	raw := b.Get([]byte(key))
	if raw == nil {
		return nil, nil
	}
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("%s %q: %w", what, key, err)
	}
	return &v, nil
}

// listJSON decodes every value of b, in key order.
func listJSON[T any](b *bolt.Bucket, what string) ([]*T, error) {
	var out []*T
	err := b.ForEach(func(k, raw []byte) error {
		var v T
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("%s %q: %w", what, k, err)
		}
		out = append(out, &v)
		return nil
	})
	return out, err
}

// Entry returns the entry of file, or nil if the catalog has none.
func (t *CatalogTx) Entry(file string) (*CatalogEntry, error) {
	return getJSON[CatalogEntry](t.tx.Bucket(bucketCatalog), file, "catalog entry")
}

// Entries returns every entry, by file name.
func (t *CatalogTx) Entries() ([]*CatalogEntry, error) {
	return listJSON[CatalogEntry](t.tx.Bucket(bucketCatalog), "catalog entry")
}

// EachEntry calls f with every entry, by file name, each decoded only for
// the call: a reader of 100,000 entries need not hold them all decoded.
func (t *CatalogTx) EachEntry(f func(*CatalogEntry) error) error {
	return t.tx.Bucket(bucketCatalog).ForEach(func(k, raw []byte) error {
		var e CatalogEntry
		if err := json.Unmarshal(raw, &e); err != nil {
			return fmt.Errorf("catalog entry %q: %w", k, err)
		}
		return f(&e)
	})
}

// PutEntry records e under e.File, replacing any entry or rejection of the
// same file.
func (t *CatalogTx) PutEntry(e *CatalogEntry) error {
	if err := checkFileKey(e.File); err != nil {
		return err
	}
	raw, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("catalog entry %q: %w", e.File, err)
	}
	if err := t.tx.Bucket(bucketRejected).Delete([]byte(e.File)); err != nil {
		return err
	}
	b := t.tx.Bucket(bucketCatalog)
	// The catalog is the published index: every host fetches it whole. At
	// bbolt's default half-full split a first scan of 100,000 entries (put
	// in order, in one transaction) left pages 41 % used, 139 MB; full
	// pages make it 60 MB. A later put in the middle splits one page.
	b.FillPercent = 1.0
	return b.Put([]byte(e.File), raw)
}

// DeleteEntry forgets the entry of file, if any.
func (t *CatalogTx) DeleteEntry(file string) error {
	return t.tx.Bucket(bucketCatalog).Delete([]byte(file))
}

// Rejection returns the rejection of file, or nil.
func (t *CatalogTx) Rejection(file string) (*Rejection, error) {
	return getJSON[Rejection](t.tx.Bucket(bucketRejected), file, "rejection")
}

// Rejections returns every rejection, by file name.
func (t *CatalogTx) Rejections() ([]*Rejection, error) {
	return listJSON[Rejection](t.tx.Bucket(bucketRejected), "rejection")
}

// PutRejection records r under r.File, replacing any entry of the same file:
// a file that changed into something invalid is no longer published.
func (t *CatalogTx) PutRejection(r *Rejection) error {
	if err := checkFileKey(r.File); err != nil {
		return err
	}
	raw, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("rejection %q: %w", r.File, err)
	}
	if err := t.tx.Bucket(bucketCatalog).Delete([]byte(r.File)); err != nil {
		return err
	}
	return t.tx.Bucket(bucketRejected).Put([]byte(r.File), raw)
}

// DeleteRejection forgets the rejection of file, if any.
func (t *CatalogTx) DeleteRejection(file string) error {
	return t.tx.Bucket(bucketRejected).Delete([]byte(file))
}

// Generation is the number of the last published generation, 0 for none.
// It only grows, so a client can refuse an older index replayed to it.
func (t *CatalogTx) Generation() uint64 {
	n, _ := strconv.ParseUint(string(t.tx.Bucket(bucketCatMeta).Get(keyGeneration)), 10, 64)
	return n
}

// Updated is when the generation was made, or the zero time.
func (t *CatalogTx) Updated() time.Time {
	u, _ := time.Parse(time.RFC3339Nano, string(t.tx.Bucket(bucketCatMeta).Get(keyUpdated)))
	return u
}

// ValidUntil is when the generation's index expires, or the zero time when
// it says nothing (clients refuse such an index).
func (t *CatalogTx) ValidUntil() time.Time {
	u, _ := time.Parse(time.RFC3339Nano, string(t.tx.Bucket(bucketCatMeta).Get(keyValidUntil)))
	return u
}

// SetValidUntil records when the generation's index expires: a client
// refuses it after that, so nobody can keep a host on an old index by
// replaying it.
func (t *CatalogTx) SetValidUntil(until time.Time) error {
	return t.tx.Bucket(bucketCatMeta).Put(keyValidUntil, []byte(until.UTC().Format(time.RFC3339Nano)))
}

// Trackers is the announce list the server puts in every torrent, in
// order; nil when the index names none (an index of an older server: its
// clients use the server's own tracker).
func (t *CatalogTx) Trackers() []string {
	raw := t.tx.Bucket(bucketCatMeta).Get(keyTrackers)
	if raw == nil {
		return nil
	}
	var urls []string
	if err := json.Unmarshal(raw, &urls); err != nil {
		return nil
	}
	return urls
}

// SetTrackers records the announce list. It is in the signed index, so
// that a mirror cannot send a host's announces elsewhere.
func (t *CatalogTx) SetTrackers(urls []string) error {
	if urls == nil {
		urls = []string{}
	}
	b, err := json.Marshal(urls)
	if err != nil {
		return err
	}
	return t.tx.Bucket(bucketCatMeta).Put(keyTrackers, b)
}

// MaxDHTNodes bounds the DHT nodes an index names: a host pings and
// bootstraps through each one.
const MaxDHTNodes = 16

// maxDHTNodesBytes bounds the list read from an index (16 names of 253
// bytes and their ports, in JSON), so a hostile one costs nothing to skip.
const maxDHTNodesBytes = 8 << 10

// DHTNodes are the DHT nodes (BEP 5, "host:port") the index names for
// hosts to join through, like a .torrent's "nodes": the repository's own.
// nil when it names none (an index of an older server, or of one without
// the DHT). The index is signed, but a key can leak: only valid names are
// returned, at most MaxDHTNodes, each once.
func (t *CatalogTx) DHTNodes() []string {
	raw := t.tx.Bucket(bucketCatMeta).Get(keyDHTNodes)
	if raw == nil || len(raw) > maxDHTNodesBytes {
		return nil
	}
	var all []string
	if err := json.Unmarshal(raw, &all); err != nil {
		return nil
	}
	var nodes []string
	for _, n := range all {
		if len(nodes) < MaxDHTNodes && CheckDHTNode(n) == nil && !slices.Contains(nodes, n) {
			nodes = append(nodes, n)
		}
	}
	return nodes
}

// SetDHTNodes records the DHT nodes the index names; none removes the
// key, so the index reads as one of an older server.
func (t *CatalogTx) SetDHTNodes(nodes []string) error {
	meta := t.tx.Bucket(bucketCatMeta)
	if len(nodes) == 0 {
		return meta.Delete(keyDHTNodes)
	}
	if len(nodes) > MaxDHTNodes {
		return fmt.Errorf("%d DHT nodes: at most %d", len(nodes), MaxDHTNodes)
	}
	for _, n := range nodes {
		if err := CheckDHTNode(n); err != nil {
			return err
		}
	}
	b, err := json.Marshal(nodes)
	if err != nil {
		return err
	}
	return meta.Put(keyDHTNodes, b)
}

// CheckDHTNode refuses what is not a DHT node hosts could join through:
// "host:port" with a port from 1 to 65535 and a host that is an IP
// address (not unspecified nor multicast, no zone) or a DNS name.
func CheckDHTNode(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("DHT node %q: %w", s, err)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("DHT node %q: the port is not 1 to 65535", s)
	}
	if ip := net.ParseIP(host); ip != nil {
		if ip.IsUnspecified() || ip.IsMulticast() {
			return fmt.Errorf("DHT node %q: not an address hosts can reach", s)
		}
		return nil
	}
	if !validHostName(host) {
		return fmt.Errorf("DHT node %q: the host is neither an IP address nor a DNS name", s)
	}
	return nil
}

// validHostName says whether s is a DNS name: dot-separated labels of
// letters, digits and inner hyphens, at most 63 bytes each, 253 in all.
func validHostName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// SetGeneration records the number and time of a new generation. Numbers
// must grow.
func (t *CatalogTx) SetGeneration(n uint64, updated time.Time) error {
	if old := t.Generation(); n <= old {
		return fmt.Errorf("generation %d is not after %d", n, old)
	}
	meta := t.tx.Bucket(bucketCatMeta)
	if err := meta.Put(keyGeneration, []byte(strconv.FormatUint(n, 10))); err != nil {
		return err
	}
	return meta.Put(keyUpdated, []byte(updated.UTC().Format(time.RFC3339Nano)))
}

// checkFileKey keeps names that could not be a file of the package directory
// out of the catalog, since clients build paths and URLs from them.
func checkFileKey(file string) error {
	if file == "" || file == "." || file == ".." || len(file) > 255 ||
		bytes.ContainsAny([]byte(file), "/\x00") {
		return fmt.Errorf("catalog: %q is not a plain file name", file)
	}
	return nil
}
