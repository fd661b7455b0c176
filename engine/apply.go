package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"tpm/builder"
	"tpm/manifest"

	"tpm/store"
	"tpm/tarball"
)

// opState is how far one op of a journaled transaction got. Recovery undoes
// ops that had not started placing files and finishes those that had: the
// files they replace are gone by then, so forward is the only way back to a
// state the receipts describe.
type opState string

const (
	statePlanned   opState = "planned"
	stateStaged    opState = "staged" // written by earlier versions; undone like planned
	statePlacing   opState = "placing"
	stateCommitted opState = "committed"
	stateDone      opState = "done" // post-script run too
)

type journal struct {
	ID     string      `json:"id"`
	Prefix string      `json:"prefix"`
	Ops    []journalOp `json:"ops"`
	// History is the history's transaction each commit records its op in
	// (the changeset's, so the caller learns the entry's id).
	History *store.HistoryTag `json:"history,omitempty"`
}

type journalOp struct {
	Name    string            `json:"name"`
	Action  Action            `json:"action"`
	State   opState           `json:"state"`
	Temps   []rename          `json:"temps,omitempty"`
	NewDirs []string          `json:"new_dirs,omitempty"`
	Remove  []string          `json:"remove,omitempty"`
	Receipt *store.Receipt    `json:"receipt,omitempty"` // nil for Remove
	Info    map[string][]byte `json:"info,omitempty"`
	// Change is what the history records of the op once committed.
	Change *store.HistoryChange `json:"change,omitempty"`
	// Disown is, by package, the files this op's package takes over from
	// installed packages it replaces and that stay: their receipts let go
	// of them in the commit that records this one's.
	Disown map[string][]string `json:"disown,omitempty"`
	// Source packages: folders to delete whole on rollback and once done
	// (the build's DESTDIR, the old bucket moved aside), and the renames
	// that swap buckets, done before the per-file renames.
	TempDirs []string `json:"temp_dirs,omitempty"`
	Moves    []rename `json:"moves,omitempty"`
	// New directories staged whole, each renamed into place once; their
	// temporary names are in TempDirs too, for a rollback.
	Trees []rename `json:"trees,omitempty"`
}

type rename struct {
	Temp   string `json:"temp"`
	Target string `json:"target"`
}

// OpResult reports one op that was applied.
type OpResult struct {
	Action     Action
	Name       string
	Version    string
	OldVersion string
	Warnings   []string // a post-script that failed: the package is in place
}

// Apply carries out a changeset: journal, stage every file beside its target (a
// new folder whole, under a temporary name beside it), one sync, then
// package by package pre-script, journal, rename into place, remove what
// the old version had, sync, commit the receipt, post-script. A
// failing pre-script or an error stops the transaction there: the packages
// already committed stay, the rest are undone, and the returned results say
// which is which. h receives the transaction's output as it goes.
func (e *Engine) Apply(ctx context.Context, p *Changeset, h Hooks) ([]OpResult, error) {
	if len(p.Ops) == 0 {
		return nil, nil
	}
	h = h.withDefaults()
	if err := os.MkdirAll(p.Prefix, 0o755); err != nil {
		return nil, fmt.Errorf("prefix: %w", err)
	}
	t, err := openTree(p.Prefix)
	if err != nil {
		return nil, err
	}
	defer t.close()

	a := &applier{e: e, ctx: ctx, h: h, t: t, p: p, j: e.journalOf(p)}
	e.opts.Step("journal " + p.id)
	if err := e.writeJournal(a.j); err != nil {
		return nil, err
	}
	if err := a.stageAll(); err != nil {
		return nil, e.abort(t, a.j, 0, err)
	}
	var done []OpResult
	for i := range p.Ops {
		res, err := a.applyOp(i)
		if err != nil {
			return done, err
		}
		done = append(done, res)
		h.Applied(res)
	}
	return done, e.closeJournal(done)
}

// applier is the state of one Apply, from staging to the last op.
type applier struct {
	e   *Engine
	ctx context.Context
	h   Hooks
	t   *tree
	p   *Changeset
	j   *journal
	// The receipts (with the hashes staging computed) go into the journal
	// with the first op that starts placing: until then a crash undoes the
	// transaction from what the first journal names, so a separate write
	// of them now would only cost a commit.
	journaled bool
}

