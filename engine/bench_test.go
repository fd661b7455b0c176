package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkInstallSmallFiles installs a package of 5,000 small files in 100
// directories into a fresh prefix per iteration, durably. test/bench/install
// compares the same against tar and dpkg.
func BenchmarkInstallSmallFiles(b *testing.B) {
	files := map[string]string{}
	for i := 0; i < 5000; i++ {
		files[fmt.Sprintf("usr/share/bench/d%03d/f%04d.txt", i%100, i)] = fmt.Sprintf("file %d %0*d\n", i, 1000+i%3000, 0)
	}
	archive := writePackage(b, b.TempDir(), pkgSpec{name: "bench", version: "1", files: files})
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := b.TempDir()
		e, _, err := Open(ctx, Options{StateDir: filepath.Join(dir, "state")})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		changeset, _, err := e.PrepareInstall(ctx, InstallRequest{Prefix: filepath.Join(dir, "root"), Archives: []Archive{{Path: archive}}})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.Apply(ctx, changeset, Hooks{}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		e.Close()
		os.RemoveAll(dir)
		b.StartTimer()
	}
}
