package tarball

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// listed builds an archive whose info/files is listing, ahead of entries.
func listed(t testing.TB, listing string, entries ...ent) []byte {
	head := []ent{dir("info/"), file("info/package.json", goodManifest), file("info/files", listing), dir("data/")}
	return gz(tarOf(t, false, append(head, entries...)...))
}

func TestPackListsFilesAheadOfData(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, map[string]string{
		"info/package.json":    goodManifest,
		"data/usr/bin/hi":      "#!/bin/sh\necho hi\n",
		"data/usr/share/a b\n": "odd name",
		"data/usr/share/doc/x": "x",
	}, map[string]os.FileMode{"data/usr/bin/hi": 0o4755})
	if err := os.Symlink("hi", filepath.Join(src, "data/usr/bin/hey")); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := PackDir(src, &buf, PackOptions{}); err != nil {
		t.Fatal(err)
	}
	head, err := ReadHead(bytes.NewReader(buf.Bytes()), DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	full, err := Inspect(bytes.NewReader(buf.Bytes()), DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if !full.Listed || !head.Listed {
		t.Fatalf("Listed: head %v, full %v", head.Listed, full.Listed)
	}
	if len(head.Entries) != len(full.Entries) || head.Bytes != full.Bytes || len(full.Entries) != 8 {
		t.Fatalf("head lists %d entries, %d bytes; the data has %d, %d", len(head.Entries), head.Bytes, len(full.Entries), full.Bytes)
	}
	for i := range full.Entries {
		if !sameListed(head.Entries[i], full.Entries[i]) {
			t.Errorf("entry %d: listed %+v, data %+v", i, head.Entries[i], full.Entries[i])
		}
	}
	if _, ok := full.Info["files"]; ok {
		t.Error("the listing is kept with info/ files (it would go into every receipt)")
	}
	if head.Manifest.Name != "t" {
		t.Errorf("manifest %+v", head.Manifest)
	}
}

func TestArchiveWithoutListingIsReadWhole(t *testing.T) {
	_, err := ReadHead(bytes.NewReader(gz(tarOf(t, true, file("data/x", "x")))), DefaultLimits())
	if !errors.Is(err, ErrNoListing) {
		t.Fatalf("ReadHead = %v, want ErrNoListing", err)
	}
	// package.json after the data: the head cannot say what the package is,
	// and a listed archive must have all of info/ first.
	late := gz(tarOf(t, false, file("info/files", "tpm-files 1\nf 0644 1 \"x\"\n"), file("data/x", "x"), file("info/package.json", goodManifest)))
	if _, err := ReadHead(bytes.NewReader(late), DefaultLimits()); !errors.Is(err, ErrNoListing) {
		t.Fatalf("ReadHead of a late package.json = %v, want ErrNoListing", err)
	}
	if _, err := Inspect(bytes.NewReader(late), DefaultLimits()); err == nil || !strings.Contains(err.Error(), "comes after data/") {
		t.Fatalf("Inspect = %v, want a refusal of info/ after the data", err)
	}
}

// A listing that lies is refused by whoever reads the data: the plan is made
// from the listing, and what staging writes must be what the plan checked.
func TestListingThatLiesIsRefused(t *testing.T) {
	good := "tpm-files 1\nd 0755 0 \"usr\"\nf 0644 1 \"usr/x\"\n"
	cases := []struct {
		name    string
		archive []byte
		want    string
	}{
		{"bigger file", listed(t, good, dir("data/usr/"), file("data/usr/x", "xx")), "is not what info/files lists as entry 2"},
		{"other mode", listed(t, good, dir("data/usr/"), ent{name: "data/usr/x", body: "x", typ: tar.TypeReg, mode: 0o4755}), "entry 2"},
		{"other name", listed(t, good, dir("data/usr/"), file("data/usr/y", "y")), "entry 2"},
		{"symlink for a file", listed(t, good, dir("data/usr/"), symlink("data/usr/x", "/etc/shadow")), "entry 2"},
		{"one more", listed(t, good, dir("data/usr/"), file("data/usr/x", "x"), file("data/usr/z", "z")), "entry 3"},
		{"one fewer", listed(t, good, dir("data/usr/")), "lists 2 entries but data/ has 1"},
		{"after the data", gz(tarOf(t, false, dir("info/"), file("info/package.json", goodManifest), file("data/usr", "x"), file("info/files", good))), "must come before every data/ entry"},
		{"script after the data", listed(t, good, dir("data/usr/"), file("data/usr/x", "x"), ent{name: "info/preinstall", body: "#!/bin/sh\n", typ: tar.TypeReg, mode: 0o755}), "comes after data/"},
		{"twice", gz(tarOf(t, false, file("info/package.json", goodManifest), file("info/files", good), file("info/files", good))), "appears twice"},
		{"dotdot", listed(t, "tpm-files 1\nf 0644 1 \"../x\"\n"), `".." component`},
		{"absolute", listed(t, "tpm-files 1\nf 0644 1 \"/etc/passwd\"\n"), "not canonical"},
		{"through a listed symlink", listed(t, "tpm-files 1\nl 0777 0 \"lib\" \"/etc\"\nf 0644 1 \"lib/passwd\"\n"), "passes through the symlink"},
		{"hardlink outside", listed(t, "tpm-files 1\nh 0644 0 \"h\" \"/etc/shadow\"\n"), "not a safe name"},
		{"no header", listed(t, "f 0644 1 \"x\"\n"), "does not start with"},
		{"unknown type", listed(t, "tpm-files 1\nc 0644 0 \"tty\"\n"), "unknown type"},
		{"bad mode", listed(t, "tpm-files 1\nf 99999 1 \"x\"\n"), "bad mode"},
		{"size of a dir", listed(t, "tpm-files 1\nd 0755 5 \"x\"\n"), "bad size"},
		{"unquoted", listed(t, "tpm-files 1\nf 0644 1 x\n"), "bad name"},
		{"trailing", listed(t, "tpm-files 1\nf 0644 1 \"x\" \"y\"\n"), "unexpected text"},
		{"link without target", listed(t, "tpm-files 1\nl 0777 0 \"x\"\n"), "needs its target"},
		{"NUL", listed(t, "tpm-files 1\nf 0644 1 \"a\\x00b\"\n"), "NUL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Inspect(bytes.NewReader(tc.archive), DefaultLimits())
			var rule *RuleError
			if !errors.As(err, &rule) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Inspect = %v, want a RuleError with %q", err, tc.want)
			}
		})
	}
}

