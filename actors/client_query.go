package actors

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"tpm/engine"
	"tpm/manifest"
	"tpm/messages"
	"tpm/mirror"
	"tpm/resolve"
	"tpm/store"
	"tpm/version"
)

// The read-only verbs. They read the current index (immutable) and the
// receipts (bbolt readers never wait for the writer), so they are answered
// while a transaction runs.

// prefixOf is the request's prefix, or the daemon's.
func (c *Client) prefixOf(req *messages.Request) (string, error) {
	p := req.Prefix
	if p == "" {
		p = c.cfg.Prefix
	}
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("prefix %q is not an absolute path", p)
	}
	return engine.CleanPrefix(p)
}

type searchItem struct {
	Name        string `json:"name"`
	Version     string `json:"version"`
	Description string `json:"description"`
	Installed   string `json:"installed"`
}

type installedInfo struct {
	Version     string    `json:"version"`
	Reason      string    `json:"reason"`
	InstalledAt time.Time `json:"installed_at"`
}

type infoData struct {
	Name         string         `json:"name"`
	Version      string         `json:"version"`
	Architecture string         `json:"architecture"`
	Type         string         `json:"type"`
	Maintainer   string         `json:"maintainer"`
	Description  string         `json:"description"`
	Dependencies []string       `json:"dependencies"`
	File         string         `json:"file"`
	Size         int64          `json:"size"`
	SHA256       string         `json:"sha256"`
	InfoHash     string         `json:"infohash"`
	Installed    *installedInfo `json:"installed"`
}

type listItem struct {
	Name        string    `json:"name"`
	Version     string    `json:"version"`
	Reason      string    `json:"reason"`
	InstalledAt time.Time `json:"installed_at"`
	Prefix      string    `json:"prefix"`
}

type fileItem struct {
	Package string `json:"package"`
	Path    string `json:"path"`
	Type    string `json:"type"`
}

type ownsItem struct {
	Path    string `json:"path"`
	Name    string `json:"name"`
	Version string `json:"version"`
}

type problemItem struct {
	Package string `json:"package"`
	Path    string `json:"path"`
	Kind    string `json:"kind"`
	Detail  string `json:"detail"`
}

func (c *Client) receipts(prefix string) (map[string]*store.Receipt, error) {
	out := make(map[string]*store.Receipt)
	err := c.engine.DB().View(func(tx *store.Tx) error {
		rs, err := tx.Receipts(prefix)
		for _, r := range rs {
			out[r.Name] = r
		}
		return err
	})
	return out, err
}

func noPackage(name string) error {
	return fmt.Errorf("no package named %s in the index (run tpm sync?)", name)
}

