package builder

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"tpm/builder/buildertest"
	"tpm/tarball"
)

// TestBuildGNUHello builds a real autotools project: GNU hello's upstream
// source as Debian bookworm ships it, fetched with apt-get source into the
// test's own directory (private sources list, lists and cache, so nothing
// outside it is written), packed as a Source package.
func TestBuildGNUHello(t *testing.T) {
	if !buildertest.Enabled() {
		t.Skip("set TPM_TEST_GNU_HELLO=1 to build GNU hello from Debian's sources (needs apt-get, tar, cc, make and the host's Debian archive)")
	}
	dir := t.TempDir()
	start := time.Now()
	pkg, version, err := buildertest.GNUHello(dir)
	if errors.Is(err, buildertest.ErrSkip) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	fetched := time.Since(start)
	archive, _, err := tarball.PackFile(pkg, dir, tarball.PackOptions{})
	if err != nil {
		t.Fatal(err)
	}

	spec := testSpec(t, archive, "hello")
	spec.Env = []string{fmt.Sprintf("MAKEFLAGS=-j%d", runtime.NumCPU())}
	lines := 0
	res, err := Build(context.Background(), spec, func(step, line string) { lines++ })
	if err != nil {
		t.Fatalf("%v\n%s", err, strings.Join(errTail(err), "\n"))
	}
	out, err := exec.Command(filepath.Join(res.Bucket, "bin", "hello")).CombinedOutput()
	if err != nil || string(out) != "Hello, world!\n" {
		t.Fatalf("bin/hello: %v: %q", err, out)
	}
	links := Links(BucketPath(spec.Prefix, "hello"), res.Files, "")
	t.Logf("GNU hello %s: apt-get update + source %s, build %s (%d log lines), %d bucket entries, %d farm entries",
		version, fetched.Round(time.Millisecond), res.Duration.Round(time.Millisecond), lines, len(res.Files), len(links))
}

func errTail(err error) []string {
	if be, ok := err.(*BuildError); ok {
		return be.Tail
	}
	return nil
}
