package index

import (
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unsafe"

	"tpm/manifest"
	"tpm/resolve"
	"tpm/store"
)

// Snapshot is one verified generation of the repository's catalog. It is
// immutable: readers on many goroutines share it without locks, and a copy
// of the struct (a fresher Fetched, other Servers) reads the same file.
//
// The packages are read where they lie, as apt reads its mmapped cache: the
// snapshot keeps its verified index.db open read-only (bbolt maps it; the
// kernel pages in what a lookup touches) and decodes an entry only when
// asked for it (Versions, Best, Entry). What it holds in memory is a
// compact table of every package that runs on this host (its name,
// version, file and description, each after its length, and a 4-byte
// offset: 75 bytes a package in test/bench/scale, in two allocations
// without pointers, which the garbage collector does not scan), sorted as
// the resolver reads them, so a name is found by a binary search and a
// search reads no file; and the last few names it decoded. Decoded whole,
// a host following 100,000 packages held 150 MB of them (the rows of
// test/bench/scale).
type Snapshot struct {
	Generation uint64
	Updated    time.Time // when the server made it
	ValidUntil time.Time // when it expires (the zero time for Empty)
	Fetched    time.Time // when this host last confirmed it is current
	ETag       string
	// Servers is what each server answered at the fetch that gave this
	// index (nil for one loaded from disk).
	Servers []ServerState
	// Trackers is the announce list the index names (signed, so a mirror
	// cannot send announces elsewhere); nil when it names none, an index
	// of a server older than the list.
	Trackers []string
	// DHTNodes are the DHT nodes ("host:port", at most
	// store.MaxDHTNodes, each valid) the index names for a host to join
	// through, the repository's own; nil when it names none.
	DHTNodes []string

	t *table // nil for Empty
}

// Empty is the index of a host that has never synced.
func Empty() *Snapshot { return &Snapshot{} }

// Len is how many packages of the index run on this host, every version
// counted.
func (idx *Snapshot) Len() int {
	if idx.t == nil {
		return 0
	}
	return len(idx.t.recs)
}

// Expired says whether the index's validity ended before now. A host keeps
// an expired index it had (queries answer from it) but installs nothing
// from it: an old index, replayed, would keep it on old packages.
func (idx *Snapshot) Expired(now time.Time) bool {
	return idx.Generation != 0 && !now.Before(idx.ValidUntil)
}

// ExpiredError says what an expired index means and what to do.
func (idx *Snapshot) ExpiredError() error {
	return fmt.Errorf("the repository's index (generation %d) expired at %s and no fresher one came: run tpm sync, and if that fails check the server (a stale repository, or someone replaying an old index); installed packages keep working", idx.Generation, idx.ValidUntil.UTC().Format(time.RFC3339))
}

// Versions returns every entry of name that runs on this host, newest
// first (resolve.NewestFirst; equal versions in file name order). The
// entries are shared by every caller: read only.
func (idx *Snapshot) Versions(name string) []*store.CatalogEntry {
	if idx.t == nil {
		return nil
	}
	return idx.t.versions(name).entries
}

// Best returns the newest entry of name, or nil.
func (idx *Snapshot) Best(name string) *store.CatalogEntry {
	if vs := idx.Versions(name); len(vs) > 0 {
		return vs[0]
	}
	return nil
}

// Entry returns the entry of exactly name and version, or nil.
func (idx *Snapshot) Entry(name, version string) *store.CatalogEntry {
	for _, e := range idx.Versions(name) {
		if e.Version == version {
			return e
		}
	}
	return nil
}

// Summary is what a snapshot holds in memory of a package version: what a
// search shows and matches, read without the file. Its strings share the
// snapshot's table: clone one that is kept for long.
type Summary struct {
	Name, Version, Description string
}

// Newest yields the newest version of every package that runs on this
// host, by name.
func (idx *Snapshot) Newest() iter.Seq[Summary] {
	return func(yield func(Summary) bool) {
		if idx.t == nil {
			return
		}
		t := idx.t
		prev := ""
		for i := range t.recs {
			r := t.rec(i)
			if i > 0 && r.name == prev {
				continue // an older version
			}
			prev = r.name
			if !yield(Summary{Name: r.name, Version: r.version, Description: r.desc}) {
				return
			}
		}
	}
}

// Resolver is the index as the dependency resolver reads it.
func (idx *Snapshot) Resolver() resolve.Index { return resolver{idx} }

// resolver is a snapshot read as a resolve.Index: the manifests of its
// entries.
type resolver struct{ idx *Snapshot }

func (r resolver) Versions(name string) []*manifest.Manifest {
	if r.idx.t == nil {
		return nil
	}
	return r.idx.t.versions(name).manifests
}

func (r resolver) Providers(name string) []*manifest.Manifest {
	var out []*manifest.Manifest
	for _, p := range r.idx.Providers(name) {
		for _, m := range r.idx.t.versions(p).manifests {
			if m.ProvidesName(name) {
				out = append(out, m)
			}
		}
	}
	return out
}

