package fifo

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// canary is a file and a directory outside the spool that no removal may
// reach through a link.
func canary(t *testing.T) string {
	t.Helper()
	out := t.TempDir()
	if err := os.MkdirAll(filepath.Join(out, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"canary", "dir/canary"} {
		if err := os.WriteFile(filepath.Join(out, f), []byte("alive"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func checkCanary(t *testing.T, out string) {
	t.Helper()
	for _, f := range []string{"canary", "dir/canary"} {
		if b, err := os.ReadFile(filepath.Join(out, f)); err != nil || string(b) != "alive" {
			t.Fatalf("the canary %s outside the spool was reached: %v", f, err)
		}
	}
}

// deepTree makes depth nested directories under dir, by descriptor (the
// path is longer than PATH_MAX).
func deepTree(t *testing.T, dir string, depth int) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < depth; i++ {
		if err := unix.Mkdirat(fd, "d", 0o700); err != nil {
			t.Fatal(err)
		}
		next, err := unix.Openat(fd, "d", unix.O_RDONLY|unix.O_DIRECTORY, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = next
	}
	unix.Close(fd)
}

// hostileSpool fills a spool as users could: a symlink loop, links out of
// the spool, a deep tree and many request directories.
func hostileSpool(t *testing.T, spool, out string, depth, many int) {
	t.Helper()
	loop := filepath.Join(spool, "tpm-loop")
	must(t, os.Mkdir(loop, 0o700))
	must(t, os.Symlink(".", filepath.Join(loop, "self")))
	must(t, os.Symlink("a", filepath.Join(loop, "b")))
	must(t, os.Symlink("b", filepath.Join(loop, "a")))
	must(t, os.Symlink(out, filepath.Join(spool, "tpm-out")))
	must(t, os.Symlink(filepath.Join(out, "dir"), filepath.Join(loop, "outdir")))
	must(t, os.Symlink(filepath.Join(out, "canary"), filepath.Join(loop, "outfile")))
	must(t, os.Mkdir(filepath.Join(spool, "tpm-deep"), 0o700))
	deepTree(t, filepath.Join(spool, "tpm-deep"), depth)
	for i := 0; i < many; i++ {
		d := filepath.Join(spool, "tpm-"+strings.Repeat("0", 8)+fmtInt(i))
		must(t, os.Mkdir(d, 0o700))
		must(t, unix.Mkfifo(filepath.Join(d, ReplyFIFO), 0o600))
	}
}

func fmtInt(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func oldSpools(t *testing.T, run string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(run, oldSpoolPrefix+"*"))
	return m
}

// A spool that users filled with a symlink loop, a tree 5,000 deep and
// 5,000 request directories is set aside at once and a fresh one made;
// the old one is removed afterwards, without following a link out.
func TestMakeSpoolSetsAsideWhatUsersLeft(t *testing.T) {
	run, out := t.TempDir(), canary(t)
	spool, err := MakeSpool(run)
	must(t, err)
	hostileSpool(t, spool, out, 5000, 5000)

	spool, err = MakeSpool(run)
	must(t, err)
	entries, err := os.ReadDir(spool)
	if err != nil || len(entries) != 0 {
		t.Fatalf("the new spool is not empty: %v %v", entries, err)
	}
	if info, _ := os.Lstat(spool); info.Mode().Perm() != 0o733 || info.Mode()&os.ModeSticky == 0 {
		t.Fatalf("spool mode %v", info.Mode())
	}
	old := oldSpools(t, run)
	if len(old) != 1 {
		t.Fatalf("old spools: %v", old)
	}
	if info, _ := os.Lstat(old[0]); info.Mode().Perm() != 0o700 {
		t.Fatalf("the old spool is open to others: %v", info.Mode())
	}
	if err := RemoveOldSpools(context.Background(), run); err != nil {
		t.Fatal(err)
	}
	if old := oldSpools(t, run); len(old) != 0 {
		t.Fatalf("old spools left: %v", old)
	}
	checkCanary(t, out)
}

// A user swapping a tree for a link out of the spool and back while the
// old spool is removed never makes the removal follow the link; once the
// swapping stops, a second removal finishes.
func TestRemoveOldSpoolsUnderSwaps(t *testing.T) {
	run, out := t.TempDir(), canary(t)
	spool, err := MakeSpool(run)
	must(t, err)
	for i := 0; i < 200; i++ {
		must(t, os.MkdirAll(filepath.Join(spool, "tpm-swap", "sub"+fmtInt(i), "x"), 0o700))
	}
	_, err = MakeSpool(run)
	must(t, err)
	aside := oldSpools(t, run)[0]
	done := make(chan struct{})
	swapped := make(chan int)
	go func() {
		n := 0
		defer func() { swapped <- n }()
		tree, held := filepath.Join(aside, "tpm-swap"), filepath.Join(aside, "held")
		for i := 0; i < 100_000; i++ {
			select {
			case <-done:
				return
			default:
			}
			if os.Rename(tree, held) == nil {
				os.Symlink(out, tree)
				os.Remove(tree)
				os.Rename(held, tree)
				n++
			}
		}
	}()
	err = RemoveOldSpools(context.Background(), run)
	close(done)
	<-swapped
	t.Logf("first removal, under swaps: %v", err)
	checkCanary(t, out)
	if err := RemoveOldSpools(context.Background(), run); err != nil {
		t.Fatal(err)
	}
	if old := oldSpools(t, run); len(old) != 0 {
		t.Fatalf("old spools left: %v", old)
	}
	checkCanary(t, out)
}

// A request directory is removed without following links; one deeper
// than a request's gives up and says so.
func TestRemoveRequest(t *testing.T) {
	run, out := t.TempDir(), canary(t)
	spool, err := MakeSpool(run)
	must(t, err)
	tok, deep := "tpm-"+strings.Repeat("a", 32), "tpm-"+strings.Repeat("b", 32)
	must(t, os.Mkdir(filepath.Join(spool, tok), 0o700))
	must(t, unix.Mkfifo(filepath.Join(spool, tok, ReplyFIFO), 0o600))
	must(t, os.Symlink(out, filepath.Join(spool, tok, "out")))
	must(t, os.Mkdir(filepath.Join(spool, deep), 0o700))
	deepTree(t, filepath.Join(spool, deep), 50)
	if uid, err := Owner(spool, tok); err != nil || uid != os.Getuid() {
		t.Fatalf("owner %d, %v", uid, err)
	}
	if err := RemoveRequest(context.Background(), spool, tok); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(spool, tok)); !os.IsNotExist(err) {
		t.Fatalf("request directory left: %v", err)
	}
	if err := RemoveRequest(context.Background(), spool, deep); err == nil || !strings.Contains(err.Error(), "deep") {
		t.Fatalf("a deep request directory: %v", err)
	}
	if err := RemoveRequest(context.Background(), spool, "../x"); err == nil {
		t.Fatal("a name that is no token was taken")
	}
	checkCanary(t, out)
}