// query answers one read-only request.
func (c *Client) query(ctx context.Context, req *messages.Request, rep messages.Replier) (any, error) {
	idx := c.Index()
	prefix, err := c.prefixOf(req)
	if err != nil {
		return nil, err
	}
	switch req.Verb {
	case "status":
		return c.status(idx), nil
	case "search":
		if len(req.Args) > 1 {
			return nil, errors.New("search takes one word: tpm search WORD")
		}
		installed, err := c.receipts(prefix)
		if err != nil {
			return nil, err
		}
		word := "" // no word: every package
		if len(req.Args) == 1 {
			word = strings.ToLower(req.Args[0])
		}
		out := []searchItem{}
		seen := map[string]bool{}
		for _, e := range idx.Entries { // by name, newest first
			if seen[e.Name] {
				continue
			}
			seen[e.Name] = true
			if strings.Contains(e.Name, word) || strings.Contains(strings.ToLower(e.Description), word) {
				it := searchItem{Name: e.Name, Version: e.Version, Description: e.Description}
				if r := installed[e.Name]; r != nil {
					it.Installed = r.Version
				}
				out = append(out, it)
			}
		}
		return out, nil
	case "info":
		if len(req.Args) != 1 {
			return nil, errors.New("info takes one package name: tpm info NAME")
		}
		e := idx.Best(req.Args[0])
		if e == nil {
			return nil, noPackage(req.Args[0])
		}
		installed, err := c.receipts(prefix)
		if err != nil {
			return nil, err
		}
		d := infoData{Name: e.Name, Version: e.Version, Architecture: e.Architecture, Type: e.Type,
			Maintainer: e.Maintainer, Description: e.Description, Dependencies: []string{},
			File: e.File, Size: e.Size, SHA256: e.SHA256, InfoHash: e.InfoHash}
		for _, dep := range e.Dependencies {
			d.Dependencies = append(d.Dependencies, dep.String())
		}
		if r := installed[e.Name]; r != nil {
			d.Installed = &installedInfo{Version: r.Version, Reason: string(r.Reason), InstalledAt: r.InstalledAt}
		}
		return d, nil
	case "list":
		installed, err := c.receipts(prefix)
		if err != nil {
			return nil, err
		}
		out := []listItem{}
		for _, r := range installed {
			out = append(out, listItem{Name: r.Name, Version: r.Version, Reason: string(r.Reason), InstalledAt: r.InstalledAt, Prefix: prefix})
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		return out, nil
	case "files":
		if len(req.Args) == 0 {
			return nil, errors.New("files takes package names: tpm files NAME...")
		}
		installed, err := c.receipts(prefix)
		if err != nil {
			return nil, err
		}
		out := []fileItem{}
		for _, n := range req.Args {
			r := installed[n]
			if r == nil {
				return nil, fmt.Errorf("%s is not installed in %s", n, prefix)
			}
			for _, f := range r.Files {
				out = append(out, fileItem{Package: n, Path: filepath.Join(prefix, filepath.FromSlash(f.Path)), Type: string(f.Type)})
			}
		}
		return out, nil
	case "owns":
		if len(req.Args) == 0 {
			return nil, errors.New("owns takes absolute paths: tpm owns PATH...")
		}
		return c.owns(prefix, req.Args)
	case "verify":
		problems, err := c.engine.Verify(prefix, req.Args)
		if err != nil {
			return nil, err
		}
		out := []problemItem{}
		for _, p := range problems {
			out = append(out, problemItem{Package: p.Package, Path: p.Path, Kind: p.Kind, Detail: p.Detail})
		}
		return out, nil
	case "plan":
		p, err := c.plan(prefix, req, idx)
		if err != nil {
			return nil, err
		}
		items := p.items()
		if err := rep.Send(&messages.Reply{Type: messages.ReplyPlan, Plan: items}); err != nil {
			return nil, err
		}
		return map[string]any{"plan": items}, nil
	}
	return nil, fmt.Errorf("%q is not a query", req.Verb)
}

func (c *Client) owns(prefix string, paths []string) ([]ownsItem, error) {
	out := []ownsItem{}
	for _, p := range paths {
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("%s is not an absolute path", p)
		}
		receipts, err := c.engine.Owners(prefix, p)
		if err != nil {
			return nil, err
		}
		for _, r := range receipts {
			out = append(out, ownsItem{Path: filepath.Clean(p), Name: r.Name, Version: r.Version})
		}
	}
	return out, nil
}

func (c *Client) status(idx *mirror.Index) messages.Status {
	now := time.Now()
	d := messages.Status{
		PID: os.Getpid(), UptimeSeconds: now.Sub(c.started).Seconds(), Server: c.cfg.Server,
		IndexGeneration: idx.Generation, IndexPackages: len(idx.Entries), Installing: *c.installing.Load(),
		TorrentPort: c.TorrentPort(),
	}
	if !idx.Updated.IsZero() {
		d.IndexAgeSeconds = now.Sub(idx.Updated).Seconds()
	}
	if !idx.Fetched.IsZero() {
		d.IndexFetchedSecs = now.Sub(idx.Fetched).Seconds()
	}
	if s := c.swarm.Load(); s != nil {
		st := s.Stats()
		d.Seeding, d.Peers, d.BytesUp, d.BytesDown = st.Complete, st.Peers, st.BytesUp, st.BytesDown
	}
	return d
}