// Providers names the packages that provide name (some version of each
// does), by name; none for a name nothing provides.
func (idx *Snapshot) Providers(name string) []string {
	if idx.t == nil {
		return nil
	}
	return idx.t.provides[name]
}

// release closes the file of a snapshot that was never handed out (a
// candidate a fetch did not keep), at once rather than when the garbage
// collector finds it unreachable.
func (idx *Snapshot) release() {
	if idx != nil && idx.t != nil {
		idx.t.file.close()
	}
}

// table is what a snapshot reads its packages from.
//
// Its file stays open while anything can still read the snapshot, and is
// closed once nothing can: a cleanup (runtime.AddCleanup) closes it when
// the garbage collector finds the table unreachable. Every holder of a
// snapshot (the syncer, the supervisor, the installer and the query and
// plan goroutines it starts, the swarm actor, the mirror's copier, a
// message in a mailbox) keeps it reachable by the reference it has, so a
// query that started on an index that a sync has since replaced reads on,
// from the file the snapshot owns (the keeper replaces index.db by a
// rename: the inode stays while it is open). A reference count would need
// every one of those to release what it took, at the right time (a release
// missed leaks a mapping, one too early fails a running query); closing
// the previous snapshot at the next swap fails a query slower than two
// syncs. The price is that a replaced file is closed at the next garbage
// collection, not at once (the runtime collects at least every 2 minutes):
// until then its disk space and the few pages a query touched stay. Each
// read keeps the table alive until its bbolt transaction has ended
// (runtime.KeepAlive), and bbolt's Close waits for open transactions
// anyway; a snapshot never handed out is closed at once (release).
type table struct {
	file *catalogFile
	// arena holds the records, each four fields (name, version, file,
	// description) of a uvarint length and the bytes; recs is the offset
	// of each record, by name (bytewise), then newest version first.
	arena []byte
	recs  []uint32
	// provides is, for every name some package provides, the providers'
	// names (sorted, once each): few packages provide anything, so this
	// costs little beside the records.
	provides map[string][]string

	mu    sync.Mutex
	cache map[string]decoded // a few names, decoded
}

// catalogFile is the open index.db of a table. It is apart from the table
// so that the table's cleanup can close it (a cleanup must not reach the
// object it watches).
type catalogFile struct {
	once sync.Once
	cat  *store.Catalog
}

func (f *catalogFile) close() { f.once.Do(func() { f.cat.Close() }) }

// decoded is a name's entries as read from the file, and their manifests
// for the resolver.
type decoded struct {
	entries   []*store.CatalogEntry
	manifests []*manifest.Manifest
}

// cacheNames is how many names a table keeps decoded. A plan asks for the
// same names several times (the names asked for, the resolver's questions,
// the plan's entries) and resolve.Resolve asks for each once, so a few
// hundred cover a large transaction; a name costs a few KB (an entry is
// its manifest and its torrent's info dictionary).
const cacheNames = 256

// rec is one record of a table; its strings share the arena (immutable
// once built, so they stay valid as long as anything holds them).
type rec struct{ name, version, file, desc string }

func (t *table) rec(i int) rec {
	b := t.arena[t.recs[i]:]
	var r rec
	r.name, b = field(b)
	r.version, b = field(b)
	r.file, b = field(b)
	r.desc, _ = field(b)
	return r
}

// name is the name of record i, without the rest.
func (t *table) name(i int) string {
	n, _ := field(t.arena[t.recs[i]:])
	return n
}

// field reads the field at the start of b, as a string that shares b, and
// returns the rest.
func field(b []byte) (string, []byte) {
	n, k := binary.Uvarint(b)
	b = b[k:]
	if n == 0 {
		return "", b
	}
	return unsafe.String(&b[0], int(n)), b[n:]
}

// versions decodes the entries of name from the file (or takes them from
// the cache).
func (t *table) versions(name string) decoded {
	t.mu.Lock()
	d, ok := t.cache[name]
	t.mu.Unlock()
	if ok {
		return d
	}
	first := sort.Search(len(t.recs), func(i int) bool { return t.name(i) >= name })
	var files []string
	for i := first; i < len(t.recs) && t.name(i) == name; i++ {
		files = append(files, t.rec(i).file)
	}
	if len(files) == 0 {
		return decoded{}
	}
	err := t.file.cat.View(func(tx *store.CatalogTx) error {
		for _, f := range files {
			e, err := tx.Entry(f)
			if err != nil {
				return err
			}
			if e == nil {
				return fmt.Errorf("entry %s is gone", f)
			}
			d.entries = append(d.entries, e)
			d.manifests = append(d.manifests, &e.Manifest)
		}
		return nil
	})
	runtime.KeepAlive(t) // the file stays open until the transaction ended
	if err != nil {
		// Every entry was read and checked when the file was opened, and
		// nothing on this host writes it in place (the keeper replaces it
		// by a rename): only someone writing the state directory behind
		// the daemon's back gets here. The package reads as absent.
		return decoded{}
	}
	t.mu.Lock()
	if len(t.cache) >= cacheNames {
		for k := range t.cache { // a random one: map order
			delete(t.cache, k)
			break
		}
	}
	t.cache[name] = d
	t.mu.Unlock()
	return d
}

