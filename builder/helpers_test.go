package builder

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tpm/tarball"
)

// needTools skips a test whose build needs tools CI installs but a bare
// machine may lack.
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (apt-get install gcc make); this test builds C sources", tool)
		}
	}
}

// sourcePackage writes a Source package folder with the given data/ files
// (a name ending in "/" is a directory, "->" in content makes a symlink) and
// packs it into an archive in dir.
func sourcePackage(t *testing.T, dir, name string, files map[string]string) string {
	t.Helper()
	pkg := filepath.Join(dir, "pkg-"+name)
	mustWrite(t, filepath.Join(pkg, "info", "package.json"), fmt.Sprintf(`{"Name": %q, "Version": "1.0-1", "Architecture": "any", "Type": "Source"}`, name), 0o644)
	if err := os.MkdirAll(filepath.Join(pkg, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	for rel, content := range files {
		full := filepath.Join(pkg, "data", rel)
		switch {
		case strings.HasSuffix(rel, "/"):
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
		case strings.HasPrefix(content, "->"):
			os.MkdirAll(filepath.Dir(full), 0o755)
			if err := os.Symlink(strings.TrimSpace(content[2:]), full); err != nil {
				t.Fatal(err)
			}
		default:
			mode := os.FileMode(0o644)
			if strings.HasPrefix(content, "#!") {
				mode = 0o755
			}
			mustWrite(t, full, content, mode)
		}
	}
	archive, _, err := tarball.PackFile(pkg, dir, tarball.PackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return archive
}

// rawArchive writes a .tpkg from raw tar headers, for trees PackFile would
// never produce.
func rawArchive(t *testing.T, dir string, hdrs []*tar.Header) string {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	manifest := []byte(`{"Name": "evil", "Version": "1", "Architecture": "any", "Type": "Source"}`)
	all := append([]*tar.Header{
		{Name: "info/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "info/package.json", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(manifest))},
		{Name: "data/", Typeflag: tar.TypeDir, Mode: 0o755},
	}, hdrs...)
	for _, h := range all {
		if h.Typeflag == tar.TypeReg && h.Size == 0 && h.Name != "info/package.json" {
			h.Size = int64(len(h.Uname)) // Uname carries the content here
		}
		body := []byte(h.Uname)
		if h.Name == "info/package.json" {
			body = manifest
		}
		h.Uname = ""
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	gz.Close()
	name := filepath.Join(dir, "evil-1-any.tpkg")
	mustWrite(t, name, buf.String(), 0o644)
	return name
}

func mustWrite(t *testing.T, name, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(name, mode); err != nil {
		t.Fatal(err)
	}
}

// testSpec is a Spec whose every path is under a fresh t.TempDir().
func testSpec(t *testing.T, archive, name string) Spec {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "prefix"), 0o755); err != nil {
		t.Fatal(err)
	}
	return Spec{
		Archive:   archive,
		BuildRoot: filepath.Join(dir, "buildroot"),
		Prefix:    filepath.Join(dir, "prefix"),
		Name:      name,
		DestDir:   filepath.Join(dir, "prefix", ".stage-"+name),
		Timeout:   time.Minute,
		LogFile:   filepath.Join(dir, "state", "build-logs", name+".log"),
	}
}

// testLog logs a build's lines as the test's.
func testLog(t *testing.T) LogFunc {
	return func(step, line string) { t.Logf("%s: %s", step, line) }
}

// assertCleanedUp checks what a failed build must leave: an empty build
// root, no DESTDIR, and the log.
func assertCleanedUp(t *testing.T, spec Spec) {
	t.Helper()
	entries, err := os.ReadDir(spec.BuildRoot)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("build root keeps %v", entries)
	}
	if _, err := os.Lstat(spec.DestDir); !os.IsNotExist(err) {
		t.Errorf("DESTDIR %s is still there (%v)", spec.DestDir, err)
	}
}

// processGone reports whether pid has exited (a zombie waiting for a parent
// that is not ours to reap counts as gone: it runs nothing).
func processGone(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 || i+2 >= len(data) {
		return true
	}
	return data[i+2] == 'Z' || data[i+2] == 'X'
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !processGone(pid) {
		if time.Now().After(deadline) {
			exec.Command("kill", "-9", fmt.Sprint(pid)).Run()
			t.Fatalf("process %d survived the build", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readPids(t *testing.T, file string) []int {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("the build did not record its pids: %v", err)
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		var pid int
		fmt.Sscan(f, &pid)
		pids = append(pids, pid)
	}
	if len(pids) == 0 {
		t.Fatal("no pids recorded")
	}
	return pids
}
