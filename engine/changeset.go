package engine

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"tpm/builder"
	"tpm/manifest"
	"tpm/resolve"
	"tpm/store"
	"tpm/tarball"
)

// Action is what a transaction does to one package.
type Action string

const (
	Install   Action = "install"
	Upgrade   Action = "upgrade"
	Downgrade Action = "downgrade"
	Reinstall Action = "reinstall"
	Remove    Action = "remove"
)

// Op is one package's part of a transaction.
type Op struct {
	Action     Action
	Name       string
	Version    string // the version after the op (the removed one for Remove)
	OldVersion string // the installed version it replaces, if any
	Reason     store.Reason
	Archive    string // the .tpkg to install from
	Requested  bool   // named by the user rather than pulled in
	// ReplacedBy is, for a package removed because one being installed
	// conflicts with and replaces it, that package.
	ReplacedBy string
	// Unneeded is, for a removal, a package installed as a dependency
	// that nothing left needs (autoremove).
	Unneeded bool

	pkg       *tarball.Package
	tarStream []byte // the decompressed archive, when small enough to keep
	// Source packages: the bucket (opt/tpm/buckets/NAME) and, while building,
	// the DESTDIR that make install fills beside it.
	bucket   string
	buildDir string
	old      *store.Receipt
	entries  []tarball.Entry    // data/ entries plus implicit parent directories
	records  []store.FileRecord // one per entry; hashes are filled in when staged
	// temps maps an entry's index to where staging writes it: a temporary
	// name beside its target, renamed into place on its own, or its place
	// inside a tree (then inTree says so).
	temps   map[int]string
	inTree  map[int]bool
	trees   []rename // new directories staged whole under a temporary name
	newDirs []string // directories staging creates in place (removed on rollback)
	remove  []string // paths to delete once the new files are in place
	// disown is, by owner, the files of installed packages that stay and
	// that this one takes over because it replaces them.
	disown map[string][]string
}

// Changeset is a checked transaction, ready to show to the user and to apply.
type Changeset struct {
	Prefix string
	Ops    []*Op // in the order they run: dependencies first
	// History is the transaction of the history the ops are recorded in
	// (each with its receipt): who asked for what, and the entry's id once
	// it has one, which a daemon's later batches of the same request pass
	// on. Nil records them as the process's uid, under the first op's action.
	History *store.HistoryTag
	id      string
	// installed is what the prefix held when the changeset was made, for
	// the packages whose files a new one may take over (Replaces).
	installed map[string]*manifest.Manifest
}

// keepStream is the largest decompressed archive a changeset keeps in memory so
// that staging does not decompress it a second time.
const keepStream = 64 << 20

// Archive is a package file to install.
type Archive struct {
	Path   string
	Reason store.Reason
}

// InstallRequest asks for packages to be installed or upgraded.
type InstallRequest struct {
	Prefix   string
	Archives []Archive
	// Remove are installed packages the same transaction takes away (an
	// undo: what a transaction installed goes as what it displaced comes
	// back). They are Remove ops after the installs, dependents first, so
	// one journalled apply does both, and the new packages may take over
	// their files.
	Remove []string
	Intent
}

// Skipped explains a requested package that needs nothing done.
type Skipped struct {
	Name, Version, Why string
}

// PrepareInstall reads and checks every archive, the dependencies and the file
// conflicts, and writes nothing.
func (e *Engine) PrepareInstall(ctx context.Context, req InstallRequest) (*Changeset, []Skipped, error) {
	prefix, err := CleanPrefix(req.Prefix)
	if err != nil {
		return nil, nil, err
	}
	changeset := &Changeset{Prefix: prefix, id: newID()}
	var skipped []Skipped
	var installed []*store.Receipt
	err = e.db.View(func(tx *store.StateTx) error {
		// The heads only (no file lists): a prefix of thousands of packages
		// was decoded whole for every batch of a transaction. The file list
		// of a package being replaced is read below, for it alone.
		installed, err = tx.ReceiptHeads(prefix)
		if err != nil {
			return err
		}
		byName := receiptsByName(installed)
		for _, a := range req.Archives {
			if err := ctx.Err(); err != nil {
				return err
			}
			op, skip, err := e.prepareArchive(a, byName, req)
			if err != nil {
				return err
			}
			if skip != nil {
				skipped = append(skipped, *skip)
				continue
			}
			if op.old != nil {
				if op.old, err = tx.Receipt(prefix, op.Name); err != nil {
					return err
				}
			}
			changeset.Ops = append(changeset.Ops, op)
		}
		if err := changeset.removeNamed(tx, byName, req.Remove); err != nil {
			return err
		}
		return changeset.displace(tx, installed)
	})
	if err != nil {
		return nil, nil, err
	}
	if err := changeset.order(installed, changeset.removing()); err != nil {
		return nil, nil, err
	}
	if err := e.checkFiles(changeset); err != nil {
		return nil, nil, err
	}
	return changeset, skipped, nil
}