// journalOf is the journal of a changeset before anything is staged: every
// temporary name staging will use, so that recovery can undo any of it.
// It names each source package's build directory.
func (e *Engine) journalOf(p *Changeset) *journal {
	if p.History == nil {
		p.History = &store.HistoryTag{UID: os.Getuid(), Verb: string(p.Ops[0].Action)}
	}
	p.History.Prefix = p.Prefix
	j := &journal{ID: p.id, Prefix: p.Prefix, History: p.History}
	for _, op := range p.Ops {
		jo := journalOp{Name: op.Name, Action: op.Action, State: statePlanned, NewDirs: op.newDirs, Remove: op.remove, Disown: op.disown,
			Change: &store.HistoryChange{Action: string(op.Action), Name: op.Name, Version: op.Version, OldVersion: op.OldVersion, Reason: op.Reason}}
		if op.Action == Remove {
			jo.Info = e.scriptsOf(p.Prefix, op) // so recovery can name a post-script that never ran
		}
		if op.bucket != "" {
			op.buildDir = path.Join(builder.BucketsDir, fmt.Sprintf(".tpm-%s-%d", p.id, len(j.Ops)))
			jo.TempDirs = []string{op.buildDir}
		}
		for i := range op.records {
			if temp, ok := op.temps[i]; ok && !op.inTree[i] {
				jo.Temps = append(jo.Temps, rename{Temp: temp, Target: op.records[i].Path})
			}
		}
		jo.Trees = op.trees
		for _, tr := range op.trees {
			jo.TempDirs = append(jo.TempDirs, tr.Temp)
		}
		j.Ops = append(j.Ops, jo)
	}
	return j
}

// stageAll stages the files of every op that installs one, then syncs them
// all at once. An error leaves the transaction to abort.
func (a *applier) stageAll() error {
	e, p := a.e, a.p
	strip := !(e.opts.Root && p.Prefix == "/")
	for i, op := range p.Ops {
		if op.Action == Remove {
			continue
		}
		var err error
		if op.bucket != "" {
			err = e.stageSource(a.ctx, a.h, a.t, p, i, a.j, strip)
		} else {
			err = e.stage(a.ctx, a.t, op, strip)
		}
		if err != nil {
			var conflict *ConflictError
			if !errors.As(err, &conflict) {
				err = fmt.Errorf("%s %s: %w", op.Action, op.Name, err)
			}
			return err
		}
		a.j.Ops[i].Receipt = e.receiptOf(p.Prefix, op)
		a.j.Ops[i].Info = op.pkg.Info
	}
	e.opts.Step("sync staged files")
	return a.t.sync()
}

// applyOp runs op i's pre-script, places and commits it, and runs its
// post-script. Until it places files, an error undoes op i and the ops
// after it; the error it returns is the transaction's.
func (a *applier) applyOp(i int) (OpResult, error) {
	e, op, j := a.e, a.p.Ops[i], a.j
	if err := a.ctx.Err(); err != nil {
		return OpResult{}, e.abort(a.t, j, i, err)
	}
	res := OpResult{Action: op.Action, Name: op.Name, Version: op.Version, OldVersion: op.OldVersion}
	info := e.scriptsOf(a.p.Prefix, op)
	if op.bucket != "" || (op.old != nil && op.old.Type == manifest.TypeSource && op.Action == Remove) {
		info = nil // source packages run no scripts
	}
	pre, post := scriptNames(op.Action)
	e.opts.Step(pre + " " + op.Name)
	if err := e.runScript(a.ctx, a.h, a.p.Prefix, op, pre, info[pre]); err != nil {
		return res, e.abort(a.t, j, i, err)
	}
	if err := a.journalPlacing(i); err != nil {
		return res, e.abort(a.t, j, i, err)
	}
	if err := e.place(a.t, j.Prefix, &j.Ops[i]); err != nil {
		// Half-placed: only recovery's roll forward can finish it.
		return res, fmt.Errorf("%s %s: %w (run any tpm command to finish it)", op.Action, op.Name, err)
	}
	if err := e.commit(a.t, j, i); err != nil {
		return res, fmt.Errorf("%s %s: %w (run any tpm command to finish it)", op.Action, op.Name, err)
	}
	e.cleanup(a.t, &j.Ops[i])
	e.opts.Step(post + " " + op.Name)
	if err := e.runScript(a.ctx, a.h, a.p.Prefix, op, post, info[post]); err != nil {
		res.Warnings = append(res.Warnings, err.Error())
	}
	if info[post] != nil {
		// Only so that recovery can tell whether the post-script ran.
		j.Ops[i].State = stateDone
		e.opts.Step("journal done " + op.Name)
		if err := e.writeStates(j, nil); err != nil {
			return res, err
		}
	}
	return res, nil
}

