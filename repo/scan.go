// Package repo turns a directory of packages into generations: it scans the
// package directory, validates and hashes new or changed files, keeps what
// it learnt in the catalog, and makes the signed index and the torrents that
// the server publishes.
//
// A scan reads only files whose size, mtime, ctime or inode differ from the
// catalog's record; everything else comes from the catalog, so an unchanged
// rescan of 10,000 packages is a directory listing and a few stats. A file
// that is read is read once: the same bytes go to the SHA-256 and piece
// SHA-1s (swarm.Hasher) and to the archive validator (tarball), each on its
// own goroutine. A file that fails validation is rejected with its reason,
// recorded, and left out; it never stops the scan.
package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"tpm/generation"
	"tpm/manifest"
	"tpm/store"
	"tpm/swarm"
	"tpm/tarball"
)

// Ext is the extension of package files; other files are ignored.
const Ext = ".tpkg"

// Check is how much of a new or changed archive the scan validates.
type Check int

const (
	// CheckFull applies every hostile-archive rule to every entry and reads
	// the gzip trailer, so truncated and corrupt archives are rejected. It
	// costs a decompression of the whole file, on a core of its own.
	CheckFull Check = iota
	// CheckManifest validates only as far as info/package.json, the first
	// entries of an archive tpm pack wrote. Clients check the rest anyway
	// before installing.
	CheckManifest
)

// ParseCheck reads "full" or "manifest".
func ParseCheck(s string) (Check, error) {
	switch s {
	case "full":
		return CheckFull, nil
	case "manifest":
		return CheckManifest, nil
	}
	return 0, fmt.Errorf("check %q is not full or manifest", s)
}

func (c Check) String() string {
	if c == CheckManifest {
		return "manifest"
	}
	return "full"
}

// Signer signs an index; signing.Key is one.
type Signer interface {
	Sign(data []byte, trustedComment string) ([]byte, error)
}

// Options configure a Scanner.
type Options struct {
	Dir       string // the package directory
	PublicURL string // the server's URL as clients see it, for the .torrent files
	Signer    Signer
	Check     Check
	Limits    tarball.Limits // zero means tarball.DefaultLimits
	Workers   int            // files read at once; zero means one per CPU, at most 4
	Now       func() time.Time
	// ValidFor is how long a generation's index is valid (zero:
	// DefaultValidFor). A scan makes a new generation, even with nothing
	// changed, once a quarter of it has passed, so clients never hold an
	// index with less than half of it left if the server scans that often
	// (RescanEvery).
	ValidFor time.Duration
	// Listings, when set, keeps the files of each package read whole, for
	// the package pages.
	Listings *store.Listings
	// Trackers is the announce list of every torrent, recorded in the
	// signed index for the hosts (empty: none, the DHT and the web seeds
	// only). A change makes a new generation.
	Trackers []string
	// WebSeeds are the base URLs of mirrors' /packages/ named in every
	// .torrent's url-list after the server's own.
	WebSeeds []string
}

// DefaultValidFor is how long an index is valid unless the server says.
const DefaultValidFor = 7 * 24 * time.Hour

// RescanEvery is the longest time between scans that keeps an index valid
// for validFor re-signed before half of it has passed.
func RescanEvery(validFor time.Duration) time.Duration {
	if validFor <= 0 {
		validFor = DefaultValidFor
	}
	return validFor / 4
}

// Scanner scans one package directory into one catalog.
type Scanner struct {
	opts Options
	cat  *store.Catalog

	mu   sync.Mutex // one scan at a time, even across actor restarts
	last *generation.Generation
}

