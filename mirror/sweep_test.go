package mirror

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Sweep deletes the regular package files directly in the directory that
// keep does not list, and nothing else: not a kept package, another file,
// a hidden file, a link (nor what it points to), a directory or a FIFO
// named like a package, or a package in a subdirectory. More files than a
// batch of the directory's entries go too.
func TestSweepDeletesOnlyStalePackages(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	write := func(path string) {
		t.Helper()
		if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var stale []string
	for i := range sweepBatch + 10 {
		name := fmt.Sprintf("stale%d-1-any.tpkg", i)
		stale = append(stale, name)
		write(filepath.Join(dir, name))
	}
	target := filepath.Join(outside, "target-1-any.tpkg")
	write(target)
	stays := []string{"kept-1-any.tpkg", "notes.txt", ".hidden-1-any.tpkg", "link-1-any.tpkg", "dir-1-any.tpkg", "fifo-1-any.tpkg",
		filepath.Join("dir-1-any.tpkg", "inner-1-any.tpkg")}
	for _, name := range []string{"kept-1-any.tpkg", "notes.txt", ".hidden-1-any.tpkg"} {
		write(filepath.Join(dir, name))
	}
	if err := os.Symlink(target, filepath.Join(dir, "link-1-any.tpkg")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "dir-1-any.tpkg"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(dir, "dir-1-any.tpkg", "inner-1-any.tpkg"))
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo-1-any.tpkg"), 0o644); err != nil {
		t.Fatal(err)
	}

	n, err := Sweep(dir, map[string]bool{"kept-1-any.tpkg": true})
	if err != nil || n != len(stale) {
		t.Fatalf("swept %d, %v; want %d", n, err, len(stale))
	}
	for _, name := range stale {
		if _, err := os.Lstat(filepath.Join(dir, name)); !os.IsNotExist(err) {
			t.Fatalf("%s stayed: %v", name, err)
		}
	}
	for _, name := range stays {
		if _, err := os.Lstat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := os.Stat(target); err != nil {
		t.Errorf("the link's target: %v", err)
	}
	if _, err := Sweep(filepath.Join(dir, "missing"), nil); err == nil {
		t.Error("a missing directory swept without an error")
	}
}
