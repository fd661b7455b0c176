package engine

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"runtime"
	"strings"

	"tpm/builder"
	"tpm/store"
	"tpm/tarball"
)

// stageSource builds the source package of op i into its DESTDIR beside the
// bucket, then works out what it installs (the bucket's files and the
// symlink farm in the link directory), checks all of it for conflicts like
// a binary package's files, and stages the links. Renaming the built bucket
// into place waits, like every other file, for the op's turn to be placed.
func (e *Engine) stageSource(ctx context.Context, h Hooks, t *tree, p *Changeset, i int, j *journal, strip bool) error {
	op := p.Ops[i]
	if err := e.mkdirs(t, op.newDirs); err != nil {
		return err
	}
	res, err := e.buildSource(ctx, h, p.Prefix, op)
	if err != nil {
		return err
	}
	built, err := filepath.Rel(p.Prefix, res.Bucket)
	if err != nil {
		return err
	}
	built = filepath.ToSlash(built)
	if strip {
		if err := stripSetIDs(t, built, res.Files); err != nil {
			return err
		}
	}
	op.entries, op.records = e.sourceRecords(p.Prefix, op, res, strip)
	if err := e.recheckSource(p, i, op); err != nil {
		return err
	}
	journalBuilt(t, &j.Ops[i], op, built)
	e.opts.Step("journal built " + op.Name)
	if err := e.writeJournal(j); err != nil {
		return err
	}
	if err := e.mkdirs(t, op.newDirs); err != nil {
		return err
	}
	for k, rec := range op.records {
		if temp, ok := op.temps[k]; ok {
			e.opts.Step("stage " + rec.Path)
			if err := t.symlink(rec.Link, temp); err != nil {
				return fmt.Errorf("symlink %s: %w", rec.Path, err)
			}
		}
	}
	return nil
}

// mkdirs makes the op's new directories in place.
func (e *Engine) mkdirs(t *tree, dirs []string) error {
	for _, d := range dirs {
		e.opts.Step("mkdir " + d)
		if err := t.mkdir(d, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// buildSource builds op's source package into its DESTDIR, op.buildDir.
func (e *Engine) buildSource(ctx context.Context, h Hooks, prefix string, op *Op) (*builder.Result, error) {
	e.opts.Step("build " + op.Name)
	return h.Build(ctx, builder.Spec{
		Archive:   op.Archive,
		Limits:    e.opts.Limits,
		BuildRoot: e.opts.BuildRoot,
		Prefix:    prefix,
		Name:      op.Name,
		DestDir:   join(prefix, op.buildDir),
		Timeout:   e.opts.BuildTimeout,
		Env:       []string{fmt.Sprintf("MAKEFLAGS=-j%d", runtime.NumCPU())},
		LogFile:   filepath.Join(e.opts.StateDir, "build-logs", op.Name+"-"+op.Version+".log"),
	}, func(step, line string) { h.Output(op.Name, step, line) })
}

// stripSetIDs takes the setuid and setgid bits off the files of the built
// bucket: as for binary packages, they stay only when root installs into /.
func stripSetIDs(t *tree, built string, files []builder.File) error {
	for _, f := range files {
		if f.Type == tarball.TypeFile && f.Mode&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
			if err := t.root.Chmod(path.Join(built, f.Path), keepMode(f.Mode, true)); err != nil {
				return err
			}
		}
	}
	return nil
}

// recheckSource checks op i again, now that the files of the source
// package it builds are known, and works out what of the old version goes.
func (e *Engine) recheckSource(p *Changeset, i int, op *Op) error {
	claims := p.claims()
	disk := newDiskView(p.Prefix)
	defer disk.close()
	var conflicts []Conflict
	err := e.db.View(func(tx *store.StateTx) error {
		found, err := p.checkOp(tx, disk, i, op, claims)
		conflicts = append(found, claims.conflicts...)
		return err
	})
	if err != nil {
		return err
	}
	if len(conflicts) > 0 {
		return &ConflictError{Conflicts: conflicts}
	}
	if op.old != nil {
		op.remove = dropped(op.old, op.records, claims.files, claims.dirs)
	}
	return nil
}

// journalBuilt sets what the journal says of a built source package: the
// old bucket moved aside, the built one moved in, and the links of its
// farm staged one by one.
func journalBuilt(t *tree, jo *journalOp, op *Op, built string) {
	jo.NewDirs = append(jo.NewDirs, op.newDirs...)
	jo.Remove, jo.Temps, jo.Moves = op.remove, nil, nil
	if t.exists(op.bucket) {
		aside := op.buildDir + "-old"
		jo.Moves = append(jo.Moves, rename{Temp: op.bucket, Target: aside})
		jo.TempDirs = append(jo.TempDirs, aside)
	}
	jo.Moves = append(jo.Moves, rename{Temp: built, Target: op.bucket})
	for k := range op.records {
		if temp, ok := op.temps[k]; ok {
			jo.Temps = append(jo.Temps, rename{Temp: temp, Target: op.records[k].Path})
		}
	}
}

// sourceRecords lists what a built source package installs, relative to
// the prefix: the directories down to its bucket, the bucket's contents,
// and the symlink farm (real directories, links into the bucket).
func (e *Engine) sourceRecords(prefix string, op *Op, res *builder.Result, strip bool) ([]tarball.Entry, []store.FileRecord) {
	var entries []tarball.Entry
	entries = append(entries, tarball.Entry{Path: op.bucket, Type: tarball.TypeDir, Mode: 0o755})
	for _, f := range res.Files {
		en := tarball.Entry{Path: path.Join(op.bucket, f.Path), Type: f.Type, Mode: keepMode(f.Mode, strip), Size: f.Size, Link: f.Link}
		entries = append(entries, en)
	}
	linkDir := e.opts.LinkDir
	if linkDir == "" {
		linkDir = builder.DefaultLinkDir(prefix)
	} else {
		linkDir = join(prefix, linkDir)
	}
	for _, l := range builder.Links(builder.BucketPath(prefix, op.Name), res.Files, linkDir) {
		rel, err := filepath.Rel(prefix, l.Path)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue
		}
		if l.Dir {
			entries = append(entries, tarball.Entry{Path: filepath.ToSlash(rel), Type: tarball.TypeDir, Mode: 0o755})
		} else {
			entries = append(entries, tarball.Entry{Path: filepath.ToSlash(rel), Type: tarball.TypeSymlink, Mode: 0o777, Link: l.Target})
		}
	}
	entries, records := withParents(entries)
	shas := make(map[string]string, len(res.Files))
	for _, f := range res.Files {
		shas[path.Join(op.bucket, f.Path)] = f.SHA256
	}
	for k := range records {
		if records[k].Type == store.File {
			records[k].SHA256 = shas[records[k].Path]
		}
	}
	return entries, records
}
