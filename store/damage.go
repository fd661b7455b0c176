package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// A damaged page of a bbolt file is found in one of three ways, and each
// becomes the same one-line error (damaged, below) instead of a crash:
//
//   - CheckFile, before bbolt opens the file: the meta pages, the length,
//     the root page's header and the freelist (bbolt reads it at open);
//   - checkPages, bbolt's Tx.Check of every page, when the state database
//     is opened after an unclean stop (the marker below) or with
//     OpenStateChecked, and before a copy of it replaces the last backup;
//   - any read: bbolt panics on a page that is not what it expects
//     ("assertion failed: Page expected to be: 3"), and State's View and
//     Update recover that panic (boltPanic).

// OpenMarkerSuffix names the file that says the state database is open:
// made (durably) when it is opened, removed when it is closed cleanly. One
// found at open means the process before stopped without closing it (a
// kill -9, a crash, a power cut), so every page is checked before use. It
// is a file beside the database rather than a flag inside it: reading a
// flag means walking the very pages that may be damaged, and setting one
// would cost a write transaction (two fsyncs) at every open, read-only
// verbs included; the marker costs one file and one directory fsync, and a
// removal lost in a crash only costs one more check.
const OpenMarkerSuffix = ".open"

// damaged is the one line a damaged state database gives: what is wrong,
// and the way back.
func damaged(path, what string) error {
	return fmt.Errorf("state database: %w: %s %s: restore the copy kept after the last transaction (stop tpmd, then cp %s%s %s), or move it away to start with no receipts",
		ErrDamaged, path, what, path, BackupSuffix, path)
}

// oneLine keeps a message from bbolt on one short line.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// boltPanic says whether the panic p, being recovered in a deferred call,
// comes from a damaged file: raised in bbolt's own code (one of its
// assertions, or a runtime error such as an index out of range while it
// decodes a page), or a memory fault (a page that points outside the
// file, made a panic by debug.SetPanicOnFault). A panic of the caller's
// code is a bug, not damage, and is raised again.
func boltPanic(p any) bool {
	if _, fault := p.(interface{ Addr() uintptr }); fault {
		return true
	}
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	inPanic := false
	for {
		f, more := frames.Next()
		switch {
		case f.Function == "runtime.gopanic":
			inPanic = true
		case inPanic && !strings.HasPrefix(f.Function, "runtime."):
			// The function that panicked (or faulted: sigpanic is runtime's).
			return strings.HasPrefix(f.Function, "go.etcd.io/bbolt")
		}
		if !more {
			return false
		}
	}
}

// checkPages runs bbolt's check of every page reachable from the root and
// the freelist, and says what is wrong in a few words, or "". Check
// recovers its own panics and reports them as errors.
func checkPages(tx *bolt.Tx) string {
	var first []string
	n := 0
	for err := range tx.Check() {
		if n < 3 {
			// A panic Check recovered is a page it could not read, not a
			// crash: "panic: " would read as one.
			first = append(first, oneLine(strings.TrimPrefix(err.Error(), "panic: ")))
		}
		n++
	}
	switch {
	case n == 0:
		return ""
	case n > len(first):
		return fmt.Sprintf("(%s; %d problems in all)", strings.Join(first, "; "), n)
	}
	return "(" + strings.Join(first, "; ") + ")"
}

// markOpen makes the open marker of the database at path and reports
// whether one was there already: the last process to open it did not close
// it. The marker is made durable (the file and its directory synced) before
// anything is written to the database.
func markOpen(path string) (unclean bool, err error) {
	marker := path + OpenMarkerSuffix
	if _, err := os.Lstat(marker); err == nil {
		return true, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	f, err := os.OpenFile(marker, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return false, err
	}
	_, err = fmt.Fprintf(f, "%s is open (pid %d); left here, it was not closed cleanly\n", filepath.Base(path), os.Getpid())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	return false, err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
