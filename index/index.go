// Package index keeps a client's copy of the repository's signed index:
// it fetches /index.db and /index.db.sig, verifies the signature with the
// trusted key before anything reads the file, refuses an index older than
// the one it has (a replay), swaps the files atomically, and loads the
// catalog into an immutable Snapshot that the daemon's actors share.
package index

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"tpm/manifest"
	"tpm/resolve"
	"tpm/signing"
	"tpm/store"
)

// File names in the state directory.
const (
	IndexFile = "index.db"
	SigFile   = "index.db.sig"
)

// What a server may make us download and hold: an index, and its
// signature (a minisign signature is about 300 bytes).
const (
	maxIndex     = 256 << 20
	maxSignature = 4 << 10
)

// Snapshot is one verified generation of the repository's catalog. It is
// immutable: readers on many goroutines share it without locks.
type Snapshot struct {
	Generation uint64
	Updated    time.Time // when the server made it
	ValidUntil time.Time // when it expires (the zero time for Empty)
	Fetched    time.Time // when this host last confirmed it is current
	ETag       string
	Entries    []*store.CatalogEntry // by name, then newest version first
	// Servers is what each server answered at the fetch that gave this
	// index (nil for one loaded from disk).
	Servers []ServerState
	// Trackers is the announce list the index names (signed, so a mirror
	// cannot send announces elsewhere); nil when it names none, an index
	// of a server older than the list.
	Trackers []string

	byName  map[string][]*store.CatalogEntry
	resolve resolve.Index
}

