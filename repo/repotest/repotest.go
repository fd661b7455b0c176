// Package repotest makes package files for the repository server's tests.
package repotest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"tpm/tarball"
)

// Package describes a package to make.
type Package struct {
	Name, Version string
	Arch          string // "any" when empty
	Deps          []string
	// Relations, each entry a string as in package.json.
	Provides, Conflicts, Replaces []string
	// PayloadBytes of incompressible data in data/usr/share/NAME/payload,
	// from Seed, so that sizes and hashes are predictable.
	PayloadBytes int
	Seed         uint64
	// SmallFiles adds that many files of 1 to 4 KiB of text in folders of
	// 100 under data/usr/share/NAME/, for many-file installs.
	SmallFiles int
}

// Make packs p with tpm pack into dir and returns the file's path.
func Make(tb testing.TB, dir string, p Package) string {
	tb.Helper()
	path, err := MakeErr(tb.TempDir(), dir, p)
	if err != nil {
		tb.Fatal(err)
	}
	return path
}

// MakeErr is Make for code without a testing.TB (benchmark programs); the
// package folder is built under work.
func MakeErr(work, dir string, p Package) (string, error) {
	if p.Arch == "" {
		p.Arch = "any"
	}
	src, err := os.MkdirTemp(work, "pkg-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(src)
	m := map[string]any{"Name": p.Name, "Version": p.Version, "Architecture": p.Arch, "Type": "Binary",
		"Description": "test package " + p.Name}
	for k, v := range map[string][]string{"Dependencies": p.Deps, "Provides": p.Provides, "Conflicts": p.Conflicts, "Replaces": p.Replaces} {
		if len(v) > 0 {
			m[k] = v
		}
	}
	js, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	share := filepath.Join(src, "data", "usr", "share", p.Name)
	if err := os.MkdirAll(filepath.Join(src, "info"), 0o755); err != nil {
		return "", err
	}
	if err := os.MkdirAll(share, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(src, "info", "package.json"), js, 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(share, "payload"), Random(p.PayloadBytes, p.Seed), 0o644); err != nil {
		return "", err
	}
	r := rand.New(rand.NewPCG(p.Seed, 1))
	for i := range p.SmallFiles {
		d := filepath.Join(share, fmt.Sprintf("d%03d", i/100))
		if i%100 == 0 {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return "", err
			}
		}
		body := bytes.Repeat(fmt.Appendf(nil, "%s file %d line\n", p.Name, r.Uint32()), 1+r.IntN(150))
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%05d.txt", i)), body, 0o644); err != nil {
			return "", err
		}
	}
	path, _, err := tarball.PackFile(src, dir, tarball.PackOptions{})
	if err != nil {
		return "", fmt.Errorf("pack %s: %w", p.Name, err)
	}
	return path, nil
}

// Random returns n bytes from a generator seeded with seed.
func Random(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for k := range 8 {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}
