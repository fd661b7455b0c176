package tarball

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const goodManifest = `{"Name":"t","Version":"1.0","Architecture":"any","Type":"Binary"}`

type ent struct {
	name, body, link string
	typ              byte
	mode             int64
}

func file(name, body string) ent { return ent{name: name, body: body, typ: tar.TypeReg, mode: 0o644} }
func dir(name string) ent        { return ent{name: name, typ: tar.TypeDir, mode: 0o755} }
func symlink(name, target string) ent {
	return ent{name: name, link: target, typ: tar.TypeSymlink, mode: 0o777}
}
func hardlink(name, target string) ent {
	return ent{name: name, link: target, typ: tar.TypeLink, mode: 0o644}
}

// tarOf builds an uncompressed tar; withManifest puts a valid info/ first.
func tarOf(t testing.TB, withManifest bool, entries ...ent) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if withManifest {
		entries = append([]ent{dir("info/"), file("info/package.json", goodManifest), dir("data/")}, entries...)
	}
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, ModTime: time.Unix(1e9, 0)}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, e.body)
	}
	tw.Close()
	return buf.Bytes()
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func TestInspectRefuses(t *testing.T) {
	long := strings.Repeat("a/", PathMax/2+1) + "x"
	cases := []struct {
		name    string
		archive []byte
		limits  *Limits
		want    string
	}{
		{"absolute", tarOf(t, true, file("/etc/passwd", "x")), nil, "absolute names"},
		{"dotdot", tarOf(t, true, file("data/../../etc/passwd", "x")), nil, `".." component`},
		{"outside", tarOf(t, true, file("etc/passwd", "x")), nil, "outside data/ and info/"},
		{"not canonical", tarOf(t, true, file("data/./x", "x")), nil, "not canonical"},
		{"through symlink", tarOf(t, true, symlink("data/lib", "/etc"), file("data/lib/passwd", "x")), nil, "passes through the symlink data/lib"},
		{"under a file", tarOf(t, true, file("data/f", "x"), file("data/f/g", "x")), nil, "is not a directory"},
		{"hardlink to later", tarOf(t, true, hardlink("data/h", "data/x"), file("data/x", "x")), nil, "earlier regular file"},
		{"hardlink outside", tarOf(t, true, hardlink("data/h", "/etc/shadow")), nil, "not a safe name"},
		{"hardlink to info", tarOf(t, true, hardlink("data/h", "info/package.json")), nil, "outside data/"},
		{"hardlink to symlink", tarOf(t, true, symlink("data/l", "x"), hardlink("data/h", "data/l")), nil, "earlier regular file"},
		{"char device", tarOf(t, true, ent{name: "data/tty", typ: tar.TypeChar}), nil, "device nodes"},
		{"block device", tarOf(t, true, ent{name: "data/sda", typ: tar.TypeBlock}), nil, "device nodes"},
		{"fifo", tarOf(t, true, ent{name: "data/p", typ: tar.TypeFifo}), nil, "FIFOs"},
		{"long name", tarOf(t, true, file("data/"+long, "x")), nil, "PATH_MAX"},
		{"long component", tarOf(t, true, file("data/"+strings.Repeat("n", 256), "x")), nil, "NAME_MAX"},
		{"long link", tarOf(t, true, symlink("data/l", strings.Repeat("t", PathMax+1))), nil, "PATH_MAX"},
		{"duplicate", tarOf(t, true, file("data/x", "1"), symlink("data/x", "/etc")), nil, "appears twice"},
		{"dir then symlink", tarOf(t, true, dir("data/d/"), symlink("data/d", "/etc")), nil, "appears twice"},
		{"entries", tarOf(t, true, file("data/1", ""), file("data/2", ""), file("data/3", "")), &Limits{MaxEntries: 4, MaxBytes: 1 << 20}, "more than 4 entries"},
		{"bytes", tarOf(t, true, file("data/big", strings.Repeat("z", 100000))), &Limits{MaxEntries: 10, MaxBytes: 50000}, "more than 50000 bytes"},
		{"no manifest", tarOf(t, false, dir("data/"), file("data/x", "x")), nil, "info/package.json is missing"},
		{"bad manifest", tarOf(t, false, file("info/package.json", `{"Name":"T"}`)), nil, "package.json:"},
		{"unknown info", tarOf(t, true, file("info/extra", "x")), nil, "not package.json or a known script"},
		{"script not executable", tarOf(t, true, file("info/postinstall", "#!/bin/sh")), nil, "not executable"},
		{"data not dir", tarOf(t, false, file("data", "x")), nil, "must be a directory"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			limits := DefaultLimits()
			if tc.limits != nil {
				limits = *tc.limits
			}
			_, err := Inspect(bytes.NewReader(gz(tc.archive)), limits)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
}

func TestInspectBrokenGzip(t *testing.T) {
	good := gz(tarOf(t, true, file("data/x", strings.Repeat("content ", 1000))))
	corrupt := bytes.Clone(good)
	corrupt[len(corrupt)-6] ^= 0xff // inside the CRC32 trailer
	for name, b := range map[string][]byte{
		"not gzip":   []byte("hello, this is not an archive"),
		"truncated":  good[:len(good)/2],
		"no trailer": good[:len(good)-4],
		"bad crc":    corrupt,
		"empty":      nil,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Inspect(bytes.NewReader(b), DefaultLimits())
			var rule *RuleError
			if !errors.As(err, &rule) {
				t.Fatalf("got %v, want a RuleError", err)
			}
		})
	}
}

