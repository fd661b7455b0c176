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

	"golang.org/x/sys/unix"
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
	SignReader(r io.Reader, trustedComment string) ([]byte, error)
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
	// DHTNodes are the DHT nodes ("host:port", store.CheckDHTNode) the
	// signed index names for hosts to join through: the server's own, so
	// a host's --dht needs no --dht-bootstrap. A change makes a new
	// generation.
	DHTNodes []string
	// WebSeeds are the base URLs of mirrors' /packages/ named in every
	// .torrent's url-list after the server's own.
	WebSeeds []string
	// SpoolDir, when set, holds each generation's index.db and index.json
	// (unlinked files, generation.SpoolBlob) instead of memory.
	SpoolDir string
	// Watch keeps a change journal of Dir (inotify, on a local
	// filesystem): a Scan then stats only the files changed since the
	// last scan, where a listing stats every one. The first scan, ScanWhole
	// and Verify list the directory whole, and so does a Scan after a
	// change may have been lost. Close stops it.
	Watch bool
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
	// With Options.Watch: the journal (nil when the directory cannot be
	// watched: watchErr says why), and the directory as the last scan
	// found it, which the journal's changes bring up to date.
	watch    *watch
	watchErr error
	files    map[string]fileStat
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
	s := &Scanner{opts: opts, cat: cat}
	if opts.Watch {
		s.watch, s.watchErr = startWatch(opts.Dir)
	}
	return s
}

// Watching says whether scans take the directory's changes from a watch,
// and if not, why (nil when Options.Watch was not set).
func (s *Scanner) Watching() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.watch != nil, s.watchErr
}

// Close stops the watch; the scanner must not scan afterwards.
func (s *Scanner) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.watch == nil {
		return nil
	}
	err := s.watch.close()
	s.watch, s.files = nil, nil
	return err
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

// listed is a name of the directory as statAll found it.
type listed struct {
	fileStat
	found, dir bool
}

func statOfUnix(st *unix.Stat_t) fileStat {
	return fileStat{size: st.Size, mtimeNS: st.Mtim.Nano(), ctimeNS: st.Ctim.Nano(), inode: st.Ino,
		regular: st.Mode&unix.S_IFMT == unix.S_IFREG}
}

func (st fileStat) matchesEntry(k known) bool {
	return st.size == k.size && st.mtimeNS == k.mtimeNS && st.ctimeNS == k.ctimeNS && st.inode == k.inode
}

// known is what a scan compares a published file with.
type known struct {
	size, mtimeNS, ctimeNS int64
	inode                  uint64
	sha256                 string
}

// lookup is what g publishes of file, as a scan compares it with the
// directory.
func lookup(g *generation.Generation, file string) (known, bool) {
	pkg := g.Package(file)
	if pkg == nil {
		return known{}, false
	}
	return known{size: pkg.Size, mtimeNS: pkg.MTimeNS, ctimeNS: pkg.CTimeNS, inode: pkg.Inode, sha256: pkg.SHA256}, true
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
	return s.scan(ctx, scanChanges)
}

// ScanWhole is a Scan that lists the directory whole, whatever the watch
// says: the periodic scan's safety net.
func (s *Scanner) ScanWhole(ctx context.Context) (*generation.Generation, ScanStats, error) {
	return s.scan(ctx, scanWhole)
}

// Verify is a scan that also reads every published file again, as a
// filesystem scrub does: a file whose bytes no longer match its entry
// while its size and times say it did not change (bit rot, a bad disk, a
// tampered mirror) is rejected with the reason, so it is no longer
// published, seeded or served.
func (s *Scanner) Verify(ctx context.Context) (*generation.Generation, ScanStats, error) {
	return s.scan(ctx, scanVerify)
}

// scanMode is how much of the directory a scan looks at.
type scanMode int

const (
	scanChanges scanMode = iota // what the watch says changed, when it can say
	scanWhole                   // every file's stat
	scanVerify                  // every file's bytes
)

func (s *Scanner) scan(ctx context.Context, mode scanMode) (*generation.Generation, ScanStats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, st, err := s.scanLocked(ctx, mode)
	if err != nil {
		// The watch's changes it took are in no catalog: the next scan
		// lists the directory.
		s.files = nil
	}
	return g, st, err
}