// displace adds to an install the removal of the installed packages that
// a new one conflicts with and replaces, after the installs (so a failing
// pre-script of the new package leaves the old one in place), and refuses
// any other conflict: the rule the host's plan follows (resolve.Displaced).
func (p *Changeset) displace(tx *store.StateTx, installed []*store.Receipt) error {
	var have, add []*manifest.Manifest
	p.installed = make(map[string]*manifest.Manifest, len(installed))
	leaving := p.removing()
	for _, r := range installed {
		p.installed[r.Name] = &r.Manifest
		if !slices.Contains(leaving, r.Name) {
			have = append(have, &r.Manifest)
		}
	}
	for _, op := range p.Ops {
		if op.Action != Remove {
			add = append(add, op.pkg.Manifest)
		}
	}
	gone, err := resolve.Displaced(have, add)
	if err != nil {
		return err
	}
	for _, d := range gone {
		r, err := tx.Receipt(p.Prefix, d.Package.Name)
		if err != nil {
			return err
		}
		if r.Held {
			return ReplacesHeld(d.By, r)
		}
		p.Ops = append(p.Ops, &Op{Action: Remove, Name: r.Name, Version: r.Version, OldVersion: r.Version,
			Reason: r.Reason, ReplacedBy: d.By.Name, old: r})
	}
	return nil
}

// removeNamed adds the removal of the installed packages names, dependents
// first, refusing one that is held, not installed, or also installed by
// the changeset.
func (p *Changeset) removeNamed(tx *store.StateTx, installed map[string]*store.Receipt, names []string) error {
	var set []*manifest.Manifest
	for _, n := range names {
		if installed[n] == nil {
			return fmt.Errorf("%s is not installed in %s", n, p.Prefix)
		}
		if slices.ContainsFunc(p.Ops, func(op *Op) bool { return op.Name == n }) {
			return fmt.Errorf("%s is named twice in one transaction", n)
		}
		set = append(set, &installed[n].Manifest)
	}
	for _, m := range resolve.DependentsFirst(set) {
		r, err := tx.Receipt(p.Prefix, m.Name)
		if err != nil {
			return err
		}
		if r.Held {
			return fmt.Errorf("cannot remove %s: %w", r.Name, &HeldError{Name: r.Name, Version: r.Version})
		}
		p.Ops = append(p.Ops, &Op{Action: Remove, Name: r.Name, Version: r.Version, OldVersion: r.Version,
			Reason: r.Reason, Requested: true, old: r})
	}
	return nil
}

// removing names the packages the changeset removes.
func (p *Changeset) removing() []string {
	var names []string
	for _, op := range p.Ops {
		if op.Action == Remove {
			names = append(names, op.Name)
		}
	}
	return names
}

func receiptsByName(rs []*store.Receipt) map[string]*store.Receipt {
	m := make(map[string]*store.Receipt, len(rs))
	for _, r := range rs {
		m[r.Name] = r
	}
	return m
}

