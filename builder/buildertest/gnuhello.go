// Package buildertest fetches a real autotools project for tests: GNU
// hello's upstream source as the host's Debian archive ships it.
package buildertest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Enabled says whether the GNU hello check should run: it needs the
// network to the host's Debian archive, so it is asked for explicitly.
func Enabled() bool { return os.Getenv("TPM_TEST_GNU_HELLO") == "1" }

// Available says (as an error wrapping ErrSkip) what this machine lacks
// to fetch and build GNU hello, or nil.
func Available() error {
	for _, tool := range []string{"apt-get", "tar", "cc", "make"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%w: %s is not installed", ErrSkip, tool)
		}
	}
	if found, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources"); len(found) == 0 {
		return fmt.Errorf("%w: no /etc/apt/sources.list.d/*.sources to take the Debian archive from", ErrSkip)
	}
	return nil
}

// ErrSkip wraps the reasons the check cannot run on this machine.
var ErrSkip = errors.New("cannot fetch GNU hello here")

// GNUHello fetches GNU hello's source with apt-get source into dir (a
// private sources list, lists and cache there, so nothing outside dir is
// written), and lays it out as a Source package folder (info/package.json,
// data/ = the source tree), whose path it returns with the version.
func GNUHello(dir string) (pkgDir, version string, err error) {
	if err := Available(); err != nil {
		return "", "", err
	}
	orig, err := aptSource(filepath.Join(dir, "apt"))
	if err != nil {
		return "", "", err
	}
	// hello_2.10.orig.tar.gz holds hello-2.10/: that folder is data/.
	version = strings.TrimPrefix(filepath.Base(orig), "hello_")
	version = version[:strings.Index(version, ".orig.")] + "-1"
	pkgDir = filepath.Join(dir, "gnu-hello")
	data := filepath.Join(pkgDir, "data")
	if err := os.MkdirAll(filepath.Join(pkgDir, "info"), 0o755); err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(data, 0o755); err != nil {
		return "", "", err
	}
	if out, err := exec.Command("tar", "-xf", orig, "-C", data, "--strip-components=1", "--no-same-owner").CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("tar: %v\n%s", err, out)
	}
	manifest := fmt.Sprintf(`{"Name": "hello", "Version": %q, "Architecture": "any", "Type": "Source", "Description": "GNU hello"}`, version)
	if err := os.WriteFile(filepath.Join(pkgDir, "info", "package.json"), []byte(manifest), 0o644); err != nil {
		return "", "", err
	}
	return pkgDir, version, nil
}

// aptSource downloads hello's upstream tarball with apt-get source, into
// and with the state of a private apt folder, and returns its path.
func aptSource(apt string) (string, error) {
	opts, err := privateApt(apt)
	if err != nil {
		return "", err
	}
	for _, args := range [][]string{{"update"}, {"source", "--download-only", "hello"}} {
		cmd := exec.Command("apt-get", append(opts, args...)...)
		cmd.Dir = filepath.Join(apt, "download")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("apt-get %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	var origs []string
	for _, ext := range []string{"gz", "xz", "bz2"} {
		found, _ := filepath.Glob(filepath.Join(apt, "download", "hello_*.orig.tar."+ext))
		origs = append(origs, found...)
	}
	if len(origs) != 1 {
		return "", fmt.Errorf("apt-get source gave %v", origs)
	}
	return origs[0], nil
}

// privateApt makes an apt folder whose sources are the host's own archive
// as deb-src (nothing here names a mirror), and returns the apt-get
// options that use it.
func privateApt(apt string) ([]string, error) {
	hostSources, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	for _, d := range []string{"lists/partial", "parts", "cache/archives/partial", "download"} {
		if err := os.MkdirAll(filepath.Join(apt, d), 0o755); err != nil {
			return nil, err
		}
	}
	sources := filepath.Join(apt, "sources.list")
	if err := os.WriteFile(sources, nil, 0o644); err != nil {
		return nil, err
	}
	for _, f := range hostSources {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		src := strings.ReplaceAll(string(b), "Types: deb\n", "Types: deb-src\n")
		if err := os.WriteFile(filepath.Join(apt, "parts", filepath.Base(f)), []byte(src), 0o644); err != nil {
			return nil, err
		}
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
	return opts, nil
}