func (s *Scanner) scanLocked(ctx context.Context, mode scanMode) (*generation.Generation, ScanStats, error) {
	start := time.Now()
	verify := mode == scanVerify

	files, watchedNames, err := s.listing(mode)
	if err != nil {
		return nil, ScanStats{}, err
	}
	sp := &scanPass{files: files, changed: watchedNames}
	sp.stats.Watched = watchedNames != nil
	// A verify is a scrub: it compares the files with the catalog itself.
	last := s.last
	if verify {
		last = nil
	}
	if err := s.cat.View(func(tx *store.CatalogTx) error { return sp.readCatalog(tx, last) }); err != nil {
		return nil, sp.stats, fmt.Errorf("scan: read catalog: %w", err)
	}
	outcomes, err := s.readChanged(ctx, sp, verify)
	if err != nil {
		return nil, sp.stats, err
	}
	ch := sp.changes(outcomes)
	changed := ch.any() || sp.trackers == nil || !slices.Equal(sp.trackers, s.opts.Trackers) ||
		!slices.Equal(sp.dhtNodes, s.opts.DHTNodes)
	now := s.opts.Now()
	// An index that has lived a quarter of its validity is signed again as
	// a new generation: clients refuse an expired one.
	stale := now.Sub(sp.updated) >= s.opts.ValidFor/4
	if !changed && !stale && s.last != nil && s.last.Number == sp.gen {
		sp.stats.Duration = time.Since(start)
		sp.stats.Published = len(s.last.Packages)
		return s.last, sp.stats, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, sp.stats, err
	}
	if changed || stale || sp.gen == 0 {
		if err := s.commit(ch, sp.gen+1, now); err != nil {
			return nil, sp.stats, fmt.Errorf("scan: update catalog: %w", err)
		}
	}
	g, err := s.renew(ch, sp.published)
	if err != nil {
		return nil, sp.stats, err
	}
	sp.stats.NewGeneration = true
	sp.stats.Published = len(g.Packages)
	sp.stats.Duration = time.Since(start)
	return g, sp.stats, nil
}

// scanPass is one scan's view of the directory and of the catalog, and
// what it counted.
type scanPass struct {
	files map[string]fileStat
	// changed, from a watch, are the only names that may differ from the
	// catalog, sorted (nil: any may, the directory was listed).
	changed []string
	// published is what the catalog publishes as this scan found it: the
	// next generation is made from it and the changes. It is the last
	// generation when their numbers agree, so a rescan decodes no entry
	// (0.9 s of a 3.4 s rescan at 100,000), else read from the catalog.
	published  *generation.Generation
	rejections map[string]*store.Rejection
	gen        uint64
	updated    time.Time // of generation gen
	trackers   []string
	dhtNodes   []string
	stats      ScanStats
}

// readCatalog takes the catalog's entries (from last when it is the
// catalog's generation), rejections and generation.
func (sp *scanPass) readCatalog(tx *store.CatalogTx, last *generation.Generation) error {
	rs, err := tx.Rejections()
	if err != nil {
		return err
	}
	if last != nil && last.Number == tx.Generation() {
		sp.published = last
	} else {
		var pkgs []generation.Package
		err := tx.EachEntry(func(e *store.CatalogEntry) error {
			pkg, err := packageOf(e)
			pkgs = append(pkgs, pkg)
			return err
		})
		if err != nil {
			return err
		}
		sp.published = generation.New(generation.Generation{Number: tx.Generation(), Packages: pkgs})
	}
	sp.rejections = make(map[string]*store.Rejection, len(rs))
	for _, r := range rs {
		sp.rejections[r.File] = r
	}
	sp.gen, sp.updated, sp.trackers, sp.dhtNodes = tx.Generation(), tx.Updated(), tx.Trackers(), tx.DHTNodes()
	return nil
}

