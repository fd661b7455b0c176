package engine

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"tpm/tarball"
)

// FuzzInstall installs arbitrary tar streams (gzipped here) into a fresh
// prefix. Whatever the input, nothing may appear outside the prefix (a
// sibling folder that symlinks in the archive point at stays empty), and an
// accepted package must verify clean and remove without a trace.
func FuzzInstall(f *testing.F) {
	manifest := `{"Name":"f","Version":"1","Architecture":"any","Type":"Binary"}`
	seed := func(extra ...*tar.Header) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Name: "info/package.json", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(manifest))})
		tw.Write([]byte(manifest))
		for _, h := range extra {
			body := bytes.Repeat([]byte("x"), int(h.Size))
			if text, ok := h.PAXRecords["comment"]; ok {
				body, h.PAXRecords = []byte(text), nil // a listing's text
			}
			tw.WriteHeader(h)
			tw.Write(body)
		}
		tw.Close()
		return buf.Bytes()
	}
	f.Add(seed(&tar.Header{Name: "data/usr/bin/x", Typeflag: tar.TypeReg, Mode: 0o755, Size: 3}))
	f.Add(seed(&tar.Header{Name: "data/out", Typeflag: tar.TypeSymlink, Linkname: "../outside"},
		&tar.Header{Name: "data/out/file", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1}))
	f.Add(seed(&tar.Header{Name: "data/a", Typeflag: tar.TypeReg, Mode: 0o644, Size: 2},
		&tar.Header{Name: "data/b", Typeflag: tar.TypeLink, Linkname: "data/a"},
		&tar.Header{Name: "data/d/", Typeflag: tar.TypeDir, Mode: 0o700}))
	// With a listing ahead of the data (the changeset reads only that), true and not.
	listing := func(text string) *tar.Header {
		return &tar.Header{Name: "info/files", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(text)), PAXRecords: map[string]string{"comment": text}}
	}
	f.Add(seed(listing("tpm-files 1\nd 0755 0 \"d\"\nf 0644 2 \"d/a\"\n"),
		&tar.Header{Name: "data/d/", Typeflag: tar.TypeDir, Mode: 0o755},
		&tar.Header{Name: "data/d/a", Typeflag: tar.TypeReg, Mode: 0o644, Size: 2}))
	f.Add(seed(listing("tpm-files 1\nf 0644 2 \"a\"\n"),
		&tar.Header{Name: "data/a", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3}))

	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.NoCompression)
	f.Fuzz(func(t *testing.T, raw []byte) {
		dir := t.TempDir()
		outside := filepath.Join(dir, "outside")
		prefix := filepath.Join(dir, "root")
		must(t, os.Mkdir(outside, 0o755))
		buf.Reset()
		w.Reset(&buf)
		w.Write(raw)
		w.Close()
		archive := filepath.Join(dir, "p.tpkg")
		must(t, os.WriteFile(archive, buf.Bytes(), 0o644))

		ctx := context.Background()
		// A mutated manifest may say Source: its build must stay in here too.
		e, _, err := Open(ctx, Options{StateDir: filepath.Join(dir, "state"), BuildRoot: filepath.Join(dir, "build")})
		must(t, err)
		defer e.Close()
		changeset, _, err := e.PrepareInstall(ctx, InstallRequest{Prefix: prefix, Archives: []Archive{{Path: archive}}})
		if err == nil {
			if _, err := e.Apply(ctx, changeset, Hooks{}); err != nil {
				// Only a listing that lies about the data may pass the changeset
				// and fail here, and then nothing may be left.
				var rule *tarball.RuleError
				if !errors.As(err, &rule) {
					t.Fatalf("accepted package failed to install: %v", err)
				}
				if left, _ := os.ReadDir(prefix); len(left) > 0 {
					t.Fatalf("a refused install left %v", left)
				}
				if entries, _ := os.ReadDir(outside); len(entries) > 0 {
					t.Fatalf("wrote outside the prefix: %v", entries)
				}
				return
			}
			problems, err := e.Verify(prefix, nil)
			if err != nil || len(problems) > 0 {
				t.Fatalf("verify after install: %v %v", problems, err)
			}
			rm, err := e.PrepareRemove(ctx, prefix, []string{changeset.Ops[0].Name}, false)
			must(t, err)
			_, err = e.Apply(ctx, rm, Hooks{})
			must(t, err)
			if left, _ := os.ReadDir(prefix); len(left) > 0 {
				t.Fatalf("remove left %v", left)
			}
		}
		if entries, _ := os.ReadDir(outside); len(entries) > 0 {
			t.Fatalf("wrote outside the prefix: %v", entries)
		}
	})
}