func (e *Engine) prepareArchive(a Archive, installed map[string]*store.Receipt, req InstallRequest) (*Op, *Skipped, error) {
	// Opening a FIFO or a device would block or read forever.
	if info, err := os.Stat(a.Path); err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is said once, below
		}
		return nil, nil, fmt.Errorf("cannot read package %s: %w", a.Path, err)
	} else if !info.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s is not a package file (not a regular file)", a.Path)
	}
	pkg, stream, err := e.readArchive(a.Path)
	if err != nil {
		return nil, nil, fmt.Errorf("refusing %s: %w", filepath.Base(a.Path), err)
	}
	m := pkg.Manifest
	if host := manifest.HostArchitecture(); !m.RunsOn(host) {
		return nil, nil, fmt.Errorf("%s is built for %s; this host is %s", m, m.Architecture, host)
	}
	reason := a.Reason
	if reason == "" {
		reason = store.Explicit
	}
	op := &Op{Action: Install, Name: m.Name, Version: m.Version, Reason: reason, Archive: a.Path, Requested: true, pkg: pkg, tarStream: stream}
	old := installed[m.Name]
	action, skip, err := req.ActionFor(m, old)
	var held *HeldError
	if errors.As(err, &held) && req.UpgradeOnly {
		// An upgrade leaves a held package as it is, and says so.
		return nil, &Skipped{Name: old.Name, Version: old.Version, Why: "held"}, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if skip {
		return nil, &Skipped{Name: m.Name, Version: m.Version, Why: "already installed"}, nil
	}
	op.Action = action
	if old != nil {
		op.old, op.OldVersion = old, old.Version
		if old.Reason == store.Explicit {
			op.Reason = store.Explicit
		}
	}
	if m.Type == manifest.TypeSource {
		// What it installs is known once it is built; for now it claims its
		// bucket, which must not be anybody else's.
		op.bucket, op.tarStream = path.Join(builder.BucketsDir, m.Name), nil
		op.entries, op.records = withParents([]tarball.Entry{{Path: op.bucket, Type: tarball.TypeDir, Mode: 0o755}})
		return op, nil, nil
	}
	op.entries, op.records = withParents(pkg.Entries)
	return op, nil, nil
}

// readArchive reads what a changeset needs of an archive: its head only when it
// lists its files ahead of its data (staging then decompresses it once, as
// it writes), else all of it, keeping the decompressed stream when small.
func (e *Engine) readArchive(name string) (*tarball.Package, []byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot read package: %w", err)
	}
	defer f.Close()
	pkg, err := tarball.ReadHead(archiveReader(f, 64<<10), e.opts.Limits)
	if !errors.Is(err, tarball.ErrNoListing) {
		return pkg, nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, nil, err
	}
	return tarball.InspectKeep(archiveReader(f, 1<<20), e.opts.Limits, keepStream)
}

// archiveReader buffers f with at most limit bytes, fewer for a smaller
// file: a buffer of 1 MiB for each of 3,000 packages of 2 KB was a fifth
// of the installer's CPU, zeroing memory and collecting it.
func archiveReader(f *os.File, limit int) *bufio.Reader {
	size := limit
	if fi, err := f.Stat(); err == nil && fi.Size() < int64(limit) {
		size = max(int(fi.Size()), 4096)
	}
	return bufio.NewReaderSize(f, size)
}

// movedIn says whether rel arrives inside the op's bucket, which is renamed
// into place whole rather than file by file.
func (op *Op) movedIn(rel string) bool {
	return op.bucket != "" && strings.HasPrefix(rel, op.bucket+"/")
}

// withParents adds the directories an archive implies but does not list, so
// that every receipt owns the directories it needs and shared directories
// are removed only when their last owner goes.
func withParents(entries []tarball.Entry) ([]tarball.Entry, []store.FileRecord) {
	seen := make(map[string]bool, len(entries))
	var out []tarball.Entry
	var records []store.FileRecord
	var addDir func(p string)
	addDir = func(p string) {
		if p == "." || seen[p] {
			return
		}
		addDir(path.Dir(p))
		seen[p] = true
		out = append(out, tarball.Entry{Path: p, Type: tarball.TypeDir, Mode: 0o755})
		records = append(records, store.FileRecord{Path: p, Type: store.Dir, Mode: fs.ModeDir | 0o755})
	}
	for _, en := range entries {
		addDir(path.Dir(en.Path))
		if en.Type == tarball.TypeDir {
			if seen[en.Path] {
				continue // a repeated directory entry, or one listed after its children
			}
			seen[en.Path] = true
		}
		out = append(out, en)
		records = append(records, recordOf(en))
	}
	return out, records
}