// journalPlacing records that op i starts placing files: from here on,
// recovery finishes it rather than undoing it.
func (a *applier) journalPlacing(i int) error {
	a.j.Ops[i].State = statePlacing
	a.e.opts.Step("journal placing " + a.p.Ops[i].Name)
	write := a.e.writeJournal
	if a.journaled {
		write = func(j *journal) error { return a.e.writeStates(j, nil) }
	}
	if err := write(a.j); err != nil {
		return err
	}
	a.journaled = true
	return nil
}

// closeJournal clears the journal of a transaction that went through, and
// backs the state database up.
func (e *Engine) closeJournal(done []OpResult) error {
	e.opts.Step("clear journal")
	if err := e.db.Update(func(tx *store.StateTx) error { return tx.ClearJournal() }); err != nil {
		return err
	}
	if err := e.backup(false); err != nil && len(done) > 0 {
		// The transaction is in; only the copy to restore from is old.
		last := &done[len(done)-1]
		last.Warnings = append(last.Warnings, err.Error())
	}
	return nil
}

// backupEvery bounds how often transactions rewrite the copy of the state
// database beside it. The copy is whole, so one per transaction made a
// host's thousands of installs quadratic (each batch of a request copied
// every receipt again); it is a restore point, as dpkg's status-old, and
// Close writes it when a transaction went in since the last one.
const backupEvery = 5 * time.Second

// backup copies the state database beside it when the last copy is older
// than backupEvery, or now with force; otherwise it marks one as due.
func (e *Engine) backup(force bool) error {
	now := time.Now()
	if !force && now.Sub(e.lastBackup) < backupEvery {
		e.backupDue = true
		return nil
	}
	e.lastBackup, e.backupDue = now, false
	return e.db.Backup()
}

func scriptNames(a Action) (string, string) {
	switch a {
	case Install:
		return "preinstall", "postinstall"
	case Remove:
		return "preremove", "postremove"
	}
	return "preupgrade", "postupgrade"
}

func (e *Engine) scriptsOf(prefix string, op *Op) map[string][]byte {
	if op.pkg != nil {
		return op.pkg.Info
	}
	var info map[string][]byte
	e.db.View(func(tx *store.StateTx) error {
		info = tx.Info(prefix, op.Name)
		return nil
	})
	return info
}

func (e *Engine) receiptOf(prefix string, op *Op) *store.Receipt {
	return &store.Receipt{
		Manifest:    *op.pkg.Manifest,
		Prefix:      prefix,
		Reason:      op.Reason,
		InstalledAt: e.opts.Now().UTC(),
		Held:        op.old != nil && op.old.Held, // a reinstall keeps the hold
		Files:       op.records,
	}
}

// writeJournal records the whole journal: the changeset, with every temporary
// name and receipt, and the ops' states.
func (e *Engine) writeJournal(j *journal) error {
	raw, err := json.Marshal(j)
	if err != nil {
		return err
	}
	states, err := json.Marshal(j.states())
	if err != nil {
		return err
	}
	return e.db.Update(func(tx *store.StateTx) error {
		if err := tx.SetJournal(raw); err != nil {
			return err
		}
		return tx.SetJournalStates(states)
	})
}

// writeStates records only the ops' states, with also in the same bbolt
// transaction: a state change costs a few bytes, not the whole changeset again.
func (e *Engine) writeStates(j *journal, also func(*store.StateTx) error) error {
	states, err := json.Marshal(j.states())
	if err != nil {
		return err
	}
	return e.db.Update(func(tx *store.StateTx) error {
		if also != nil {
			if err := also(tx); err != nil {
				return err
			}
		}
		return tx.SetJournalStates(states)
	})
}