// NewScanner returns a scanner; it reads nothing until Scan.
func NewScanner(cat *store.Catalog, opts Options) *Scanner {
	if opts.Limits == (tarball.Limits{}) {
		opts.Limits = tarball.DefaultLimits()
	}
	if opts.Workers <= 0 {
		opts.Workers = min(runtime.GOMAXPROCS(0), 4)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ValidFor <= 0 {
		opts.ValidFor = DefaultValidFor
	}
	return &Scanner{opts: opts, cat: cat}
}

// fileStat is what a scan compares with the catalog.
type fileStat struct {
	size    int64
	mtimeNS int64
	ctimeNS int64
	inode   uint64
	regular bool
}

func statOf(fi fs.FileInfo) fileStat {
	st := fileStat{size: fi.Size(), mtimeNS: fi.ModTime().UnixNano(), regular: fi.Mode().IsRegular()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ctimeNS = sys.Ctim.Sec*1e9 + sys.Ctim.Nsec
		st.inode = sys.Ino
	}
	return st
}

func (st fileStat) matchesEntry(e *store.CatalogEntry) bool {
	return st.size == e.Size && st.mtimeNS == e.MTimeNS && st.ctimeNS == e.CTimeNS && st.inode == e.Inode
}

func (st fileStat) matchesRejection(r *store.Rejection) bool {
	return st.size == r.Size && st.mtimeNS == r.MTimeNS && st.ctimeNS == r.CTimeNS && st.inode == r.Inode
}

// outcome is what reading one file gave: an entry, a rejection, or (skip)
// neither because the file changed while it was read.
type outcome struct {
	file    string
	entry   *store.CatalogEntry
	listing []string // the entry's files, when its archive was read whole
	reject  *store.Rejection
	skip    error
	read    int64
}

// Scan brings the catalog in line with the directory and returns the
// resulting generation. When nothing changed it returns the previous
// generation again (stats.NewGeneration is false), so clients polling the
// index see the same ETag. A cancelled ctx stops the scan before it commits
// anything.
func (s *Scanner) Scan(ctx context.Context) (*generation.Generation, ScanStats, error) {
	return s.scan(ctx, false)
}

// Verify is a scan that also reads every published file again, as a
// filesystem scrub does: a file whose bytes no longer match its entry
// while its size and times say it did not change (bit rot, a bad disk, a
// tampered mirror) is rejected with the reason, so it is no longer
// published, seeded or served.
func (s *Scanner) Verify(ctx context.Context) (*generation.Generation, ScanStats, error) {
	return s.scan(ctx, true)
}

func (s *Scanner) scan(ctx context.Context, verify bool) (*generation.Generation, ScanStats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	start := time.Now()
	var stats ScanStats

	files, err := s.list()
	if err != nil {
		return nil, stats, err
	}
	var entries map[string]*store.CatalogEntry
	var rejections map[string]*store.Rejection
	var gen uint64
	var updated time.Time // of generation gen
	var trackers []string
	err = s.cat.View(func(tx *store.CatalogTx) error {
		es, err := tx.Entries()
		if err != nil {
			return err
		}
		rs, err := tx.Rejections()
		if err != nil {
			return err
		}
		entries = make(map[string]*store.CatalogEntry, len(es))
		for _, e := range es {
			entries[e.File] = e
		}
		rejections = make(map[string]*store.Rejection, len(rs))
		for _, r := range rs {
			rejections[r.File] = r
		}
		gen, updated, trackers = tx.Generation(), tx.Updated(), tx.Trackers()
		return nil
	})
	if err != nil {
		return nil, stats, fmt.Errorf("scan: read catalog: %w", err)
	}

	// Sort the directory into what the catalog already knows and what must
	// be read.
	var toRead []string
	var outcomes []outcome
	rechecked := map[string]bool{} // published, unchanged by their stat, read again
	for name, st := range files {
		if e := entries[name]; e != nil && st.matchesEntry(e) {
			if verify {
				rechecked[name] = true
				toRead = append(toRead, name)
				continue
			}
			stats.Unchanged++
			continue
		}
		if r := rejections[name]; r != nil && st.matchesRejection(r) {
			stats.Unchanged++
			continue
		}
		if !st.regular {
			outcomes = append(outcomes, outcome{file: name, reject: rejection(name, st, "not a regular file (symlinks and other special files are not published)")})
			continue
		}
		toRead = append(toRead, name)
	}
	sort.Strings(toRead)
	read, err := s.readAll(ctx, toRead, files)
	if err != nil {
		return nil, stats, err
	}
	for _, o := range read {
		if !rechecked[o.file] {
			outcomes = append(outcomes, o)
			continue
		}
		old := entries[o.file]
		switch {
		case o.entry != nil && o.entry.SHA256 == old.SHA256:
			stats.Unchanged++
			stats.BytesRead += o.read
		case o.skip != nil:
			outcomes = append(outcomes, o)
		default:
			sum := "unreadable"
			if o.entry != nil {
				sum = o.entry.SHA256
			}
			st := files[o.file]
			o.entry, o.reject = nil, rejection(o.file, st, fmt.Sprintf("its bytes changed on disk while its size and times did not (bit rot, a bad disk or tampering): sha256 %s, published as %s; restore the file from a good copy", sum, old.SHA256))
			outcomes = append(outcomes, o)
		}
	}

	// Work out the changes; nothing is written unless something changed.
	var puts []*store.CatalogEntry
	listings := map[string][]string{} // by sha256, of the entries put
	var rejects []*store.Rejection
	var deletes, unrejects []string
	for _, o := range outcomes {
		stats.BytesRead += o.read
		switch {
		case o.entry != nil:
			if entries[o.file] != nil {
				stats.Changed++
			} else {
				stats.Added++
			}
			puts = append(puts, o.entry)
			if o.listing != nil {
				listings[o.entry.SHA256] = o.listing
			}
		case o.reject != nil:
			if old := rejections[o.file]; old == nil || old.Reason != o.reject.Reason {
				stats.Rejected++
				stats.Rejections = append(stats.Rejections, generation.Rejected{File: o.file, Reason: o.reject.Reason})
			}
			rejects = append(rejects, o.reject)
		default: // changed while being read: unpublish until it settles
			stats.Skipped++
			if entries[o.file] != nil {
				deletes = append(deletes, o.file)
			}
		}
	}
	for name := range entries {
		if _, ok := files[name]; !ok {
			stats.Removed++
			deletes = append(deletes, name)
		}
	}
	for name := range rejections {
		if _, ok := files[name]; !ok {
			unrejects = append(unrejects, name)
		}
	}
	changed := len(puts)+len(rejects)+len(deletes)+len(unrejects) > 0 || trackers == nil || !slices.Equal(trackers, s.opts.Trackers)
	now := s.opts.Now()
	// An index that has lived a quarter of its validity is signed again as
	// a new generation: clients refuse an expired one.
	stale := now.Sub(updated) >= s.opts.ValidFor/4
	if !changed && !stale && s.last != nil && s.last.Number == gen {
		stats.Duration = time.Since(start)
		stats.Published = len(s.last.Packages)
		return s.last, stats, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, stats, err
	}

	if changed || stale || gen == 0 {
		gen++
		err = s.cat.Update(func(tx *store.CatalogTx) error {
			for _, e := range puts {
				if err := tx.PutEntry(e); err != nil {
					return err
				}
			}
			for _, r := range rejects {
				if err := tx.PutRejection(r); err != nil {
					return err
				}
			}
			for _, name := range deletes {
				if err := tx.DeleteEntry(name); err != nil {
					return err
				}
			}
			for _, name := range unrejects {
				if err := tx.DeleteRejection(name); err != nil {
					return err
				}
			}
			if err := tx.SetValidUntil(now.Add(s.opts.ValidFor)); err != nil {
				return err
			}
			if err := tx.SetTrackers(s.opts.Trackers); err != nil {
				return err
			}
			return tx.SetGeneration(gen, now)
		})
		if err != nil {
			return nil, stats, fmt.Errorf("scan: update catalog: %w", err)
		}
	}
	g, err := s.generation()
	if err != nil {
		return nil, stats, err
	}
	if err := s.keepListings(g, listings); err != nil {
		return nil, stats, err
	}
	s.last = g
	stats.NewGeneration = true
	stats.Published = len(g.Packages)
	stats.Duration = time.Since(start)
	return g, stats, nil
}

// keepListings records the listings of the packages read by this scan and
// forgets those of packages no longer published.
func (s *Scanner) keepListings(g *generation.Generation, listings map[string][]string) error {
	if s.opts.Listings == nil {
		return nil
	}
	for sum, paths := range listings {
		if err := s.opts.Listings.Put(sum, paths); err != nil {
			return fmt.Errorf("scan: listings: %w", err)
		}
	}
	published := make(map[string]bool, len(g.Packages))
	for _, p := range g.Packages {
		published[p.SHA256] = true
	}
	if err := s.opts.Listings.Keep(func(sum string) bool { return published[sum] }); err != nil {
		return fmt.Errorf("scan: listings: %w", err)
	}
	return nil
}

// list returns the package files of the directory with their stats. Hidden
// files are left out: uploaders write ".name.tpkg.tmp"-style files and
// rename them into place when complete.
func (s *Scanner) list() (map[string]fileStat, error) {
	des, err := os.ReadDir(s.opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", s.opts.Dir, err)
	}
	files := make(map[string]fileStat, len(des))
	for _, de := range des {
		name := de.Name()
		if !strings.HasSuffix(name, Ext) || strings.HasPrefix(name, ".") || de.IsDir() {
			continue
		}
		fi, err := de.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since the listing
		}
		if err != nil {
			return nil, fmt.Errorf("scan %s: %w", s.opts.Dir, err)
		}
		files[name] = statOf(fi)
	}
	return files, nil
}