func newSnapshot(gen uint64, updated time.Time, entries []*store.CatalogEntry) *Snapshot {
	idx := &Snapshot{Generation: gen, Updated: updated, byName: make(map[string][]*store.CatalogEntry)}
	ms := make([]*manifest.Manifest, len(entries))
	for i, e := range entries {
		ms[i] = &e.Manifest
	}
	// Only what runs on this host; entries in the resolver's order (newest
	// first per name), so Best and the resolver agree.
	idx.resolve = resolve.NewIndex(ms, manifest.HostArchitecture())
	names := make([]string, 0, len(idx.resolve))
	for n := range idx.resolve {
		names = append(names, n)
	}
	sort.Strings(names)
	byManifest := make(map[*manifest.Manifest]*store.CatalogEntry, len(entries))
	for _, e := range entries {
		byManifest[&e.Manifest] = e
	}
	for _, n := range names {
		for _, m := range idx.resolve[n] {
			e := byManifest[m]
			idx.Entries = append(idx.Entries, e)
			idx.byName[n] = append(idx.byName[n], e)
		}
	}
	return idx
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

// Empty is the index of a host that has never synced.
func Empty() *Snapshot { return newSnapshot(0, time.Time{}, nil) }

// Resolver is the index as the dependency resolver reads it.
func (idx *Snapshot) Resolver() resolve.Index { return idx.resolve }

// Versions returns every entry of name, newest first.
func (idx *Snapshot) Versions(name string) []*store.CatalogEntry { return idx.byName[name] }

// Best returns the newest entry of name, or nil.
func (idx *Snapshot) Best(name string) *store.CatalogEntry {
	if vs := idx.byName[name]; len(vs) > 0 {
		return vs[0]
	}
	return nil
}

// Entry returns the entry of exactly name and version, or nil.
func (idx *Snapshot) Entry(name, version string) *store.CatalogEntry {
	for _, e := range idx.byName[name] {
		if e.Version == version {
			return e
		}
	}
	return nil
}

// Keeper fetches and keeps, in a state directory, the index of a
// repository that one or more servers publish (the origin and its
// mirrors): every server is asked, and the newest valid generation wins.
type Keeper struct {
	Servers []string // base URLs, without the trailing slash
	Key     signing.PublicKey
	Dir     string
	HTTP    *http.Client
	Now     func() time.Time
}

// ServerState is what one server answered at the last fetch.
type ServerState struct {
	URL string
	// Generation is that of the valid index it served (0: none).
	Generation uint64
	// Behind says that index is older than the one kept.
	Behind bool
	// Err says why it served no valid index.
	Err string
}

// New returns a keeper in dir of the index that servers publish, trusting
// key.
func New(servers []string, key signing.PublicKey, dir string) *Keeper {
	m := &Keeper{
		Key:  key,
		Dir:  dir,
		HTTP: &http.Client{Timeout: 60 * time.Second},
		Now:  time.Now,
	}
	for _, s := range servers {
		m.Servers = append(m.Servers, strings.TrimRight(s, "/"))
	}
	return m
}

// Load reads the index kept from an earlier run, checking its signature
// again (the file could have been changed while the daemon was down). No
// index yet gives Empty and no error.
func (m *Keeper) Load() (*Snapshot, error) {
	data, err := os.ReadFile(filepath.Join(m.Dir, IndexFile))
	if errors.Is(err, os.ErrNotExist) {
		return Empty(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	sig, err := os.ReadFile(filepath.Join(m.Dir, SigFile))
	if err != nil {
		return nil, fmt.Errorf("index signature: %w", err)
	}
	if err := m.Key.Verify(data, sig); err != nil {
		return nil, fmt.Errorf("kept index %s: %w", filepath.Join(m.Dir, IndexFile), err)
	}
	idx, err := m.open(filepath.Join(m.Dir, IndexFile))
	if err != nil {
		return nil, err
	}
	info, _ := os.Stat(filepath.Join(m.Dir, IndexFile))
	if info != nil {
		idx.Fetched = info.ModTime()
	}
	return idx, nil
}

// candidate is one server's answer to a fetch: a verified index in a
// temporary file, or the kept one confirmed (notModified), or why not.
type candidate struct {
	server      string
	idx         *Snapshot
	tmp         string // the verified index, not yet kept
	sig         []byte
	tag         string
	notModified bool
	err         error
	// older is the generation of a valid index older than the one kept (a
	// mirror that lags): refused, yet the server is behind, not down.
	older uint64
}

// Fetch asks every server, at once, for its index, sending cur's ETag so
// that an unchanged index costs no body. It keeps the newest generation
// that is valid: signed with the trusted key, unexpired, and not older than
// cur's. It returns that index and whether it changed; an unchanged index
// comes back as a copy of cur with a fresh Fetched time. The index says in
// Servers what each server answered. It fails only when no server gave a
// valid index.
func (m *Keeper) Fetch(ctx context.Context, cur *Snapshot) (*Snapshot, bool, error) {
	cands := make([]candidate, len(m.Servers))
	var wg sync.WaitGroup
	for i, server := range m.Servers {
		wg.Go(func() { cands[i] = m.fetchFrom(ctx, server, cur, 0) })
	}
	wg.Wait()
	defer func() {
		for _, c := range cands {
			if c.tmp != "" {
				os.Remove(c.tmp)
			}
		}
	}()
	var best *candidate
	states := make([]ServerState, len(cands))
	for i := range cands {
		c := &cands[i]
		states[i] = ServerState{URL: c.server}
		switch {
		case c.older > 0:
			states[i].Generation, states[i].Behind = c.older, true
			continue
		case c.err != nil:
			states[i].Err = oneLine(c.err)
			continue
		case c.notModified:
			states[i].Generation = cur.Generation
		default:
			states[i].Generation = c.idx.Generation
		}
		if best == nil || states[i].Generation > best.generation(cur) {
			best = c
		}
	}
	if best == nil {
		if len(cands) == 1 {
			return nil, false, &FetchError{States: states, err: cands[0].err}
		}
		var why []string
		for _, c := range cands {
			why = append(why, c.server+": "+oneLine(c.err))
		}
		return nil, false, &FetchError{States: states,
			err: fmt.Errorf("no server gave a valid index (kept the old one): %s", strings.Join(why, "; "))}
	}
	for i := range states {
		states[i].Behind = states[i].Err == "" && states[i].Generation < best.generation(cur)
	}
	idx, changed, err := m.keep(best, cur)
	if err != nil {
		return nil, false, err
	}
	idx.Servers = states
	return idx, changed, nil
}

// FetchError is a fetch that no server answered with a valid index, with
// what each said.
type FetchError struct {
	States []ServerState
	err    error
}

func (e *FetchError) Error() string { return e.err.Error() }
func (e *FetchError) Unwrap() error { return e.err }

// generation is the generation the candidate stands for.
func (c *candidate) generation(cur *Snapshot) uint64 {
	if c.notModified {
		return cur.Generation
	}
	return c.idx.Generation
}

// keep makes c the kept index.
func (m *Keeper) keep(c *candidate, cur *Snapshot) (*Snapshot, bool, error) {
	if c.notModified || (cur != nil && c.idx.Generation == cur.Generation && cur.Generation != 0) {
		// Same generation (a new ETag: a restarted server): nothing changed.
		fresh := *cur
		fresh.Fetched = m.Now()
		if !c.notModified {
			fresh.ETag = c.tag
		}
		return &fresh, false, nil
	}
	// The signature goes first: a crash between the renames leaves a new
	// signature over an old index, which Load refuses, and the next start
	// fetches again; never an unverified index that looks verified.
	sigTmp, err := writeTemp(m.Dir, SigFile, c.sig)
	if err != nil {
		return nil, false, err
	}
	if err := os.Rename(sigTmp, filepath.Join(m.Dir, SigFile)); err != nil {
		os.Remove(sigTmp)
		return nil, false, fmt.Errorf("index: %w", err)
	}
	if err := os.Rename(c.tmp, filepath.Join(m.Dir, IndexFile)); err != nil {
		return nil, false, fmt.Errorf("index: %w", err)
	}
	c.tmp = ""
	idx := c.idx
	idx.ETag, idx.Fetched = c.tag, m.Now()
	return idx, true, nil
}

// fetchFrom asks one server and checks its answer as Fetch says.
func (m *Keeper) fetchFrom(ctx context.Context, server string, cur *Snapshot, swaps int) candidate {
	c := candidate{server: server}
	etag := ""
	if cur != nil {
		etag = cur.ETag
	}
	data, newTag, notModified, err := m.get(ctx, server, "/"+IndexFile, etag, maxIndex)
	if err != nil {
		c.err = err
		return c
	}
	if notModified && cur != nil {
		if cur.Expired(m.Now()) {
			c.err = cur.ExpiredError()
		}
		c.notModified = true
		return c
	}
	sig, _, _, err := m.get(ctx, server, "/"+SigFile, "", maxSignature)
	if err != nil {
		c.err = fmt.Errorf("the repository's index signature: %w", err)
		return c
	}
	if err := m.Key.Verify(data, sig); err != nil {
		// The server may have published a new generation between the two
		// requests: the signature is then the new index's. Only an index
		// that is still the server's is refused, and only one publication
		// is believed: a server (or someone between) that keeps changing
		// the index cannot make us fetch it again and again.
		if swaps < 1 && m.changedSince(ctx, server, newTag) {
			return m.fetchFrom(ctx, server, cur, swaps+1)
		}
		c.err = fmt.Errorf("refusing the repository's index (kept the old one): %w; check --trusted-key or the server", err)
		return c
	}
	tmp, err := writeTemp(m.Dir, IndexFile, data)
	if err != nil {
		c.err = err
		return c
	}
	idx, err := m.open(tmp)
	switch {
	case err != nil:
		c.err = fmt.Errorf("refusing the repository's index: %w", err)
	case idx.Expired(m.Now()):
		c.err = fmt.Errorf("refusing the repository's index (kept the old one): generation %d expired at %s; the repository or a mirror is stale, or someone between replays an old index: check the server", idx.Generation, idx.ValidUntil.UTC().Format(time.RFC3339))
	case cur != nil && idx.Generation < cur.Generation:
		c.err = fmt.Errorf("refusing the repository's index: generation %d is older than the %d this host has (a replayed index?)", idx.Generation, cur.Generation)
		c.older = idx.Generation
	}
	if c.err != nil {
		os.Remove(tmp)
		return c
	}
	c.idx, c.tmp, c.sig, c.tag = idx, tmp, sig, newTag
	return c
}

// oneLine is an error as one line of a status.
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", " ")
}

// changedSince asks the server, without the body, whether its index is no
// longer the one whose ETag is etag.
func (m *Keeper) changedSince(ctx context.Context, server, etag string) bool {
	if etag == "" {
		return false // nothing to compare with
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, server+"/"+IndexFile, nil)
	if err != nil {
		return false
	}
	req.Header.Set("If-None-Match", etag)
	resp, err := m.HTTP.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK && resp.Header.Get("ETag") != etag
}

func (m *Keeper) get(ctx context.Context, server, path, etag string, limit int64) (body []byte, newTag string, notModified bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, server+path, nil)
	if err != nil {
		return nil, "", false, fmt.Errorf("fetch %s: %w", path, err)
	}
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := m.HTTP.Do(req)
	if err != nil {
		return nil, "", false, fmt.Errorf("fetch %s: %w", path, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotModified:
		return nil, etag, true, nil
	default:
		return nil, "", false, fmt.Errorf("fetch %s%s: %s", server, path, resp.Status)
	}
	if resp.ContentLength > limit {
		return nil, "", false, fmt.Errorf("fetch %s: %d bytes, more than the %d bytes it may be", path, resp.ContentLength, limit)
	}
	body, err = io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, "", false, fmt.Errorf("fetch %s: %w", path, err)
	}
	if int64(len(body)) > limit {
		return nil, "", false, fmt.Errorf("fetch %s: larger than the %d bytes it may be", path, limit)
	}
	return body, resp.Header.Get("ETag"), false, nil
}

// open reads a verified catalog file into memory and closes it, so the
// daemon holds no file the next sync has to replace.
func (m *Keeper) open(path string) (*Snapshot, error) {
	cat, err := store.OpenCatalogReadOnly(path)
	if err != nil {
		return nil, err
	}
	defer cat.Close()
	var idx *Snapshot
	err = cat.View(func(tx *store.CatalogTx) error {
		entries, err := tx.Entries()
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := checkEntry(e); err != nil {
				return err
			}
		}
		idx = newSnapshot(tx.Generation(), tx.Updated(), entries)
		idx.ValidUntil, idx.Trackers = tx.ValidUntil(), tx.Trackers()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index %s: %w", path, err)
	}
	return idx, nil
}

// checkEntry refuses entries the daemon would build paths or torrents from
// unsafely, even though the index is signed: a signing key can leak.
func checkEntry(e *store.CatalogEntry) error {
	if e.File == "" || e.File != filepath.Base(e.File) || strings.HasPrefix(e.File, ".") {
		return fmt.Errorf("entry %q: not a plain file name", e.File)
	}
	if err := e.Manifest.Validate(); err != nil {
		return fmt.Errorf("entry %s: %w", e.File, err)
	}
	if b, err := hex.DecodeString(e.SHA256); err != nil || len(b) != 32 {
		return fmt.Errorf("entry %s: bad sha256", e.File)
	}
	if b, err := hex.DecodeString(e.InfoHash); err != nil || len(b) != 20 {
		return fmt.Errorf("entry %s: bad infohash", e.File)
	}
	return nil
}

func writeTemp(dir, name string, data []byte) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("state directory: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("index: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("index: %w", err)
	}
	return f.Name(), nil
}