// planned is one package a plan installs, with the index entry it comes from.
type planned struct {
	entry     *store.CatalogEntry
	action    engine.Action
	old       string
	requested bool
}

type installPlan struct{ pkgs []planned }

func (p *installPlan) items() []messages.PlanItem {
	out := []messages.PlanItem{}
	for _, x := range p.pkgs {
		out = append(out, messages.PlanItem{Action: string(x.action), Name: x.entry.Name, Version: x.entry.Version,
			OldVersion: x.old, Requested: x.requested, Size: x.entry.Size})
	}
	return out
}

// plan resolves an install or upgrade against the index and the receipts:
// dependencies first, versions and alternatives as the resolver chooses.
// File conflicts are the engine's to find when the archives are here.
func (c *Client) plan(prefix string, req *messages.Request, idx *mirror.Index) (*installPlan, error) {
	opts := req.Options
	upgrade := opts["upgrade"] || req.Verb == "upgrade"
	installed, err := c.receipts(prefix)
	if err != nil {
		return nil, err
	}
	var want []manifest.Constraint
	for _, a := range req.Args {
		con, err := manifest.ParseConstraint(a)
		if err != nil {
			return nil, fmt.Errorf("%q: %v", a, err)
		}
		if len(idx.Versions(con.Name)) == 0 {
			if upgrade && installed[con.Name] == nil {
				return nil, fmt.Errorf("%s is not installed, so it cannot be upgraded: use tpm install", con.Name)
			}
			return nil, noPackage(con.Name)
		}
		want = append(want, con)
	}
	var have []*manifest.Manifest
	for _, r := range installed {
		have = append(have, &r.Manifest)
	}
	if upgrade {
		// Upgrades ask for exactly the newest version, so the resolver does
		// not settle for the installed one.
		ups := resolve.Upgrades(idx.Resolver(), have)
		if len(want) > 0 {
			named := map[string]bool{}
			for _, w := range want {
				if installed[w.Name] == nil {
					return nil, fmt.Errorf("%s is not installed, so it cannot be upgraded: use tpm install", w.Name)
				}
				named[w.Name] = true
			}
			var sel []manifest.Constraint
			for _, u := range ups {
				if named[u.Name] {
					sel = append(sel, u)
				}
			}
			ups = sel
		}
		want = ups
	}
	if opts["reinstall"] || opts["allow_downgrade"] {
		// The named packages are chosen again from the index even though
		// an installed version satisfies them.
		named := map[string]bool{}
		for _, w := range want {
			named[w.Name] = true
		}
		kept := have[:0:0]
		for _, m := range have {
			if !named[m.Name] {
				kept = append(kept, m)
			}
		}
		have = kept
	}
	choices, err := resolve.Resolve(idx.Resolver(), have, want)
	if err != nil {
		return nil, err
	}
	p := &installPlan{}
	for _, ch := range choices {
		e := idx.Entry(ch.Name, ch.Version)
		if e == nil {
			return nil, noPackage(ch.Name)
		}
		x := planned{entry: e, action: engine.Install, requested: ch.Requested}
		if r := installed[ch.Name]; r != nil {
			x.old = r.Version
			switch cmp := version.Compare(ch.Version, r.Version); {
			case cmp > 0:
				x.action = engine.Upgrade
			case cmp == 0 && opts["reinstall"]:
				x.action = engine.Reinstall
			case cmp == 0:
				continue
			case opts["allow_downgrade"]:
				x.action = engine.Downgrade
			default:
				return nil, fmt.Errorf("%s %s is installed; %s would be a downgrade: add --allow-downgrade", r.Name, r.Version, ch.Manifest)
			}
		}
		p.pkgs = append(p.pkgs, x)
	}
	return p, nil
}