func (j *journal) states() []opState {
	out := make([]opState, len(j.Ops))
	for i, op := range j.Ops {
		out[i] = op.State
	}
	return out
}

// abort undoes the ops from index from on (none of which has started placing
// files) and clears the journal; the ops before stay committed.
func (e *Engine) abort(t *tree, j *journal, from int, cause error) error {
	for i := from; i < len(j.Ops); i++ {
		e.rollback(t, j.Prefix, &j.Ops[i])
	}
	if err := e.db.Update(func(tx *store.StateTx) error { return tx.ClearJournal() }); err != nil {
		return fmt.Errorf("%w (and clearing the journal failed: %v)", cause, err)
	}
	return cause
}

// stage writes every file of op under its temporary name beside its target
// and creates the directories it needs. The archive is read again through
// the same checks as when it was planned, and must list the same entries.
func (e *Engine) stage(ctx context.Context, t *tree, op *Op, strip bool) error {
	// Not a field of the stager: the pool it holds goes to the heap, and
	// the index would go with it.
	index := make(map[string]int, len(op.entries)) // entry path → its index in op.entries
	for i, en := range op.entries {
		index[en.Path] = i
	}
	s := stager{e: e, t: t, op: op, strip: strip}
	modes, err := s.makeDirs()
	if err != nil {
		return err
	}
	if op.tarStream != nil {
		return s.stageFrom(ctx, tarball.NewTarReader(bytes.NewReader(op.tarStream), e.opts.Limits), index, modes)
	}
	f, err := os.Open(op.Archive)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := tarball.NewReader(archiveReader(f, 1<<20), e.opts.Limits)
	if err != nil {
		return err
	}
	if op.pkg.Listed {
		// The changeset was made from the listing; below, every entry must be
		// one it planned, and all of them must come.
		r.IgnoreListing()
	}
	return s.stageFrom(ctx, r, index, modes)
}

// stageFrom stages the entries r reads, then the hard links, and gives the
// directories made their modes.
func (s *stager) stageFrom(ctx context.Context, r *tarball.Reader, index map[string]int, modes []dirMode) error {
	s.pool = newStagePool(ctx, s.t, stageWorkers())
	defer s.pool.stop()
	s.buf = make([]byte, 256<<10)
	if err := s.stageEntries(r, index); err != nil {
		return err
	}
	if err := s.pool.wait(); err != nil {
		return err
	}
	if err := s.linkHardlinks(index); err != nil {
		return err
	}
	if err := s.checkAllCame(); err != nil {
		return err
	}
	for _, d := range modes {
		if err := s.t.chmodDir(d.at, d.mode); err != nil {
			return err
		}
	}
	return nil
}

// stager is the state of one stage: where each entry goes, and how far the
// archive got.
type stager struct {
	e         *Engine
	t         *tree
	op        *Op
	strip     bool
	pool      *stagePool
	buf       []byte // for the large files streamed here
	hardlinks []int  // entries staged last, once every file they may repeat is
	seen      int    // archive entries matched so far
}

// dirMode is the mode a staged directory gets once its files are in.
type dirMode struct {
	at   string
	mode fs.FileMode
}

// makeDirs creates the op's new directories, private at first: they get
// their modes once their files are in, so a read-only one is still written
// into.
func (s *stager) makeDirs() ([]dirMode, error) {
	op := s.op
	isNew := make(map[string]bool, len(op.newDirs))
	for _, d := range op.newDirs {
		isNew[d] = true
	}
	var modes []dirMode
	for i, en := range op.entries {
		if en.Type != tarball.TypeDir {
			continue
		}
		at, inTree := op.temps[i]
		if !inTree && !isNew[en.Path] {
			continue
		}
		if !inTree {
			at = en.Path
		}
		s.e.opts.Step("mkdir " + en.Path)
		mode := keepMode(en.Mode, s.strip)
		if err := s.t.mkdir(at, 0o700); err != nil {
			return nil, err
		}
		modes = append(modes, dirMode{at, mode})
		op.records[i].Mode = mode | fs.ModeDir
	}
	return modes, nil
}

