package repo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"tpm/repo/repotest"
)

// watched is a fixture whose scanner takes the directory's changes from a
// watch.
func watched(t *testing.T) *fixture {
	t.Helper()
	f := newFixture(t, CheckFull)
	f.scanner = NewScanner(f.cat, Options{Dir: f.dir, PublicURL: "http://127.0.0.1:9/", Signer: f.key, Check: CheckFull,
		Trackers: []string{"http://127.0.0.1:9/announce"}, Watch: true})
	t.Cleanup(func() { f.scanner.Close() })
	if ok, err := f.scanner.Watching(); !ok {
		t.Skipf("the test directory cannot be watched: %v", err)
	}
	return f
}

// A rescan that takes the directory's changes from the watch finds what a
// listing finds: after every round of adds, rewrites, uploads renamed into
// place, touches, removals, broken files and folders, its generation equals
// the one a scanner that lists the directory whole makes of it.
func TestWatchedRescanMatchesAListing(t *testing.T) {
	f := watched(t)
	if _, st := f.scan(t); st.Watched {
		t.Fatal("the first scan took its changes from the watch: it must list the directory")
	}
	rng := rand.New(rand.NewPCG(3, 4))
	names := []string{"a", "b", "c", "d", "e", "f"}
	seed := uint64(0)
	for round := range 30 {
		for range 1 + rng.IntN(3) {
			name := names[rng.IntN(len(names))]
			path := filepath.Join(f.dir, name+"-1-any.tpkg")
			op := rng.IntN(6)
			if fi, err := os.Stat(path); err == nil && fi.IsDir() && op <= 1 {
				os.Remove(path) // a package written where a folder was
			}
			switch op {
			case 0: // add, or rewrite in place with other bytes
				seed++
				repotest.Make(t, f.dir, pkg(name, "1", 500+rng.IntN(3000), seed))
			case 1: // uploaded under a hidden name, renamed into place
				seed++
				tmp := t.TempDir()
				made := repotest.Make(t, tmp, pkg(name, "1", 500+rng.IntN(3000), seed))
				hidden := filepath.Join(f.dir, "."+name+".tpkg.tmp")
				copyFile(t, made, hidden)
				if err := os.Rename(hidden, path); err != nil {
					t.Fatal(err)
				}
			case 2:
				os.Remove(path)
			case 3: // touched: read again
				later := time.Unix(int64(2_000_000+round), 0)
				os.Chtimes(path, later, later)
			case 4: // broken: rejected
				os.WriteFile(path, fmt.Appendf(nil, "not a package %d", round), 0o644)
			default: // a folder under a package's name, then gone again
				os.RemoveAll(path)
				os.Mkdir(path, 0o755)
				if rng.IntN(2) == 0 {
					os.Remove(path)
				}
			}
		}
		g, st := f.scan(t)
		if !st.Watched {
			t.Fatalf("round %d: a rescan listed the directory with the watch healthy", round)
		}
		full, _, err := NewScanner(f.cat, f.scanner.opts).ScanWhole(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(files(g), files(full)) || !reflect.DeepEqual(g.Packages, full.Packages) {
			t.Fatalf("round %d: the watched rescan differs from a listing:\n%v\n%v", round, files(g), files(full))
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A directory moved away and another put at its path is one the watch no
// longer sees: the next scan lists the new one whole, and a new watch
// takes its changes from then on. ScanWhole lists it whatever the watch.
func TestWatchOfAReplacedDirectory(t *testing.T) {
	f := watched(t)
	repotest.Make(t, f.dir, pkg("old", "1", 1000, 1))
	f.scan(t)
	if err := os.Rename(f.dir, f.dir+".old"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(f.dir + ".old") })
	if err := os.Mkdir(f.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	repotest.Make(t, f.dir, pkg("new", "1", 1000, 2))
	g, st := f.scan(t)
	if st.Watched || len(g.Packages) != 1 || g.Packages[0].Name != "new" {
		t.Fatalf("after the directory was replaced: watched %v, %v", st.Watched, files(g))
	}
	repotest.Make(t, f.dir, pkg("newer", "1", 1000, 3))
	if g, st := f.scan(t); !st.Watched || len(g.Packages) != 2 {
		t.Fatalf("the next rescan: watched %v, %v; want both, from the new watch", st.Watched, files(g))
	}
	if _, st, err := f.scanner.ScanWhole(context.Background()); err != nil || st.Watched {
		t.Fatalf("ScanWhole: watched %v, %v", st.Watched, err)
	}
}

// A flood of changes (an uploader creating files by the thousand)
// overflows the kernel's queue or passes the maxDirty names a scan takes:
// either way the watch gives up vouching, keeps no more names, and the
// scan lists the directory.
func TestWatchFloodListsWhole(t *testing.T) {
	dir := t.TempDir()
	w, err := startWatch(dir)
	if err != nil {
		t.Skipf("the test directory cannot be watched: %v", err)
	}
	defer w.close()
	for i := range maxDirty + 1 {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%05d.tpkg", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if names, complete := w.changes(); complete || names != nil {
		t.Fatalf("after %d changed names: %d names, complete %v; want none, incomplete", maxDirty+1, len(names), complete)
	}
	if names, complete := w.changes(); !complete || len(names) != 0 {
		t.Fatalf("with nothing changed since: %v, complete %v", names, complete)
	}
	overflow := make([]byte, unix.SizeofInotifyEvent)
	(*unix.InotifyEvent)(unsafePointer(overflow)).Mask = unix.IN_Q_OVERFLOW
	if events(overflow, map[string]struct{}{}) {
		t.Fatal("an overflow of the kernel's queue was taken as every change")
	}
	// Names past maxDirty are not kept.
	var flood []byte
	for i := range maxDirty + 100 {
		ev := make([]byte, unix.SizeofInotifyEvent+16)
		e := (*unix.InotifyEvent)(unsafePointer(ev))
		e.Mask, e.Len = unix.IN_CREATE, 16
		copy(ev[unix.SizeofInotifyEvent:], fmt.Sprintf("n%05d.tpkg", i))
		flood = append(flood, ev...)
	}
	dirty := map[string]struct{}{}
	events(flood, dirty)
	if len(dirty) > maxDirty+1 {
		t.Fatalf("a flood of %d names kept %d", maxDirty+100, len(dirty))
	}
}

// On a filesystem where another machine may change the files (NFS, SMB,
// FUSE), or one this kernel does not vouch for, there is no watch: every
// rescan lists the directory, as without one.
func TestNoWatchOffLocalFilesystems(t *testing.T) {
	if _, err := startWatch("/proc"); err == nil {
		t.Fatal("a watch on /proc (procfs) was started")
	}
}

func unsafePointer(b []byte) unsafe.Pointer { return unsafe.Pointer(&b[0]) }

// A scan that fails after it took the watch's changes (cancelled before it
// committed) loses none of them: the next scan lists the directory.
func TestWatchedChangesOfAFailedScanKept(t *testing.T) {
	f := watched(t)
	f.scan(t)
	repotest.Make(t, f.dir, pkg("late", "1", 1000, 9))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := f.scanner.Scan(ctx); err == nil {
		t.Fatal("a cancelled scan succeeded")
	}
	g, st := f.scan(t)
	if st.Watched || g.Package("late-1-any.tpkg") == nil {
		t.Fatalf("after a failed scan: watched %v, %v; want a listing that finds the new file", st.Watched, files(g))
	}
}
