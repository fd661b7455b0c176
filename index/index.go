// Package index keeps a client's copy of the repository's signed index:
// it fetches /index.db and /index.db.sig, verifies the signature with the
// trusted key before anything reads the file, refuses an index older than
// the one it has (a replay), swaps the files atomically, and opens the
// catalog as an immutable Snapshot that the daemon's actors share, read
// from the file where it lies (snapshot.go).
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
	"strings"
	"sync"
	"syscall"
	"time"

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
	path := filepath.Join(m.Dir, IndexFile)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return Empty(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	defer f.Close()
	sig, err := os.ReadFile(filepath.Join(m.Dir, SigFile))
	if err != nil {
		return nil, fmt.Errorf("index signature: %w", err)
	}
	if err := verifyFile(m.Key, f, sig); err != nil {
		return nil, fmt.Errorf("kept index %s: %w", path, err)
	}
	idx, err := open(path, f)
	if err != nil {
		return nil, err
	}
	if info, err := f.Stat(); err == nil {
		idx.Fetched = info.ModTime()
	}
	return idx, nil
}

// verifyFile checks sig over the bytes of f, read where they lie: mapped,
// and unmapped once checked, so an index of 100 MB costs no heap.
func verifyFile(key signing.PublicKey, f *os.File, sig []byte) error {
	info, err := f.Stat()
	if err != nil {
		return err
	}
	if info.Size() == 0 {
		return key.Verify(nil, sig)
	}
	if info.Size() > maxIndex {
		return fmt.Errorf("%d bytes, more than the %d bytes an index may be", info.Size(), maxIndex)
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(info.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	defer syscall.Munmap(data)
	syscall.Madvise(data, syscall.MADV_SEQUENTIAL) // read once, front to back
	return key.Verify(data, sig)
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
	var kept *Snapshot
	defer func() {
		// What was fetched and not kept goes, its file closed at once.
		for _, c := range cands {
			if c.tmp != "" {
				os.Remove(c.tmp)
			}
			if c.idx != kept {
				c.idx.release()
			}
		}
	}()
	best, states := choose(cands, cur)
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
	kept = idx
	return idx, changed, nil
}

// choose picks the candidate with the newest generation (nil when none
// gave a valid index) and says what each server answered.
func choose(cands []candidate, cur *Snapshot) (*candidate, []ServerState) {
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
	return best, states
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
	sigTmp, err := writeTemp(m.Dir, SigFile, func(f *os.File) error {
		if _, err := f.Write(c.sig); err != nil {
			return fmt.Errorf("index: %w", err)
		}
		return nil
	})
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
	tmp, newTag, notModified, err := m.getFile(ctx, server, "/"+IndexFile, etag, maxIndex)
	if err != nil {
		c.err = err
		return c
	}
	if notModified {
		return m.unchanged(c, cur)
	}
	c.tmp = tmp // removed by Fetch unless kept
	sig, _, _, err := m.get(ctx, server, "/"+SigFile, "", maxSignature)
	if err != nil {
		c.err = fmt.Errorf("the repository's index signature: %w", err)
		return c
	}
	f, err := os.Open(tmp)
	if err != nil {
		c.err = fmt.Errorf("index: %w", err)
		return c
	}
	defer f.Close()
	if err := verifyFile(m.Key, f, sig); err != nil {
		// The server may have published a new generation between the two
		// requests: the signature is then the new index's. Only an index
		// that is still the server's is refused, and only one publication
		// is believed: a server (or someone between) that keeps changing
		// the index cannot make us fetch it again and again.
		if swaps < 1 && m.changedSince(ctx, server, newTag) {
			os.Remove(tmp)
			return m.fetchFrom(ctx, server, cur, swaps+1)
		}
		c.err = fmt.Errorf("refusing the repository's index (kept the old one): %w; check --trusted-key or the server", err)
		return c
	}
	idx, err := open(tmp, f)
	if err == nil {
		err = m.fresh(idx, cur, &c)
	} else {
		err = fmt.Errorf("refusing the repository's index: %w", err)
	}
	if err != nil {
		idx.release()
		c.err = err
		return c
	}
	c.idx, c.sig, c.tag = idx, sig, newTag
	return c
}

// unchanged is the candidate of a server that says the index is the one
// this host has.
func (m *Keeper) unchanged(c candidate, cur *Snapshot) candidate {
	switch {
	case cur == nil:
		c.err = errors.New("fetch /" + IndexFile + ": Not Modified, though no copy was named")
		return c
	case cur.Expired(m.Now()):
		c.err = cur.ExpiredError()
	}
	c.notModified = true
	return c
}

// fresh refuses a verified index that is expired or older than the one
// this host has (a replay), noting the older generation in c.
func (m *Keeper) fresh(idx, cur *Snapshot, c *candidate) error {
	switch {
	case idx.Expired(m.Now()):
		return fmt.Errorf("refusing the repository's index (kept the old one): generation %d expired at %s; the repository or a mirror is stale, or someone between replays an old index: check the server", idx.Generation, idx.ValidUntil.UTC().Format(time.RFC3339))
	case cur != nil && idx.Generation < cur.Generation:
		c.older = idx.Generation
		return fmt.Errorf("refusing the repository's index: generation %d is older than the %d this host has (a replayed index?)", idx.Generation, cur.Generation)
	}
	return nil
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

// request asks server for path (with the ETag etag, if any) and returns
// the response of a 200, its body to read, or notModified.
func (m *Keeper) request(ctx context.Context, server, path, etag string, limit int64) (resp *http.Response, notModified bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, server+path, nil)
	if err != nil {
		return nil, false, fmt.Errorf("fetch %s: %w", path, err)
	}
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err = m.HTTP.Do(req)
	if err != nil {
		return nil, false, fmt.Errorf("fetch %s: %w", path, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotModified:
		resp.Body.Close()
		return nil, true, nil
	default:
		resp.Body.Close()
		return nil, false, fmt.Errorf("fetch %s%s: %s", server, path, resp.Status)
	}
	if resp.ContentLength > limit {
		resp.Body.Close()
		return nil, false, fmt.Errorf("fetch %s: %d bytes, more than the %d bytes it may be", path, resp.ContentLength, limit)
	}
	return resp, false, nil
}

// get fetches a small file (the signature) into memory.
func (m *Keeper) get(ctx context.Context, server, path, etag string, limit int64) (body []byte, newTag string, notModified bool, err error) {
	resp, notModified, err := m.request(ctx, server, path, etag, limit)
	if err != nil || notModified {
		return nil, etag, notModified, err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, "", false, fmt.Errorf("fetch %s: %w", path, err)
	}
	if int64(len(body)) > limit {
		return nil, "", false, fmt.Errorf("fetch %s: larger than the %d bytes it may be", path, limit)
	}
	return body, resp.Header.Get("ETag"), false, nil
}

// getFile fetches the index into a temporary file of the state directory,
// never whole in memory, and returns its path.
func (m *Keeper) getFile(ctx context.Context, server, path, etag string, limit int64) (tmp, newTag string, notModified bool, err error) {
	resp, notModified, err := m.request(ctx, server, path, etag, limit)
	if err != nil || notModified {
		return "", etag, notModified, err
	}
	defer resp.Body.Close()
	tmp, err = writeTemp(m.Dir, IndexFile, func(f *os.File) error {
		n, err := io.Copy(f, io.LimitReader(resp.Body, limit+1))
		if err != nil {
			return fmt.Errorf("fetch %s: %w", path, err)
		}
		if n > limit {
			return fmt.Errorf("fetch %s: larger than the %d bytes it may be", path, limit)
		}
		return nil
	})
	if err != nil {
		return "", "", false, err
	}
	return tmp, resp.Header.Get("ETag"), false, nil
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

// writeTemp makes a temporary file for name in dir (removed by the caller
// unless renamed into place), fills it with fill and syncs it. Errors of
// fill come back as they are.
func writeTemp(dir, name string, fill func(*os.File) error) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("state directory: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("index: %w", err)
	}
	if err := fill(f); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", err
	}
	err = f.Sync()
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