// sortFiles sorts the directory into what the catalog already knows and
// what must be read. With verify, the published files that did not change
// by their stat are read again too (rechecked).
func (sp *scanPass) sortFiles(verify bool) (toRead []string, outcomes []outcome, rechecked map[string]bool) {
	rechecked = map[string]bool{}
	look := sp.files
	if sp.changed != nil {
		// The watch vouches for the others: unchanged, unlooked at.
		look = make(map[string]fileStat, len(sp.changed))
		for _, name := range sp.changed {
			if st, ok := sp.files[name]; ok {
				look[name] = st
			}
		}
		sp.stats.Unchanged = len(sp.files) - len(look)
	}
	for name, st := range look {
		if e, ok := lookup(sp.published, name); ok && st.matchesEntry(e) {
			if verify {
				rechecked[name] = true
				toRead = append(toRead, name)
				continue
			}
			sp.stats.Unchanged++
			continue
		}
		if r := sp.rejections[name]; r != nil && st.matchesRejection(r) {
			sp.stats.Unchanged++
			continue
		}
		if !st.regular {
			outcomes = append(outcomes, outcome{file: name, reject: rejection(name, st, "not a regular file (symlinks and other special files are not published)")})
			continue
		}
		toRead = append(toRead, name)
	}
	sort.Strings(toRead)
	return toRead, outcomes, rechecked
}

// readChanged reads the files new or changed since the catalog recorded
// them (with verify, the published ones too) and returns the outcomes,
// with those of the files refused unread.
func (s *Scanner) readChanged(ctx context.Context, sp *scanPass, verify bool) ([]outcome, error) {
	toRead, outcomes, rechecked := sp.sortFiles(verify)
	read, err := s.readAll(ctx, toRead, sp.files)
	if err != nil {
		return nil, err
	}
	for _, o := range read {
		keep := true
		if rechecked[o.file] {
			o, keep = sp.recheck(o)
		}
		if keep {
			outcomes = append(outcomes, o)
		}
	}
	return outcomes, nil
}

// recheck judges a published file that a verify read again. It returns
// the outcome to record, a rejection when the bytes no longer match the
// entry, or false when there is nothing to record.
func (sp *scanPass) recheck(o outcome) (outcome, bool) {
	old, _ := lookup(sp.published, o.file)
	switch {
	case o.entry != nil && o.entry.SHA256 == old.sha256:
		sp.stats.Unchanged++
		sp.stats.BytesRead += o.read
		return o, false
	case o.skip != nil:
		return o, true
	}
	sum := "unreadable"
	if o.entry != nil {
		sum = o.entry.SHA256
	}
	st := sp.files[o.file]
	o.entry, o.reject = nil, rejection(o.file, st, fmt.Sprintf("its bytes changed on disk while its size and times did not (bit rot, a bad disk or tampering): sha256 %s, published as %s; restore the file from a good copy", sum, old.sha256))
	return o, true
}

// catalogChanges is what a scan writes to the catalog.
type catalogChanges struct {
	puts               []*store.CatalogEntry
	listings           map[string][]string // by sha256, of the entries put
	rejects            []*store.Rejection
	deletes, unrejects []string
	replaced           int // puts of files published before
}

func (ch *catalogChanges) any() bool {
	return len(ch.puts)+len(ch.rejects)+len(ch.deletes)+len(ch.unrejects) > 0
}

// changes works out what the outcomes and the files gone change in the
// catalog, and counts them.
func (sp *scanPass) changes(outcomes []outcome) *catalogChanges {
	ch := &catalogChanges{listings: map[string][]string{}}
	for _, o := range outcomes {
		sp.stats.BytesRead += o.read
		switch {
		case o.entry != nil:
			if _, ok := lookup(sp.published, o.file); ok {
				sp.stats.Changed++
				ch.replaced++
			} else {
				sp.stats.Added++
			}
			ch.puts = append(ch.puts, o.entry)
			if o.listing != nil {
				ch.listings[o.entry.SHA256] = o.listing
			}
		case o.reject != nil:
			if old := sp.rejections[o.file]; old == nil || old.Reason != o.reject.Reason {
				sp.stats.Rejected++
				sp.stats.Rejections = append(sp.stats.Rejections, generation.Rejected{File: o.file, Reason: o.reject.Reason})
			}
			ch.rejects = append(ch.rejects, o.reject)
		default: // changed while being read: unpublish until it settles
			sp.stats.Skipped++
			if _, ok := lookup(sp.published, o.file); ok {
				ch.deletes = append(ch.deletes, o.file)
			}
		}
	}
	sp.gone(func(name string) {
		if _, ok := lookup(sp.published, name); ok {
			sp.stats.Removed++
			ch.deletes = append(ch.deletes, name)
		}
		if sp.rejections[name] != nil {
			ch.unrejects = append(ch.unrejects, name)
		}
	})
	return ch
}

