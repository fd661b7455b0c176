package cache

import (
	"os"
	"path/filepath"
	"sort"

	"tpm/store"
	"tpm/version"
)

// Reconcile matches the records with the receipts of every prefix: a
// record whose package version a receipt has is kept (its file is to be
// seeded), and so are the kept versions each package may have
// (Records.Keep); the others (a transaction that never committed, a
// package removed while the daemon was down, kept versions beyond the
// bound) are deleted and returned in drop, so the caller stops seeding
// and deletes their files. A record whose infohash is unreadable names no
// torrent to drop: its file in dir goes here. A record that could not be
// read is reported in err, beside the rest.
func Reconcile(state *store.State, recs Records, dir string) (keep, drop []*Record, err error) {
	all, rerr := recs.All()
	installed, err := installedVersions(state)
	if err != nil {
		return nil, nil, err
	}
	stays := staying(all, installed, recs.Keep)
	for _, r := range all {
		_, herr := r.Hash()
		switch {
		case stays[r.File] && herr == nil:
			keep = append(keep, r)
			continue
		case herr == nil:
			drop = append(drop, r)
		default:
			os.Remove(filepath.Join(dir, r.File))
		}
		recs.Delete(r.File)
	}
	return keep, drop, rerr
}

// staying is the files of the records that stay: the installed versions,
// and of each package the newest kept ones, up to keep versions in all.
func staying(all []*Record, installed map[string]bool, keep int) map[string]bool {
	stays := make(map[string]bool)
	kept := make(map[string][]*Record) // by name
	count := make(map[string]int)      // versions staying, by name
	for _, r := range all {
		if installed[r.Name+"\x00"+r.Version] {
			stays[r.File] = true
			count[r.Name]++
		} else if r.Kept {
			kept[r.Name] = append(kept[r.Name], r)
		}
	}
	for name, rs := range kept {
		sort.Slice(rs, func(i, j int) bool { return version.Compare(rs[i].Version, rs[j].Version) > 0 })
		for _, r := range rs {
			if keep > 1 && count[name] < keep {
				stays[r.File] = true
				count[name]++
			}
		}
	}
	return stays
}

// Release forgets the cache files of name that no prefix has installed,
// except the kept versions within the bound (Records.Keep): their records
// are deleted and returned, sorted by file, for the caller to stop seeding
// and delete. When in doubt (the receipts cannot be read) nothing goes;
// the next start reconciles.
func Release(state *store.State, recs Records, name string) []*Record {
	installed, err := installedVersions(state)
	if err != nil {
		return nil
	}
	all, _ := recs.All()
	var mine []*Record
	for _, r := range all {
		if r.Name == name {
			mine = append(mine, r)
		}
	}
	stays := staying(mine, installed, recs.Keep)
	var drop []*Record
	for _, r := range mine {
		if stays[r.File] {
			continue
		}
		if _, err := r.Hash(); err == nil {
			drop = append(drop, r)
		}
		recs.Delete(r.File)
	}
	sort.Slice(drop, func(i, j int) bool { return drop[i].File < drop[j].File })
	return drop
}

// Retire is Release after name's version left a prefix (an upgrade, a
// removal): unless a prefix still has it, its record is marked kept
// first, so it stays for an undo within the bound.
func Retire(state *store.State, recs Records, name, version string) []*Record {
	installed, err := installedVersions(state)
	if err != nil {
		return nil
	}
	if r := recs.Find(name, version); r != nil && !r.Kept && !installed[name+"\x00"+version] && recs.Keep > 1 {
		r.Kept = true
		if recs.Put(r) != nil {
			return nil
		}
	}
	return Release(state, recs, name)
}

// Clean forgets every cache file no prefix has installed, the kept
// versions too (tpm clean): their records are deleted and returned,
// sorted by file, for the caller to stop seeding and delete.
func Clean(state *store.State, recs Records) ([]*Record, error) {
	installed, err := installedVersions(state)
	if err != nil {
		return nil, err
	}
	all, err := recs.All()
	var drop []*Record
	for _, r := range all {
		if installed[r.Name+"\x00"+r.Version] {
			continue
		}
		if _, herr := r.Hash(); herr == nil {
			drop = append(drop, r)
		}
		if derr := recs.Delete(r.File); derr != nil && err == nil {
			err = derr
		}
	}
	sort.Slice(drop, func(i, j int) bool { return drop[i].File < drop[j].File })
	return drop, err
}

// installedVersions is the set of name NUL version that some prefix has.
func installedVersions(state *store.State) (map[string]bool, error) {
	have := map[string]bool{}
	err := state.View(func(tx *store.StateTx) error {
		rs, err := tx.AllReceipts()
		for _, r := range rs {
			have[r.Name+"\x00"+r.Version] = true
		}
		return err
	})
	return have, err
}