func TestInspectAccepts(t *testing.T) {
	archive := tarOf(t, true,
		dir("data/usr/"), dir("data/usr/bin/"),
		ent{name: "data/usr/bin/tool", body: "#!/bin/sh\n", typ: tar.TypeReg, mode: 0o4755},
		hardlink("data/usr/bin/tool2", "data/usr/bin/tool"),
		symlink("data/usr/bin/abs", "/usr/bin/tool"),
		file("data/usr/share/naïve file name", "x"), // parent implied, not listed
		ent{name: "info/postinstall", body: "#!/bin/sh\n", typ: tar.TypeReg, mode: 0o755},
	)
	pkg, err := Inspect(bytes.NewReader(gz(archive)), DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if pkg.Manifest.Name != "t" || len(pkg.Info["postinstall"]) == 0 {
		t.Fatalf("manifest/info not read: %+v", pkg)
	}
	want := []struct {
		path string
		typ  EntryType
	}{{"usr", TypeDir}, {"usr/bin", TypeDir}, {"usr/bin/tool", TypeFile}, {"usr/bin/tool2", TypeHardlink}, {"usr/bin/abs", TypeSymlink}, {"usr/share/naïve file name", TypeFile}}
	if len(pkg.Entries) != len(want) {
		t.Fatalf("entries: %+v", pkg.Entries)
	}
	for i, w := range want {
		if pkg.Entries[i].Path != w.path || pkg.Entries[i].Type != w.typ {
			t.Errorf("entry %d = %s %v, want %s %v", i, pkg.Entries[i].Path, pkg.Entries[i].Type, w.path, w.typ)
		}
	}
	if pkg.Entries[2].Mode&os.ModeSetuid == 0 {
		t.Error("setuid bit not reported")
	}
	if pkg.Entries[3].Link != "usr/bin/tool" {
		t.Errorf("hard link target %q", pkg.Entries[3].Link)
	}
}

func writeTree(t *testing.T, root string, files map[string]string, modes map[string]os.FileMode) {
	t.Helper()
	for p, body := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if m, ok := modes[p]; ok {
			mode = m
		}
		if err := os.WriteFile(full, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(full, mode)
	}
}

func TestPackReproducibleAndReadable(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, map[string]string{
		"info/package.json":  goodManifest,
		"info/postinstall":   "#!/bin/sh\n",
		"data/usr/bin/t":     "#!/bin/sh\necho t\n",
		"data/usr/share/t/a": "a",
		"data/usr/share/t/b": "b",
	}, map[string]os.FileMode{"info/postinstall": 0o755, "data/usr/bin/t": 0o755})
	os.Symlink("t", filepath.Join(src, "data/usr/bin/t-link"))

	clamp := time.Unix(1e9, 0)
	var first, second bytes.Buffer
	if _, err := PackDir(src, &first, PackOptions{Clamp: &clamp}); err != nil {
		t.Fatal(err)
	}
	// Touch everything: with the clamp the bytes must not change.
	now := time.Now()
	filepath.Walk(src, func(p string, _ os.FileInfo, _ error) error { return os.Chtimes(p, now, now) })
	if _, err := PackDir(src, &second, PackOptions{Clamp: &clamp}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.Bytes(), second.Bytes()) {
		t.Fatal("packing the same folder twice gave different bytes")
	}

	m, err := ReadManifest(bytes.NewReader(first.Bytes()))
	if err != nil || m.Name != "t" {
		t.Fatalf("ReadManifest: %v %v", m, err)
	}
	pkg, err := Inspect(bytes.NewReader(first.Bytes()), DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range pkg.Entries {
		names = append(names, e.Path)
		if !e.ModTime.Equal(clamp) {
			t.Errorf("%s: mtime %v not clamped", e.Path, e.ModTime)
		}
	}
	want := "usr usr/bin usr/bin/t usr/bin/t-link usr/share usr/share/t usr/share/t/a usr/share/t/b"
	if strings.Join(names, " ") != want {
		t.Fatalf("entries %q, want %q", names, want)
	}
}

func TestPackRefuses(t *testing.T) {
	cases := []struct {
		name  string
		files map[string]string
		modes map[string]os.FileMode
		want  string
	}{
		{"no manifest", map[string]string{"data/x": "x"}, nil, "info/package.json is missing"},
		{"bad manifest", map[string]string{"info/package.json": `{"Name":"t"}`, "data/x": ""}, nil, "package.json:"},
		{"script not executable", map[string]string{"info/package.json": goodManifest, "info/preinstall": "#!/bin/sh", "data/x": ""}, nil, "executable"},
		{"stray info", map[string]string{"info/package.json": goodManifest, "info/notes.txt": "", "data/x": ""}, nil, "only package.json"},
		{"no data", map[string]string{"info/package.json": goodManifest}, nil, "data/ is missing"},
		{"source without configure", map[string]string{"info/package.json": strings.Replace(goodManifest, "Binary", "Source", 1), "data/Makefile": ""}, nil, "executable data/configure"},
		{"manifest over 1 MiB", map[string]string{"info/package.json": goodManifest + strings.Repeat(" ", maxInfoFileSize), "data/x": ""}, nil, "larger than 1048576 bytes"},
		{"script over 1 MiB", map[string]string{"info/package.json": goodManifest, "info/postinstall": "#!/bin/sh\n" + strings.Repeat("#", maxInfoFileSize), "data/x": ""}, map[string]os.FileMode{"info/postinstall": 0o755}, "larger than 1048576 bytes"},
		{"too many entries", map[string]string{"info/package.json": goodManifest, "data/a": "", "data/b": "", "data/c": ""}, nil, "more than 4 entries"},
		{"too many bytes", map[string]string{"info/package.json": goodManifest, "data/a": strings.Repeat("x", 5000)}, nil, "more than 4096 bytes unpacked"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := t.TempDir()
			writeTree(t, src, tc.files, tc.modes)
			limits := DefaultLimits()
			switch tc.name {
			case "too many entries":
				limits.MaxEntries = 4
			case "too many bytes":
				limits.MaxBytes = 4096
			}
			_, err := PackDir(src, io.Discard, PackOptions{Limits: limits})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// FuzzInspect feeds arbitrary tar streams (gzipped here, so the fuzzer
// works on the structure rather than on the compression) to the reader: it
// must never panic, and whatever it accepts must obey the rules.
func FuzzInspect(f *testing.F) {
	f.Add(tarOf(f, true, file("data/x", "x")))
	f.Add(tarOf(f, true, dir("data/d/"), symlink("data/d/l", "../x"), hardlink("data/h", "data/d/l")))
	f.Add(tarOf(f, true, file("data/../x", "x")))
	f.Add(tarOf(f, false, file("info/package.json", goodManifest), ent{name: "info/postinstall", body: "#!", typ: tar.TypeReg, mode: 0o755}))
	f.Add(tarOf(f, false, file("info/package.json", goodManifest), file("info/files", "tpm-files 1\nd 0755 0 \"d\"\nl 0777 0 \"d/l\" \"x\"\n"), dir("data/d/"), symlink("data/d/l", "x")))
	// A stored (level 0) stream, from one reused writer, keeps each run cheap.
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.NoCompression)
	f.Fuzz(func(t *testing.T, raw []byte) {
		buf.Reset()
		w.Reset(&buf)
		w.Write(raw)
		w.Close()
		pkg, err := Inspect(bytes.NewReader(buf.Bytes()), Limits{MaxEntries: 1000, MaxBytes: 1 << 20})
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		types := map[string]EntryType{}
		for _, e := range pkg.Entries {
			if !filepath.IsLocal(e.Path) || strings.Contains(e.Path, "..") && strings.Contains("/"+e.Path+"/", "/../") {
				t.Fatalf("accepted unsafe name %q", e.Path)
			}
			for p := filepath.Dir(e.Path); p != "."; p = filepath.Dir(p) {
				if ty, ok := types[p]; ok && ty != TypeDir {
					t.Fatalf("accepted %q below non-directory %q", e.Path, p)
				}
			}
			if e.Type == TypeHardlink && types[e.Link] != TypeFile {
				t.Fatalf("accepted hard link %q to %q", e.Path, e.Link)
			}
			types[e.Path] = e.Type
		}
	})
}
