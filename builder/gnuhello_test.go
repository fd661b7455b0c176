package builder

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"tpm/tarball"
)

// TestBuildGNUHello builds a real autotools project: GNU hello's upstream
// source as Debian bookworm ships it, fetched with apt-get source into the
// test's own directory (private sources list, lists and cache, so nothing
// outside it is written), packed as a Source package.
func TestBuildGNUHello(t *testing.T) {
	if os.Getenv("TPM_TEST_GNU_HELLO") != "1" {
		t.Skip("set TPM_TEST_GNU_HELLO=1 to build GNU hello from Debian's sources (needs apt-get, tar, cc, make and the host's Debian archive)")
	}
	needTools(t, "apt-get", "tar", "cc", "make")
	const keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
	if _, err := os.Stat(keyring); err != nil {
		t.Skipf("no Debian archive keyring (%v): apt-get install debian-archive-keyring", err)
	}
	dir := t.TempDir()
	apt := filepath.Join(dir, "apt")
	for _, d := range []string{"lists/partial", "parts", "cache/archives/partial", "download"} {
		if err := os.MkdirAll(filepath.Join(apt, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The host's own archive, as deb-src: the test names no mirror itself.
	sources := filepath.Join(apt, "sources.list")
	mustWrite(t, sources, "", 0o644)
	hostSources, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	if len(hostSources) == 0 {
		t.Skip("no /etc/apt/sources.list.d/*.sources to take the Debian archive from")
	}
	for _, f := range hostSources {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src := strings.ReplaceAll(string(b), "Types: deb\n", "Types: deb-src\n")
		mustWrite(t, filepath.Join(apt, "parts", filepath.Base(f)), src, 0o644)
	}
	opts := []string{"-q",
		"-o", "Dir::Etc::SourceList=" + sources,
		"-o", "Dir::Etc::SourceParts=" + filepath.Join(apt, "parts"),
		"-o", "Dir::State::Lists=" + filepath.Join(apt, "lists"),
		"-o", "Dir::Cache=" + filepath.Join(apt, "cache"),
	}
	if os.Geteuid() == 0 {
		// The _apt sandbox user cannot write into a 0700 test directory.
		opts = append(opts, "-o", "APT::Sandbox::User=root")
	}
	aptGet := func(args ...string) {
		t.Helper()
		cmd := exec.Command("apt-get", append(opts, args...)...)
		cmd.Dir = filepath.Join(apt, "download")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("apt-get %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	start := time.Now()
	aptGet("update")
	aptGet("source", "--download-only", "hello")
	var origs []string
	for _, pattern := range []string{"gz", "xz", "bz2"} {
		found, _ := filepath.Glob(filepath.Join(apt, "download", "hello_*.orig.tar."+pattern))
		origs = append(origs, found...)
	}
	if len(origs) != 1 {
		t.Fatalf("apt-get source gave %v", origs)
	}
	fetched := time.Since(start)

	// hello_2.10.orig.tar.gz holds hello-2.10/: that folder is data/.
	version := strings.TrimPrefix(filepath.Base(origs[0]), "hello_")
	version = version[:strings.Index(version, ".orig.")]
	pkg := filepath.Join(dir, "pkg")
	data := filepath.Join(pkg, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "-xf", origs[0], "-C", data, "--strip-components=1", "--no-same-owner").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	mustWrite(t, filepath.Join(pkg, "info", "package.json"), fmt.Sprintf(`{"Name": "hello", "Version": %q, "Architecture": "any", "Type": "Source", "Description": "GNU hello"}`, version+"-1"), 0o644)
	archive, _, err := tarball.PackFile(pkg, dir, tarball.PackOptions{})
	if err != nil {
		t.Fatal(err)
	}

	spec := testSpec(t, archive, "hello")
	spec.Env = []string{fmt.Sprintf("MAKEFLAGS=-j%d", runtime.NumCPU())}
	lines := 0
	spec.Log = func(step, line string) { lines++ }
	res, err := Build(context.Background(), spec)
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