func rejection(name string, st fileStat, reason string) *store.Rejection {
	return &store.Rejection{File: name, Reason: reason, Size: st.size, MTimeNS: st.mtimeNS, CTimeNS: st.ctimeNS, Inode: st.inode}
}

// readAll reads files on Workers goroutines.
func (s *Scanner) readAll(ctx context.Context, names []string, files map[string]fileStat) ([]outcome, error) {
	out := make([]outcome, len(names))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(s.opts.Workers, len(names)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i] = s.readFile(ctx, names[i], files[names[i]])
			}
		}()
	}
	var err error
feed:
	for i := range names {
		select {
		case next <- i:
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err == nil {
		err = ctx.Err() // files cut short by cancellation were skipped, not read
	}
	return out, err
}

// readFile validates and hashes one file in a single read.
func (s *Scanner) readFile(ctx context.Context, name string, listed fileStat) outcome {
	path := filepath.Join(s.opts.Dir, name)
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return outcome{file: name, skip: err}
	}
	if err != nil {
		return outcome{file: name, reject: rejection(name, listed, oneLine(err))}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return outcome{file: name, reject: rejection(name, listed, oneLine(err))}
	}
	before := statOf(fi)
	if !before.regular {
		return outcome{file: name, reject: rejection(name, before, "not a regular file")}
	}

	h := swarm.NewHasher(before.size)
	m, paths, n, err := s.hashAndCheck(ctx, f, h)
	if err != nil {
		var rerr *readError
		if errors.As(err, &rerr) {
			return outcome{file: name, skip: err, read: n}
		}
		return outcome{file: name, reject: rejection(name, before, oneLine(err)), read: n}
	}
	// A file rewritten while it was read has hashes of neither version.
	fi, err = f.Stat()
	if err != nil || statOf(fi) != before {
		return outcome{file: name, skip: errors.New("changed while being read"), read: n}
	}
	tor, err := h.Torrent(name)
	if err != nil {
		return outcome{file: name, skip: err, read: n}
	}
	if want := m.FileName(); name != want {
		return outcome{file: name, reject: rejection(name, before, fmt.Sprintf("file name should be %s, from its info/package.json", want)), read: n}
	}
	return outcome{file: name, read: n, listing: paths, entry: &store.CatalogEntry{
		Manifest:  *m,
		File:      name,
		Size:      before.size,
		SHA256:    tor.SHA256Hex(),
		InfoHash:  tor.InfoHashHex(),
		InfoBytes: tor.InfoBytes,
		MTimeNS:   before.mtimeNS,
		CTimeNS:   before.ctimeNS,
		Inode:     before.inode,
	}}
}