func recordOf(en tarball.Entry) store.FileRecord {
	r := store.FileRecord{Path: en.Path, Mode: en.Mode}
	switch en.Type {
	case tarball.TypeDir:
		r.Type, r.Mode = store.Dir, en.Mode|fs.ModeDir
	case tarball.TypeSymlink:
		r.Type, r.Link, r.Mode = store.Symlink, en.Link, fs.ModeSymlink|0o777
	default:
		r.Type, r.Size = store.File, en.Size
	}
	return r
}

// order checks dependencies against what the prefix will hold and puts the
// ops in the order they must run.
func (p *Changeset) order(installed []*store.Receipt, removing []string) error {
	change := resolve.Change{Remove: removing}
	for _, r := range installed {
		change.Installed = append(change.Installed, &r.Manifest)
	}
	byName := make(map[string]*Op)
	for _, op := range p.Ops {
		if op.Action != Remove {
			change.Add = append(change.Add, op.pkg.Manifest)
			byName[op.Name] = op
		}
	}
	ordered, err := resolve.Order(change)
	if err != nil {
		return err
	}
	var ops []*Op
	for _, m := range ordered {
		ops = append(ops, byName[m.Name])
	}
	for _, op := range p.Ops {
		if op.Action == Remove {
			ops = append(ops, op)
		}
	}
	p.Ops = ops
	return nil
}

// Conflict is one path that two parties claim.
type Conflict struct {
	Path    string // absolute
	Package string // the package that wants it
	Owner   string // the package that has it, or "" for an unowned file on disk
	Detail  string
}

func (c Conflict) String() string {
	if c.Detail != "" {
		return fmt.Sprintf("%s (in %s) %s", c.Path, c.Package, c.Detail)
	}
	if c.Owner == "" {
		return fmt.Sprintf("%s (in %s) exists on disk and belongs to no package", c.Path, c.Package)
	}
	return fmt.Sprintf("%s (in %s) is owned by %s", c.Path, c.Package, c.Owner)
}

// ConflictError refuses a transaction before anything is written.
type ConflictError struct{ Conflicts []Conflict }

func (e *ConflictError) Error() string {
	const show = 3
	var parts []string
	for i, c := range e.Conflicts {
		if i == show {
			parts = append(parts, fmt.Sprintf("and %d more", len(e.Conflicts)-show))
			break
		}
		parts = append(parts, c.String())
	}
	noun := "conflict"
	if len(e.Conflicts) > 1 {
		noun = "conflicts"
	}
	return fmt.Sprintf("file %s: %s", noun, strings.Join(parts, "; "))
}