func TestListingLimits(t *testing.T) {
	var b strings.Builder
	b.WriteString("tpm-files 1\n")
	for i := 0; i < 11; i++ {
		fmt.Fprintf(&b, "f 0644 0 \"f%d\"\n", i)
	}
	_, err := ReadHead(bytes.NewReader(listed(t, b.String())), Limits{MaxEntries: 10, MaxBytes: 1 << 20})
	if err == nil || !strings.Contains(err.Error(), "more than 10 entries") {
		t.Fatalf("11 listed entries with a limit of 10: %v", err)
	}
	_, err = ReadHead(bytes.NewReader(listed(t, "tpm-files 1\nf 0644 2000000 \"big\"\n")), Limits{MaxEntries: 10, MaxBytes: 1 << 20})
	if err == nil || !strings.Contains(err.Error(), "more than 1048576 bytes") {
		t.Fatalf("a listed size over the byte limit: %v", err)
	}
	huge := "tpm-files 1\n" + strings.Repeat("#", 2000) + "\n"
	_, err = ReadHead(bytes.NewReader(listed(t, huge)), Limits{MaxEntries: 10, MaxBytes: 1 << 20})
	if err == nil || !strings.Contains(err.Error(), "is larger than") {
		t.Fatalf("a listing over 128 bytes an entry: %v", err)
	}
}