// gone calls f with each name the catalog may know that is no longer in
// the directory: of the watch's changed names, or of every name the
// catalog publishes or rejects.
func (sp *scanPass) gone(f func(name string)) {
	names := sp.changed
	if names == nil {
		for i := range sp.published.Packages {
			names = append(names, sp.published.Packages[i].File)
		}
		for name := range sp.rejections {
			if _, published := lookup(sp.published, name); !published {
				names = append(names, name)
			}
		}
	}
	for _, name := range names {
		if _, ok := sp.files[name]; !ok {
			f(name)
		}
	}
}

// commit writes the changes to the catalog as generation gen, valid from
// now.
func (s *Scanner) commit(ch *catalogChanges, gen uint64, now time.Time) error {
	return s.cat.Update(func(tx *store.CatalogTx) error {
		for _, e := range ch.puts {
			if err := tx.PutEntry(e); err != nil {
				return err
			}
		}
		for _, r := range ch.rejects {
			if err := tx.PutRejection(r); err != nil {
				return err
			}
		}
		for _, name := range ch.deletes {
			if err := tx.DeleteEntry(name); err != nil {
				return err
			}
		}
		for _, name := range ch.unrejects {
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
		if err := tx.SetDHTNodes(s.opts.DHTNodes); err != nil {
			return err
		}
		return tx.SetGeneration(gen, now)
	})
}

// renew makes the generation the catalog now holds the last one, and keeps
// the listings of the packages read. prev is what the catalog published
// before ch was committed.
func (s *Scanner) renew(ch *catalogChanges, prev *generation.Generation) (*generation.Generation, error) {
	g, err := s.generation(ch, prev)
	if err != nil {
		return nil, err
	}
	if err := s.keepListings(g, ch); err != nil {
		return nil, err
	}
	s.last = g
	return g, nil
}

// keepListings records the listings of the packages read by this scan and
// forgets those of packages no longer published (after a first scan, only
// a change of the last generation can have made any).
func (s *Scanner) keepListings(g *generation.Generation, ch *catalogChanges) error {
	if s.opts.Listings == nil {
		return nil
	}
	if err := s.opts.Listings.PutAll(ch.listings); err != nil {
		return fmt.Errorf("scan: listings: %w", err)
	}
	if s.last != nil && len(ch.deletes)+len(ch.rejects)+ch.replaced == 0 {
		return nil // nothing left the generation: every put was a new file
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

// listing returns the package files of the directory with their stats:
// the last scan's brought up to date by the watch's changes, when it has
// them all (changed: those names, sorted, not nil), else a listing.
func (s *Scanner) listing(mode scanMode) (files map[string]fileStat, changed []string, err error) {
	if s.watch == nil {
		files, err = s.list()
		return files, nil, err
	}
	// Taken before a listing too: what changes after it is the next
	// scan's.
	names, complete := s.watch.changes()
	if complete && mode == scanChanges && s.files != nil {
		if err := s.restat(names); err == nil {
			if names == nil {
				names = []string{} // none changed, and the watch says so
			}
			sort.Strings(names)
			return s.files, names, nil
		}
	}
	if !complete {
		// Overflowed, or the directory moved: a new watch, on the
		// directory now at Dir, vouches for what follows.
		s.watch.close()
		if s.watch, s.watchErr = startWatch(s.opts.Dir); s.watchErr == nil {
			s.watch.changes()
		}
	}
	s.files = nil
	if files, err = s.list(); err == nil && s.watch != nil {
		s.files = files
	}
	return files, nil, err
}

// restat brings s.files up to date with the stats of names, changed since.
func (s *Scanner) restat(names []string) error {
	dir, err := os.Open(s.opts.Dir)
	if err != nil {
		return err
	}
	defer dir.Close()
	for _, name := range names {
		if !strings.HasSuffix(name, Ext) || strings.HasPrefix(name, ".") {
			continue
		}
		var st unix.Stat_t
		switch err := unix.Fstatat(int(dir.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); {
		case errors.Is(err, unix.ENOENT) || (err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR):
			delete(s.files, name)
		case err != nil:
			return err
		default:
			s.files[name] = statOfUnix(&st)
		}
	}
	return nil
}

// list returns the package files of the directory with their stats. Hidden
// files are left out: uploaders write ".name.tpkg.tmp"-style files and
// rename them into place when complete.
func (s *Scanner) list() (map[string]fileStat, error) {
	dir, err := os.Open(s.opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", s.opts.Dir, err)
	}
	defer dir.Close()
	all, err := dir.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", s.opts.Dir, err)
	}
	names := slices.DeleteFunc(all, func(name string) bool {
		return !strings.HasSuffix(name, Ext) || strings.HasPrefix(name, ".")
	})
	stats, err := s.statAll(int(dir.Fd()), names)
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", s.opts.Dir, err)
	}
	files := make(map[string]fileStat, len(names))
	for i, name := range names {
		if st := stats[i]; st.found && !st.dir {
			files[name] = st.fileStat
		}
	}
	return files, nil
}

// statAll stats names in the directory dfd on Workers goroutines (100,000
// lstat calls one after the other were a quarter of a rescan). A name
// removed since the listing is not found.
func (s *Scanner) statAll(dfd int, names []string) ([]listed, error) {
	stats := make([]listed, len(names))
	workers := max(1, min(s.opts.Workers, len(names)/1000))
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(names); i += workers {
				var st unix.Stat_t
				err := unix.Fstatat(dfd, names[i], &st, unix.AT_SYMLINK_NOFOLLOW)
				switch {
				case err == nil:
					stats[i] = listed{fileStat: statOfUnix(&st), found: true, dir: st.Mode&unix.S_IFMT == unix.S_IFDIR}
				case !errors.Is(err, unix.ENOENT):
					errs[w] = fmt.Errorf("%s: %w", names[i], err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return stats, errors.Join(errs...)
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
	done := make(chan verdict, 1)
	go func() {
		v := s.validate(cr)
		cr.stop()
		done <- v
	}()
	n, rerr := readChunks(ctx, r, h, chunks, done)
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

// verdict is what the validator made of a file.
type verdict struct {
	m     *manifest.Manifest
	paths []string // what the archive installs, when read whole
	err   error
}

// validate checks the archive as far as Options.Check says.
func (s *Scanner) validate(cr *chanReader) verdict {
	var v verdict
	if s.opts.Check == CheckManifest {
		v.m, v.err = tarball.ReadManifest(cr)
		return v
	}
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
	return v
}

// readChunks reads r chunk by chunk to its end, hashing each chunk and
// handing it to the validator while the validator reads. It stops early
// when the validator refuses the file, which needs no hashes. It returns
// the bytes read and a *readError for I/O.
func readChunks(ctx context.Context, r io.Reader, h *swarm.Hasher, chunks chan<- []byte, done chan verdict) (int64, error) {
	var n int64
	validating := true
	for {
		if err := ctx.Err(); err != nil {
			return n, &readError{err}
		}
		bp := chunkPool.Get().(*[]byte)
		k, err := io.ReadFull(r, *bp)
		if k > 0 {
			n += int64(k)
			if _, herr := h.Write((*bp)[:k]); herr != nil {
				chunkPool.Put(bp)
				return n, &readError{herr}
			}
		}
		refused := false
		if k > 0 && validating {
			validating, refused = handOff(bp, k, chunks, done)
		} else {
			chunkPool.Put(bp)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return n, nil
		}
		if err != nil {
			return n, &readError{err}
		}
		if refused {
			return n, nil
		}
	}
}

// handOff gives the validator the first k bytes of *bp. It reports whether
// the validator is still reading, and whether it refused the file.
func handOff(bp *[]byte, k int, chunks chan<- []byte, done chan verdict) (validating, refused bool) {
	select {
	case chunks <- (*bp)[:k]:
		return true, false
	case v := <-done:
		// The validator finished early: ReadManifest stops after
		// package.json, and a rejection needs no hashes.
		done <- v
		chunkPool.Put(bp)
		return false, v.err != nil
	}
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
	// Watched: the directory's changes came from the watch, and only the
	// files changed were stat'ed.
	Watched    bool
	Rejections []generation.Rejected
}
