package cache

import (
	"os"
	"path/filepath"
	"sort"

	"tpm/store"
)

// Reconcile matches the records with the receipts of every prefix: a
// record whose package version a receipt has is kept (its file is to be
// seeded); the others (a transaction that never committed, a package
// removed while the daemon was down) are deleted and returned in drop, so
// the caller stops seeding and deletes their files. A record whose
// infohash is unreadable names no torrent to drop: its file in dir goes
// here. A record that could not be read is reported in err, beside the
// rest.
func Reconcile(state *store.State, recs Records, dir string) (keep, drop []*Record, err error) {
	all, rerr := recs.All()
	installed, err := installedVersions(state)
	if err != nil {
		return nil, nil, err
	}
	for _, r := range all {
		_, herr := r.Hash()
		switch {
		case installed[r.Name+"\x00"+r.Version] && herr == nil:
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

// Release forgets the cache files of name's version unless a prefix still
// has that version installed: their records are deleted and returned,
// sorted by file, for the caller to stop seeding and delete. When in doubt
// (the receipts cannot be read) nothing goes; the next start reconciles.
func Release(state *store.State, recs Records, name, version string) []*Record {
	installed, err := installedVersions(state)
	if err != nil || installed[name+"\x00"+version] {
		return nil
	}
	all, _ := recs.All()
	var drop []*Record
	for _, r := range all {
		if r.Name != name || r.Version != version {
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