// stageEntries stages the archive's entries as they come, small files on
// the pool's workers, hard links left for later.
func (s *stager) stageEntries(r *tarball.Reader, index map[string]int) error {
	for {
		en, content, err := r.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.pool.err(); err != nil {
			return err
		}
		i, err := s.match(en, index)
		if err != nil {
			return err
		}
		if err := s.stageEntry(i, en, content); err != nil {
			return err
		}
	}
}

// match returns the index of the op's entry that en is. Entry by entry, in
// order, what the changeset read (from the listing or the whole archive):
// nothing else is written, nothing is left out.
func (s *stager) match(en tarball.Entry, index map[string]int) (int, error) {
	op := s.op
	i, ok := index[en.Path]
	if !ok || s.seen >= len(op.pkg.Entries) || op.pkg.Entries[s.seen].Path != en.Path || !sameEntry(op.pkg.Entries[s.seen], en) {
		if op.pkg.Listed {
			return 0, fmt.Errorf("refusing %s: %w", filepath.Base(op.Archive), &tarball.RuleError{Entry: "data/" + en.Path, Rule: fmt.Sprintf("is not what info/files lists as entry %d", s.seen+1)})
		}
		return 0, fmt.Errorf("%s changed since it was checked (entry data/%s)", op.Archive, en.Path)
	}
	s.seen++
	return i, nil
}

// stageEntry stages entry i, which is en.
func (s *stager) stageEntry(i int, en tarball.Entry, content io.Reader) error {
	switch en.Type {
	case tarball.TypeDir:
		return nil
	case tarball.TypeHardlink:
		s.hardlinks = append(s.hardlinks, i) // once every file it may repeat is written
		return nil
	}
	s.e.opts.Step("stage " + en.Path)
	job := stageJob{temp: s.op.temps[i], entry: en, mode: keepMode(en.Mode, s.strip), rec: &s.op.records[i]}
	if en.Type == tarball.TypeFile && en.Size > stageInline {
		// Large files stream from the archive here, while the workers
		// go on with the small ones.
		return job.run(s.t, content, s.buf)
	}
	if en.Type == tarball.TypeFile {
		job.data = s.pool.alloc(en.Size)
		if _, err := io.ReadFull(content, job.data); err != nil {
			return fmt.Errorf("read data/%s: %w", en.Path, err)
		}
	}
	s.pool.submit(job)
	return nil
}

// linkHardlinks stages the hard links, each to the staged file it repeats.
func (s *stager) linkHardlinks(index map[string]int) error {
	op := s.op
	for _, i := range s.hardlinks {
		en := op.entries[i]
		target := index[en.Link]
		s.e.opts.Step("stage " + en.Path)
		if err := s.t.link(op.temps[target], op.temps[i]); err != nil {
			return fmt.Errorf("link %s: %w", en.Path, err)
		}
		src := op.records[target]
		rec := &op.records[i]
		rec.Type, rec.SHA256, rec.Mode, rec.Size = store.File, src.SHA256, src.Mode, src.Size
	}
	return nil
}

// checkAllCame refuses an archive that ended before every entry the
// changeset read.
func (s *stager) checkAllCame() error {
	op := s.op
	if s.seen != len(op.pkg.Entries) {
		if op.pkg.Listed {
			return fmt.Errorf("refusing %s: %w", filepath.Base(op.Archive), &tarball.RuleError{Entry: "info/files", Rule: fmt.Sprintf("lists %d entries but data/ has %d", len(op.pkg.Entries), s.seen)})
		}
		return fmt.Errorf("%s changed since it was checked", op.Archive)
	}
	return nil
}

func sameEntry(a, b tarball.Entry) bool {
	return a.Type == b.Type && a.Size == b.Size && a.Link == b.Link && a.Mode == b.Mode
}

func keepMode(m fs.FileMode, strip bool) fs.FileMode {
	if strip {
		m &^= fs.ModeSetuid | fs.ModeSetgid
	}
	return m
}