// freeAfter is the size of an index file from which loading it returns its
// garbage to the system at once: reading every entry to check it decodes
// the whole index (several times the file's size on the heap), and the
// runtime would give that back over minutes.
const freeAfter = 16 << 20

// open reads the verified catalog file at path into a snapshot that keeps
// it open. f is the file the signature was checked over: the file read
// must be that one.
func open(path string, f *os.File) (*Snapshot, error) {
	fail := func(err error) (*Snapshot, error) {
		return nil, fmt.Errorf("index %s: %w", path, err)
	}
	// A damaged bbolt file crashes bbolt (a truncated one with SIGBUS):
	// refused before bbolt opens it, even signed (a signing key can leak).
	if err := store.CheckFile(path); err != nil {
		return fail(err)
	}
	idx, arena, recs, provides, err := readAll(path)
	if err != nil {
		return fail(err)
	}
	// A second open, for the snapshot's reads: the first one's mapping has
	// every page of the file in it (each entry was read), the kernel keeps
	// them until it is closed, and they would count in the daemon's memory
	// (VmRSS) as long as the snapshot lives. This one holds only what the
	// lookups touch.
	cat, err := store.OpenCatalogReadOnly(path)
	if err != nil {
		return fail(err)
	}
	if err := sameFile(f, path); err != nil {
		cat.Close()
		return fail(err)
	}
	if info, err := f.Stat(); err == nil && info.Size() >= freeAfter {
		debug.FreeOSMemory()
	}
	t := &table{file: &catalogFile{cat: cat}, arena: arena, recs: recs, provides: provides, cache: make(map[string]decoded)}
	runtime.AddCleanup(t, (*catalogFile).close, t.file)
	idx.t = t
	return idx, nil
}

// sameFile refuses a file at path that is not f: the keeper is the only
// writer of its directory, so this is a second daemon on the same state
// directory (which the pid file forbids), not an attack (whoever can write
// the state directory of a root daemon needs none).
func sameFile(f *os.File, path string) error {
	a, err := f.Stat()
	if err != nil {
		return err
	}
	b, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !os.SameFile(a, b) {
		return errors.New("replaced while it was read")
	}
	return nil
}

// readAll opens the catalog at path once, checks every entry, and returns
// the snapshot's fields and its table: the records of the entries that run
// on this host, sorted by name, newest version first, and who provides
// what.
func readAll(path string) (*Snapshot, []byte, []uint32, map[string][]string, error) {
	cat, err := store.OpenCatalogReadOnly(path)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	defer cat.Close()
	idx := &Snapshot{}
	var rs []rec
	provides := make(map[string][]string)
	size := 0
	err = cat.View(func(tx *store.CatalogTx) error {
		arch := manifest.HostArchitecture()
		// One entry decoded at a time: all 100,000 at once were most of a
		// host's peak (287 MB) while it read a new index.
		err := tx.EachEntry(func(e *store.CatalogEntry) error {
			if err := checkEntry(e); err != nil {
				return err
			}
			if e.RunsOn(arch) {
				rs = append(rs, rec{name: e.Name, version: e.Version, file: e.File, desc: e.Description})
				for _, p := range e.Provides {
					if ps := provides[p.Name]; !slices.Contains(ps, e.Name) {
						provides[p.Name] = append(ps, e.Name)
					}
				}
				for _, f := range []string{e.Name, e.Version, e.File, e.Description} {
					size += fieldLen(f)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		idx.Generation, idx.Updated, idx.ValidUntil, idx.Trackers = tx.Generation(), tx.Updated(), tx.ValidUntil(), tx.Trackers()
		idx.DHTNodes = tx.DHTNodes()
		return nil
	})
	if err != nil {
		return nil, nil, nil, nil, err
	}
	for _, ps := range provides {
		slices.Sort(ps)
	}
	// By name, then newest first, equal versions in the catalog's order
	// (by file name): the order resolve.NewIndex gives, which Best and the
	// resolver agree on.
	slices.SortStableFunc(rs, func(a, b rec) int {
		if c := strings.Compare(a.name, b.name); c != 0 {
			return c
		}
		return resolve.NewestFirst(a.version, b.version)
	})
	arena, recs, err := packRecords(rs, size)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	return idx, arena, recs, provides, nil
}

// packRecords lays the sorted records out in one arena of size bytes, and
// returns it with each record's offset.
func packRecords(rs []rec, size int) ([]byte, []uint32, error) {
	if size > 1<<32-1 {
		return nil, nil, errors.New("too large")
	}
	arena := make([]byte, 0, size)
	recs := make([]uint32, len(rs))
	for i, r := range rs {
		recs[i] = uint32(len(arena))
		for _, f := range []string{r.name, r.version, r.file, r.desc} {
			arena = binary.AppendUvarint(arena, uint64(len(f)))
			arena = append(arena, f...)
		}
	}
	return arena, recs, nil
}

// fieldLen is the bytes f takes in the arena.
func fieldLen(f string) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], uint64(len(f))) + len(f)
}
