package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fullDB makes a state database of a few hundred KB with n receipts.
func fullDB(t *testing.T, path string, n int) {
	t.Helper()
	db, err := OpenState(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *StateTx) error {
		for i := range n {
			var files []FileRecord
			for j := range 50 {
				files = append(files, FileRecord{Path: fmt.Sprintf("usr/share/p%d/f%d", i, j), Type: File})
			}
			if err := tx.PutReceipt(receipt(fmt.Sprintf("p%03d", i), files...), nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Backup(); err != nil {
		t.Fatal(err)
	}
}

// TestDamagedDatabaseIsRefused: a truncated, emptied or overwritten state
// database gives one line naming the file and the way back, instead of a
// crash (SIGBUS) or an empty database; the backup restores it.
func TestDamagedDatabaseIsRefused(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tpm.db")
	fullDB(t, path, 100)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(good) < 100<<10 {
		t.Fatalf("database of %d bytes: too small to cut", len(good))
	}
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"truncated", good[:20000], "is truncated (20000 bytes of"},
		{"truncated to half", good[:len(good)/2], "is truncated"},
		{"empty", nil, "is empty (0 bytes)"},
		{"overwritten", []byte(strings.Repeat("garbage!", 4096)), "has no valid header"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := os.WriteFile(path, c.data, 0o600); err != nil {
				t.Fatal(err)
			}
			db, err := OpenState(path)
			if err == nil {
				db.Close()
				t.Fatal("opened")
			}
			msg := err.Error()
			if !errors.Is(err, ErrDamaged) || !strings.Contains(msg, c.want) || !strings.Contains(msg, path+BackupSuffix) || strings.Contains(msg, "\n") {
				t.Fatalf("got %q", msg)
			}
		})
	}
	// The way back the message gives: the copy of the last transaction.
	bak, err := os.ReadFile(path + BackupSuffix)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, bak, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := OpenState(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *StateTx) error {
		if rs, err := tx.ReceiptHeads("/p"); err != nil || len(rs) != 100 {
			t.Errorf("restored: %d receipts, %v", len(rs), err)
		}
		return nil
	})
	if _, err := os.Stat(path + BackupSuffix + ".tmp"); !os.IsNotExist(err) {
		t.Error("the backup's temporary file was left")
	}
}

func TestDamagedCatalogIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "catalog.db")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenCatalog(path); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "generation 1") {
		t.Fatalf("empty catalog: %v", err)
	}
}

func TestListings(t *testing.T) {
	l, err := OpenListings(filepath.Join(t.TempDir(), "listings.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, _, ok := l.Get("a", 10); ok {
		t.Fatal("a listing before any was put")
	}
	l.PutAll(map[string][]string{"a": {"usr/bin/a", "usr/share/a/x", "usr/share/a/y"}, "b": nil})
	if got, n, ok := l.Get("a", 10); !ok || n != 3 || strings.Join(got, ",") != "usr/bin/a,usr/share/a/x,usr/share/a/y" {
		t.Fatalf("a: %q %d %v", got, n, ok)
	}
	if got, n, ok := l.Get("a", 2); !ok || n != 3 || strings.Join(got, ",") != "usr/bin/a,usr/share/a/x" {
		t.Fatalf("a, the first 2: %q %d %v", got, n, ok)
	}
	if got, n, ok := l.Get("b", 10); !ok || n != 0 || len(got) != 0 {
		t.Fatalf("b, a package of no files: %q %d %v", got, n, ok)
	}
	l.Keep(func(sum string) bool { return sum == "b" })
	if _, _, ok := l.Get("a", 10); ok {
		t.Fatal("a kept")
	}
}