// place renames the op's staged files into place and removes what it drops.
func (e *Engine) place(t *tree, prefix string, jo *journalOp) error {
	for _, mv := range jo.Moves {
		e.opts.Step("move " + mv.Target)
		if err := t.move(mv.Temp, mv.Target); err != nil {
			return err
		}
	}
	for _, tr := range jo.Trees {
		e.opts.Step("move tree " + tr.Target)
		if err := t.placeTree(tr.Temp, tr.Target); err != nil {
			return err
		}
	}
	for _, rn := range jo.Temps {
		e.opts.Step("rename " + rn.Target)
		if err := t.rename(rn.Temp, rn.Target); err != nil {
			if errors.Is(err, fs.ErrNotExist) && t.exists(rn.Target) {
				continue // renamed before a crash; recovery passes here again
			}
			return fmt.Errorf("rename into %s: %w", rn.Target, err)
		}
	}
	for _, rel := range jo.Remove {
		e.opts.Step("remove " + rel)
		if err := e.removeOwned(t, prefix, jo.Name, rel); err != nil {
			return err
		}
	}
	e.opts.Step("sync " + jo.Name)
	return t.sync()
}

// removeOwned deletes a path that name's old receipt lists, unless another
// package has it now. Directories go only when empty and nobody else lists
// them: a shared directory stays for its other owners, and a directory with
// an unowned file in it stays for that file.
func (e *Engine) removeOwned(t *tree, prefix, name, rel string) error {
	var keep bool
	e.db.View(func(tx *store.StateTx) error {
		if owner := tx.FileOwner(prefix, rel); owner != "" && owner != name {
			keep = true
		}
		for _, o := range tx.DirOwners(prefix, rel) {
			keep = keep || o != name
		}
		return nil
	})
	if keep {
		return nil
	}
	err := t.remove(rel)
	if err == nil || errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST) {
		return nil
	}
	return fmt.Errorf("remove %s: %w", rel, err)
}

// commit records the op's receipt (or its absence) and its change in the
// history, and marks it committed in the journal, in one bbolt
// transaction.
func (e *Engine) commit(t *tree, j *journal, i int) error {
	jo := &j.Ops[i]
	jo.State = stateCommitted
	e.opts.Step("commit " + jo.Name)
	var id uint64
	err := e.writeStates(j, func(tx *store.StateTx) error {
		var err error
		if id, err = e.addHistory(tx, j, jo); err != nil {
			return err
		}
		if jo.Receipt == nil {
			return tx.DeleteReceipt(j.Prefix, jo.Name)
		}
		if err := tx.PutReceipt(jo.Receipt, jo.Info); err != nil {
			return err
		}
		owners := slices.Sorted(maps.Keys(jo.Disown))
		for _, owner := range owners {
			if err := tx.Disown(j.Prefix, owner, jo.Disown[owner]); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil && j.History != nil {
		j.History.ID = id
	}
	return err
}

// addHistory records op jo in the history's transaction of j. A journal
// written before the history was kept names neither: its op is recorded
// by name under its action.
func (e *Engine) addHistory(tx *store.StateTx, j *journal, jo *journalOp) (uint64, error) {
	tag := store.HistoryTag{UID: -1, Verb: string(jo.Action), Prefix: j.Prefix}
	if j.History != nil {
		tag = *j.History
	}
	change := store.HistoryChange{Action: string(jo.Action), Name: jo.Name}
	if jo.Change != nil {
		change = *jo.Change
	}
	return tx.AddHistory(tag, change, e.opts.Now())
}

// rollback removes what staging left of an op that never started placing.
func (e *Engine) rollback(t *tree, prefix string, jo *journalOp) {
	for _, rn := range jo.Temps {
		t.remove(rn.Temp)
	}
	for _, d := range jo.TempDirs {
		t.removeAll(d)
	}
	dirs := append([]string(nil), jo.NewDirs...)
	for _, d := range deepestFirst(dirs) {
		var owned bool
		e.db.View(func(tx *store.StateTx) error {
			owned = len(tx.DirOwners(prefix, d)) > 0
			return nil
		})
		if !owned {
			t.remove(d) // fails, as it should, when something else is inside
		}
	}
}

// cleanup deletes what a committed op no longer needs: a source build's
// DESTDIR and the old bucket it replaced. Recovery calls it again, so it
// must not mind finding nothing.
func (e *Engine) cleanup(t *tree, jo *journalOp) {
	for _, d := range jo.TempDirs {
		e.opts.Step("clean " + d)
		t.removeAll(d)
	}
}