// checkFiles finds every path that a new package wants and something else
// already has: another package in the same transaction, a receipt that keeps
// it, or a file on disk that no package owns. It also refuses names that
// would pass through a symlink on disk, and works out which directories
// staging creates, which temporary names it uses and which old files go.
// Source packages are checked again once built, when their files are known.
func (e *Engine) checkFiles(p *Changeset) error {
	if err := typeChanges(p); err != nil {
		return err
	}
	claims := p.claims()
	var conflicts []Conflict
	conflicts = append(conflicts, claims.conflicts...)
	disk := newDiskView(p.Prefix)
	defer disk.close()
	err := e.db.View(func(tx *store.StateTx) error {
		for oi, op := range p.Ops {
			if op.Action == Remove {
				continue
			}
			found, err := p.checkOp(tx, disk, oi, op, claims)
			if err != nil {
				return err
			}
			conflicts = append(conflicts, found...)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(conflicts) > 0 {
		return &ConflictError{Conflicts: conflicts}
	}
	p.chooseTrees()
	for _, op := range p.Ops {
		if op.old != nil {
			op.remove = dropped(op.old, op.records, claims.files, claims.dirs)
		}
	}
	return nil
}

// claims is what the new packages of a changeset take, for moves between
// packages in one go and for conflicts among them.
type claims struct {
	files     map[string]string // path → package, for everything but directories
	dirs      map[string]bool
	leaving   map[string]bool // packages whose current receipts stop counting
	conflicts []Conflict
}

func (p *Changeset) claims() claims {
	c := claims{files: make(map[string]string), dirs: make(map[string]bool), leaving: make(map[string]bool)}
	for _, op := range p.Ops {
		if op.old != nil || op.Action == Remove {
			c.leaving[op.Name] = true
		}
		if op.Action == Remove {
			continue
		}
		for _, rec := range op.records {
			if rec.Type == store.Dir {
				c.dirs[rec.Path] = true
				continue
			}
			if other, ok := c.files[rec.Path]; ok && other != op.Name {
				c.conflicts = append(c.conflicts, Conflict{Path: join(p.Prefix, rec.Path), Package: op.Name, Owner: other, Detail: "is also in " + other + " in this transaction"})
			}
			c.files[rec.Path] = op.Name
		}
	}
	return c
}

// checkOp checks one op's records (see checkFiles) and sets its temporary
// names and the directories staging must create.
func (p *Changeset) checkOp(tx *store.StateTx, disk *diskView, oi int, op *Op, c claims) ([]Conflict, error) {
	var conflicts []Conflict
	op.temps = make(map[int]string, len(op.records))
	op.newDirs, op.disown = nil, nil
	k := opCheck{p: p, tx: tx, op: op, c: c, owned: make(map[string]bool)}
	for i, rec := range op.records {
		if op.movedIn(rec.Path) {
			continue // arrives with its bucket, in one rename
		}
		if above, kind := disk.blockedAbove(rec.Path); above != "" {
			return nil, fmt.Errorf("refusing %s: entry %q: passes through the %s %s on disk", filepath.Base(op.Archive), "data/"+rec.Path, kind, join(p.Prefix, above))
		}
		abs := join(p.Prefix, rec.Path) // for the conflicts found, which are few
		info, err := disk.lstat(rec.Path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("check %s: %w", abs, err)
		}
		exists := err == nil
		if rec.Type == store.Dir {
			if cf, ok := k.dirConflict(rec.Path, abs, info, exists); ok {
				conflicts = append(conflicts, cf)
			} else if !exists && rec.Path != op.bucket {
				op.newDirs = append(op.newDirs, rec.Path)
			}
			continue
		}
		op.temps[i] = tempName(rec.Path, p.id, oi, i)
		if c.dirs[rec.Path] {
			continue // a directory of another package here: reported from its side
		}
		if !exists && !k.ownedUnder(path.Dir(rec.Path)) {
			continue // a new name in a folder no package has anything in
		}
		if cf, ok := k.fileConflict(rec.Path, abs, exists); ok {
			conflicts = append(conflicts, cf)
		}
	}
	return conflicts, nil
}

// opCheck is what checkOp checks one op's records against.
type opCheck struct {
	p     *Changeset
	tx    *store.StateTx
	op    *Op
	c     claims
	owned map[string]bool // directory → whether a package has anything under it
}

// replaces says whether the op's package replaces the installed package
// owner, and so may take over its files.
func (k *opCheck) replaces(owner string) bool {
	m := k.p.installed[owner]
	return m != nil && k.op.pkg != nil && k.op.pkg.Manifest.ReplacesPackage(m)
}

// ownedUnder says whether a package has anything under dir, asking the
// state database once a directory.
func (k *opCheck) ownedUnder(dir string) bool {
	o, ok := k.owned[dir]
	if !ok {
		o = k.tx.OwnsUnder(k.p.Prefix, dir)
		k.owned[dir] = o
	}
	return o
}

// dirConflict is the conflict, if any, of the op's directory rel (abs on
// disk, as info says when it exists).
func (k *opCheck) dirConflict(rel, abs string, info fs.FileInfo, exists bool) (Conflict, bool) {
	p, tx, op := k.p, k.tx, k.op
	if other := k.c.files[rel]; other != "" {
		return Conflict{Path: abs, Package: op.Name, Owner: other, Detail: "is a directory in " + op.Name + " but a file in " + other + " in this transaction"}, true
	}
	if owner := tx.FileOwner(p.Prefix, rel); owner != "" {
		return Conflict{Path: abs, Package: op.Name, Owner: owner, Detail: "is a directory in " + op.Name + " but a file of " + owner}, true
	}
	switch {
	case exists && !info.IsDir():
		return Conflict{Path: abs, Package: op.Name, Detail: "is a directory in " + op.Name + " but a " + kindOf(info) + " on disk"}, true
	case exists && rel == op.bucket && !ownsDir(tx, p.Prefix, rel, op.Name):
		return Conflict{Path: abs, Package: op.Name, Detail: "is the build bucket of " + op.Name + " but already exists and is not its own"}, true
	}
	return Conflict{}, false
}

// fileConflict is the conflict, if any, of the op's file rel (abs on
// disk) with its owner, a directory of a package, or an unowned file.
func (k *opCheck) fileConflict(rel, abs string, exists bool) (Conflict, bool) {
	p, tx, op, c := k.p, k.tx, k.op, k.c
	owner := tx.FileOwner(p.Prefix, rel)
	switch {
	case owner == op.Name:
		// The package replaces its own file.
	case owner != "" && c.files[rel] == op.Name && !stillHas(p, owner, rel) && (c.leaving[owner] || k.replaces(owner)):
		// Moves from a package that drops it or leaves in this transaction,
		// or that this one replaces. The owner's receipt lets go of it in
		// this one's commit, so a crash before the owner's own op leaves
		// no receipt listing a file that is another's.
		if op.disown == nil {
			op.disown = make(map[string][]string)
		}
		op.disown[owner] = append(op.disown[owner], rel)
	case owner != "":
		return Conflict{Path: abs, Package: op.Name, Owner: owner}, true
	case len(tx.DirOwners(p.Prefix, rel)) > 0:
		return Conflict{Path: abs, Package: op.Name, Owner: tx.DirOwners(p.Prefix, rel)[0], Detail: "is a file in " + op.Name + " but a directory of " + strings.Join(tx.DirOwners(p.Prefix, rel), ", ")}, true
	case exists:
		return Conflict{Path: abs, Package: op.Name}, true
	}
	return Conflict{}, false
}

// chooseTrees picks the new directories that can be staged whole under a
// temporary name and renamed into place once: those that do not exist yet
// and that no other package of the changeset puts anything into, taken at the
// highest such level. A package of thousands of files in a new folder then
// costs one rename instead of one per file, and the folder appears complete.
func (p *Changeset) chooseTrees() {
	tops := p.treeTops(p.dirClaims())
	if len(tops) == 0 {
		return
	}
	for oi, op := range p.Ops {
		var mine []string
		for d, owner := range tops {
			if owner == oi {
				mine = append(mine, d)
			}
		}
		if len(mine) == 0 {
			continue
		}
		sort.Strings(mine)
		op.stageInTrees(p.id, oi, mine)
	}
}

// sharedDir is a directory that more than one op puts something into.
const sharedDir = -1

// dirClaims maps every directory of the new packages to the one op with
// anything in it, or to sharedDir.
func (p *Changeset) dirClaims() map[string]int {
	claim := make(map[string]int)
	for oi, op := range p.Ops {
		if op.Action == Remove {
			continue
		}
		for _, rec := range op.records {
			for d := rec.Path; d != "."; d = path.Dir(d) {
				if c, ok := claim[d]; !ok {
					claim[d] = oi
				} else if c != oi {
					claim[d] = sharedDir
				}
			}
		}
	}
	return claim
}

// treeTops maps the top of every tree to its op: the highest of an op's
// new directories that are nobody else's.
func (p *Changeset) treeTops(claim map[string]int) map[string]int {
	tops := make(map[string]int)
	for oi, op := range p.Ops {
		if op.Action == Remove || op.bucket != "" {
			continue
		}
		own := make(map[string]bool, len(op.newDirs)) // new, and nobody else's
		for _, d := range op.newDirs {
			own[d] = claim[d] == oi
		}
		for _, d := range op.newDirs {
			if own[d] && !own[path.Dir(d)] {
				tops[d] = oi
			}
		}
	}
	return tops
}

// stageInTrees gives op oi its trees, the sorted tops: each a temporary
// name, under which its records are staged; the directories in them are no
// longer made in place.
func (op *Op) stageInTrees(id string, oi int, tops []string) {
	treeOf := make(map[string]string, len(tops)) // top → its temporary name
	for k, d := range tops {
		temp := path.Join(path.Dir(d), fmt.Sprintf(".tpm-%s-%d-t%d", id, oi, k))
		treeOf[d] = temp
		op.trees = append(op.trees, rename{Temp: temp, Target: d})
	}
	op.inTree = make(map[int]bool)
	for i, rec := range op.records {
		for d := rec.Path; d != "."; d = path.Dir(d) {
			if temp, ok := treeOf[d]; ok {
				op.temps[i] = temp + strings.TrimPrefix(rec.Path, d)
				op.inTree[i] = true
				break
			}
		}
	}
	var inPlace []string
	for _, d := range op.newDirs {
		if !op.inTreePath(d) {
			inPlace = append(inPlace, d)
		}
	}
	op.newDirs = inPlace
}

// inTreePath says whether rel is staged inside one of the op's trees.
func (op *Op) inTreePath(rel string) bool {
	for _, t := range op.trees {
		if rel == t.Target || strings.HasPrefix(rel, t.Target+"/") {
			return true
		}
	}
	return false
}

// tempName is the name a file is staged under, beside its target.
func tempName(rel, id string, oi, i int) string {
	name := ".tpm-" + id + "-" + strconv.Itoa(oi) + "-" + strconv.Itoa(i)
	if dir := path.Dir(rel); dir != "." {
		return dir + "/" + name
	}
	return name
}

func ownsDir(tx *store.StateTx, prefix, rel, name string) bool {
	for _, o := range tx.DirOwners(prefix, rel) {
		if o == name {
			return true
		}
	}
	return false
}

// typeChanges refuses an upgrade that turns one of the package's own paths
// from a directory into something else or back: the old directory's contents
// would have to go before the new file could be staged, which breaks the
// promise that a failing pre-script leaves everything as it was.
func typeChanges(p *Changeset) error {
	for _, op := range p.Ops {
		if op.old == nil || op.Action == Remove {
			continue
		}
		wasDir := make(map[string]bool, len(op.old.Files))
		for _, f := range op.old.Files {
			wasDir[f.Path] = f.Type == store.Dir
		}
		for _, rec := range op.records {
			isDir := rec.Type == store.Dir
			if was, ok := wasDir[rec.Path]; ok && was != isDir {
				from, to := "a file", "a directory"
				if was {
					from, to = to, from
				}
				return fmt.Errorf("%s %s turns %s from %s into %s, which an upgrade cannot do in place: remove %s first, then install the new version",
					op.Name, op.Version, join(p.Prefix, rec.Path), from, to, op.Name)
			}
		}
	}
	return nil
}

// stillHas says whether owner, after this changeset, still has path.
func stillHas(p *Changeset, owner, rel string) bool {
	for _, op := range p.Ops {
		if op.Name != owner || op.Action == Remove {
			continue
		}
		for _, r := range op.records {
			if r.Path == rel {
				return true
			}
		}
	}
	return false
}

// dropped lists the old receipt's paths that the new version lacks and that
// no other package of the transaction takes over: files first, then
// directories deepest first.
func dropped(old *store.Receipt, records []store.FileRecord, claimed map[string]string, claimedDir map[string]bool) []string {
	keep := make(map[string]bool, len(records))
	for _, r := range records {
		keep[r.Path] = true
	}
	var files, dirs []string
	for _, r := range old.Files {
		if keep[r.Path] || claimed[r.Path] != "" || claimedDir[r.Path] {
			continue
		}
		if r.Type == store.Dir {
			dirs = append(dirs, r.Path)
		} else {
			files = append(files, r.Path)
		}
	}
	return append(files, deepestFirst(dirs)...)
}

func deepestFirst(dirs []string) []string {
	sort.Slice(dirs, func(i, j int) bool {
		di, dj := strings.Count(dirs[i], "/"), strings.Count(dirs[j], "/")
		if di != dj {
			return di > dj
		}
		return dirs[i] > dirs[j]
	})
	return dirs
}

// PrepareRemove checks that names are installed and that nothing else needs
// them; with cascade, the packages that need them are removed too.
func (e *Engine) PrepareRemove(ctx context.Context, prefix string, names []string, cascade bool) (*Changeset, error) {
	return e.PrepareRemoval(ctx, RemoveRequest{Prefix: prefix, Names: names, Cascade: cascade})
}

// RemoveRequest asks for packages to be removed.
type RemoveRequest struct {
	Prefix  string
	Names   []string
	Cascade bool // also the packages that need them
	// Autoremove adds the packages installed as dependencies that nothing
	// left needs (resolve.Unneeded); with no names, only those.
	Autoremove bool
}

// PrepareRemoval checks that the names are installed, not held, and that
// nothing else needs them (or, with Cascade, adds what does), and adds
// with Autoremove what is no longer needed.
func (e *Engine) PrepareRemoval(ctx context.Context, req RemoveRequest) (*Changeset, error) {
	prefix, err := CleanPrefix(req.Prefix)
	if err != nil {
		return nil, err
	}
	changeset := &Changeset{Prefix: prefix, id: newID()}
	err = e.db.View(func(tx *store.StateTx) error {
		installed, err := tx.Receipts(prefix)
		if err != nil {
			return err
		}
		byName := receiptsByName(installed)
		rm := removal{removing: make(map[string]bool)}
		for _, n := range req.Names {
			if byName[n] == nil {
				return fmt.Errorf("%s is not installed in %s", n, prefix)
			}
			rm.add(n)
		}
		if err := rm.addDependents(installed, req.Cascade); err != nil {
			return err
		}
		for _, n := range rm.order {
			if r := byName[n]; r.Held {
				return fmt.Errorf("cannot remove %s: %w", n, &HeldError{Name: n, Version: r.Version})
			}
		}
		unneeded := map[string]bool{}
		if req.Autoremove {
			for _, m := range resolve.Unneeded(manifests(installed), roots(installed), rm.order) {
				rm.add(m.Name)
				unneeded[m.Name] = true
			}
		}
		changeset.Ops = removeOps(rm.order, req.Names, byName)
		for _, op := range changeset.Ops {
			op.Unneeded = unneeded[op.Name]
		}
		return ctx.Err()
	})
	if err != nil {
		return nil, err
	}
	return changeset, nil
}

// manifests are the receipts' manifests.
func manifests(rs []*store.Receipt) []*manifest.Manifest {
	out := make([]*manifest.Manifest, 0, len(rs))
	for _, r := range rs {
		out = append(out, &r.Manifest)
	}
	return out
}

// roots are the packages an autoremove keeps whatever needs them: those
// installed explicitly, and those held.
func roots(rs []*store.Receipt) map[string]bool {
	out := make(map[string]bool)
	for _, r := range rs {
		if r.Reason != store.Dependency || r.Held {
			out[r.Name] = true
		}
	}
	return out
}

// removal is the packages that a PrepareRemove takes away, in the order
// they were named or found.
type removal struct {
	removing map[string]bool
	order    []string
}

func (rm *removal) add(name string) {
	if !rm.removing[name] {
		rm.removing[name] = true
		rm.order = append(rm.order, name)
	}
}

// addDependents adds, with cascade, every installed package that needs one
// that goes, until none is left; without cascade such a package refuses
// the removal.
func (rm *removal) addDependents(installed []*store.Receipt, cascade bool) error {
	all := manifests(installed)
	for {
		broken := resolve.Dependents(all, rm.order)
		if len(broken) == 0 {
			return nil
		}
		if !cascade {
			var who []string
			for _, m := range broken {
				who = append(who, m.String())
			}
			return fmt.Errorf("cannot remove %s: needed by %s (remove those too, or use --cascade)", strings.Join(rm.order, ", "), strings.Join(who, ", "))
		}
		for _, m := range broken {
			rm.add(m.Name)
		}
	}
}

// removeOps makes the ops that remove the packages named in order,
// dependents first; those in names were requested.
func removeOps(order, names []string, byName map[string]*store.Receipt) []*Op {
	var set []*manifest.Manifest
	for _, n := range order {
		set = append(set, &byName[n].Manifest)
	}
	var ops []*Op
	for _, m := range resolve.DependentsFirst(set) {
		r := byName[m.Name]
		op := &Op{Action: Remove, Name: r.Name, Version: r.Version, OldVersion: r.Version, Reason: r.Reason, old: r}
		for _, want := range names {
			op.Requested = op.Requested || want == r.Name
		}
		op.remove = dropped(r, nil, nil, nil)
		ops = append(ops, op)
	}
	return ops
}

func newID() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func join(prefix, rel string) string {
	return filepath.Join(prefix, filepath.FromSlash(rel))
}