// readError is a failure to read the file (as opposed to a verdict on its
// content): the file is skipped, not rejected.
type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

const chunkSize = 256 << 10

var chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// hashAndCheck reads r to its end once. Each chunk is hashed on this
// goroutine and handed to the validator on another, so hashing and
// decompression overlap; the validator returns a chunk to the pool when it
// has consumed it. It returns the manifest, the bytes read and the first
// error: a *readError for I/O, otherwise the validator's verdict.
func (s *Scanner) hashAndCheck(ctx context.Context, r io.Reader, h *swarm.Hasher) (*manifest.Manifest, []string, int64, error) {
	chunks := make(chan []byte, 4)
	cr := &chanReader{chunks: chunks}
	type verdict struct {
		m     *manifest.Manifest
		paths []string // what the archive installs, when read whole
		err   error
	}
	done := make(chan verdict, 1)
	go func() {
		var v verdict
		if s.opts.Check == CheckManifest {
			v.m, v.err = tarball.ReadManifest(cr)
		} else {
			var pkg *tarball.Package
			pkg, v.err = tarball.Inspect(cr, s.opts.Limits)
			if pkg != nil {
				v.m = pkg.Manifest
				for _, e := range pkg.Entries {
					if e.Type != tarball.TypeDir {
						v.paths = append(v.paths, e.Path)
					}
				}
			}
		}
		cr.stop()
		done <- v
	}()

	var n int64
	var rerr error
	validating, stopEarly := true, false
	for !stopEarly {
		if err := ctx.Err(); err != nil {
			rerr = &readError{err}
			break
		}
		bp := chunkPool.Get().(*[]byte)
		k, err := io.ReadFull(r, *bp)
		if k > 0 {
			n += int64(k)
			if _, herr := h.Write((*bp)[:k]); herr != nil {
				rerr = &readError{herr}
				chunkPool.Put(bp)
				break
			}
			if validating {
				select {
				case chunks <- (*bp)[:k]:
				case v := <-done:
					// The validator finished early: ReadManifest stops
					// after package.json, and a rejection needs no hashes.
					validating = false
					done <- v
					chunkPool.Put(bp)
					if v.err != nil {
						stopEarly = true
					}
				}
			} else {
				chunkPool.Put(bp)
			}
		} else {
			chunkPool.Put(bp)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			rerr = &readError{err}
			break
		}
	}
	close(chunks)
	v := <-done
	if rerr != nil {
		return nil, nil, n, rerr
	}
	if v.err != nil {
		return nil, nil, n, v.err
	}
	return v.m, v.paths, n, nil
}

// chanReader reads the chunks hashAndCheck sends, as one stream.
type chanReader struct {
	chunks chan []byte
	cur    []byte
	whole  []byte // the chunk cur is a suffix of, for the pool
}

func (c *chanReader) Read(p []byte) (int, error) {
	for len(c.cur) == 0 {
		c.release()
		b, ok := <-c.chunks
		if !ok {
			return 0, io.EOF
		}
		c.cur, c.whole = b, b
	}
	k := copy(p, c.cur)
	c.cur = c.cur[k:]
	return k, nil
}

func (c *chanReader) release() {
	if c.whole != nil {
		b := c.whole[:cap(c.whole)]
		chunkPool.Put(&b)
		c.whole = nil
	}
}

// stop drops what the validator did not read, so the sender never blocks.
func (c *chanReader) stop() {
	c.release()
	c.cur = nil
	go func() {
		for b := range c.chunks {
			b = b[:cap(b)]
			chunkPool.Put(&b)
		}
	}()
}

// oneLine keeps a reason to one line for the log and the index.
func oneLine(err error) string {
	s := err.Error()
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	return s
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
	Rejections                        []generation.Rejected
}
