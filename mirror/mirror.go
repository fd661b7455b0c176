// Package mirror keeps a verified copy of a repository: the signed index
// that index.Keeper fetched and checked (every check a host makes), and
// every package it lists, downloaded through the swarm like any host's and
// checked against the signed sha256. It makes the generation a mirror
// publishes: the index and its signature byte for byte, the same
// infohashes, with its own files behind /packages/.
//
// A mirror is untrusted by design: hosts check what it serves exactly as
// they check the origin's, so nothing here is a security boundary beyond
// not publishing what does not verify.
package mirror

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"tpm/generation"
	"tpm/index"
	"tpm/repo"
	"tpm/signing"
	"tpm/store"
	"tpm/swarm"
)

// Copy is the verified index a mirror keeps, as it was fetched.
type Copy struct {
	repo.Parts
}

// Open reads the index that index.Keeper keeps in stateDir, checking its
// signature again: the mirror publishes these very bytes.
func Open(stateDir string, key signing.PublicKey) (*Copy, error) {
	data, err := os.ReadFile(filepath.Join(stateDir, index.IndexFile))
	if err != nil {
		return nil, fmt.Errorf("mirror: kept index: %w", err)
	}
	sig, err := os.ReadFile(filepath.Join(stateDir, index.SigFile))
	if err != nil {
		return nil, fmt.Errorf("mirror: kept index signature: %w", err)
	}
	if err := key.Verify(data, sig); err != nil {
		return nil, fmt.Errorf("mirror: kept index: %w", err)
	}
	cat, err := store.OpenCatalogReadOnly(filepath.Join(stateDir, index.IndexFile))
	if err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	defer cat.Close()
	c := &Copy{}
	err = cat.View(func(tx *store.CatalogTx) error {
		var err error
		c.Parts, err = repo.PartsOf(tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("mirror: kept index: %w", err)
	}
	for _, e := range c.Entries {
		if err := checkEntry(e); err != nil {
			return nil, fmt.Errorf("mirror: kept index: %w", err)
		}
	}
	c.Index, c.IndexSig = generation.BytesBlob(data), sig
	return c, nil
}

// checkEntry refuses entries a file name or a torrent could not safely be
// made of, even though the index is signed: a signing key can leak.
func checkEntry(e *store.CatalogEntry) error {
	if e.File == "" || e.File != filepath.Base(e.File) || strings.HasPrefix(e.File, ".") {
		return fmt.Errorf("entry %q: not a plain file name", e.File)
	}
	if b, err := hex.DecodeString(e.SHA256); err != nil || len(b) != 32 {
		return fmt.Errorf("entry %s: bad sha256", e.File)
	}
	if b, err := hex.DecodeString(e.InfoHash); err != nil || len(b) != 20 {
		return fmt.Errorf("entry %s: bad infohash", e.File)
	}
	return nil
}

// Specs are the torrents of every package of the copy, for the swarm: the
// trackers the index names (the upstreams' own when it names none) and the
// upstreams' web seeds.
func (c *Copy) Specs(upstreams []string) []swarm.Spec {
	trackers := c.Trackers
	var seeds []string
	for _, u := range upstreams {
		if c.Trackers == nil {
			trackers = append(trackers, swarm.PublicTracker(u))
		}
		seeds = append(seeds, swarm.PublicWebSeed(u))
	}
	specs := make([]swarm.Spec, len(c.Entries))
	for i, e := range c.Entries {
		var ih [20]byte
		hex.Decode(ih[:], []byte(e.InfoHash)) // checked by Open
		specs[i] = swarm.Spec{File: e.File, InfoHash: ih, InfoBytes: e.InfoBytes, SHA256: e.SHA256, Size: e.Size,
			Trackers: trackers, WebSeeds: seeds}
	}
	return specs
}

// Downloader is what Fetch needs of the swarm: swarm.Peer.
type Downloader interface {
	Download(ctx context.Context, s swarm.Spec, progress func(swarm.Progress)) (string, error)
}

// Fetch gets every file of specs into the peer's directory, parallel at
// once at most, each checked against its signed sha256 (a file already
// there is checked and seeded). It stops at the first failure.
func Fetch(ctx context.Context, peer Downloader, specs []swarm.Spec, parallel int) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	slots := make(chan struct{}, max(1, parallel))
	var wg sync.WaitGroup
	for _, s := range specs {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-slots }()
			if _, err := peer.Download(ctx, s, func(swarm.Progress) {}); err != nil {
				cancel(fmt.Errorf("mirror: %w", err))
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// Generation is what the mirror publishes of the copy: the fetched index
// and signature, and the torrents naming publicURL's web seed first, then
// the upstreams'. Every file must be in dir: their stats there are what the
// publisher checks before serving one.
func (c *Copy) Generation(dir, publicURL string, upstreams []string) (*generation.Generation, error) {
	p := c.Parts
	p.PublicURL = publicURL
	p.WebSeeds = nil
	for _, u := range upstreams {
		p.WebSeeds = append(p.WebSeeds, swarm.PublicWebSeed(u))
	}
	p.Entries = make([]*store.CatalogEntry, len(c.Entries))
	for i, e := range c.Entries {
		fi, err := os.Stat(filepath.Join(dir, e.File))
		if err != nil {
			return nil, fmt.Errorf("mirror: %w", err)
		}
		if fi.Size() != e.Size {
			return nil, fmt.Errorf("mirror: %s has %d bytes, the index says %d", e.File, fi.Size(), e.Size)
		}
		here := *e
		here.MTimeNS = fi.ModTime().UnixNano()
		here.CTimeNS, here.Inode = 0, 0
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			here.CTimeNS, here.Inode = st.Ctim.Sec*1e9+st.Ctim.Nsec, st.Ino
		}
		p.Entries[i] = &here
	}
	g, err := repo.Build(p)
	if err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	return g, nil
}

// Files is the set of the copy's file names.
func (c *Copy) Files() map[string]bool {
	files := make(map[string]bool, len(c.Entries))
	for _, e := range c.Entries {
		files[e.File] = true
	}
	return files
}

// Remover is what Prune needs of the swarm: swarm.Peer.
type Remover interface {
	Remove(s swarm.Spec) error
}

// Prune deletes from the peer's directory the packages of old that keep
// does not list: a package stays as long as a generation the mirror
// publishes, or published last, names it.
func Prune(peer Remover, old []swarm.Spec, keep map[string]bool) error {
	var errs []error
	for _, s := range old {
		if !keep[s.File] {
			if err := peer.Remove(s); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// sweepBatch bounds the directory entries Sweep holds at once.
const sweepBatch = 1024

// Sweep deletes the package files in dir that keep does not list, and
// says how many: those of copies made before the mirror last started,
// which Prune, knowing only the copies of a run, never deletes. Only
// regular files named *.tpkg directly in dir go (not hidden ones); a link
// is never followed, and a name that became a directory meanwhile is not
// removed (unlinkat without AT_REMOVEDIR).
func Sweep(dir string, keep map[string]bool) (int, error) {
	d, err := os.Open(dir)
	if err != nil {
		return 0, fmt.Errorf("mirror: package directory: %w", err)
	}
	defer d.Close()
	fd := int(d.Fd())
	removed := 0
	var errs []error
	for {
		// The type is lstat's (readdir's, or lstat when it does not say).
		entries, err := d.ReadDir(sweepBatch)
		for _, e := range entries {
			name := e.Name()
			if keep[name] || !strings.HasSuffix(name, repo.Ext) || strings.HasPrefix(name, ".") || !e.Type().IsRegular() {
				continue
			}
			if err := syscall.Unlinkat(fd, name); err != nil {
				if !errors.Is(err, syscall.ENOENT) {
					errs = append(errs, fmt.Errorf("mirror: remove %s: %w", name, err))
				}
				continue
			}
			removed++
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				errs = append(errs, fmt.Errorf("mirror: package directory: %w", err))
			}
			return removed, errors.Join(errs...)
		}
	}
}
