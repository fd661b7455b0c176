package builder

import (
	"archive/tar"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tpm/tarball"
)

const okConfigure = "#!/bin/sh\necho \"configure: $*\"\n"

func TestBuildHelloSrc(t *testing.T) {
	needTools(t, "cc", "make")
	dir := t.TempDir()
	archive, _, err := tarball.PackFile("../examples/hello-src", dir, tarball.PackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	spec := testSpec(t, archive, "hello-src")
	res, err := Build(context.Background(), spec, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built in %s", res.Duration)
	bucket := BucketPath(spec.Prefix, "hello-src")
	if want := filepath.Join(spec.DestDir, bucket); res.Bucket != want {
		t.Errorf("Bucket = %s, want %s", res.Bucket, want)
	}
	var bin *File
	for i, f := range res.Files {
		if f.Path == "bin/hello-src" {
			bin = &res.Files[i]
		}
	}
	if bin == nil || bin.Type != tarball.TypeFile || bin.Mode.Perm() != 0o755 || len(bin.SHA256) != 64 || bin.Size == 0 {
		t.Fatalf("bin/hello-src not listed right: %+v in %+v", bin, res.Files)
	}
	if out, err := exec.Command(filepath.Join(res.Bucket, "bin", "hello-src"), "tpm").CombinedOutput(); err != nil || !strings.Contains(string(out), "Hello, tpm!") {
		t.Fatalf("staged binary: %v: %s", err, out)
	}

	// What the caller does next: swap the bucket in, make the farm, run.
	if err := os.MkdirAll(filepath.Dir(bucket), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(res.Bucket, bucket); err != nil {
		t.Fatal(err)
	}
	linkDir := DefaultLinkDir(spec.Prefix)
	if err := os.MkdirAll(linkDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, l := range Links(bucket, res.Files, "") {
		if l.Dir {
			err = os.Mkdir(l.Path, 0o755)
		} else {
			err = os.Symlink(l.Target, l.Path)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command(filepath.Join(linkDir, "bin", "hello-src")).CombinedOutput()
	if err != nil || string(out) != "Hello, world! (built from source by tpm)\n" {
		t.Fatalf("linked binary: %v: %q", err, out)
	}

	if entries, _ := os.ReadDir(spec.BuildRoot); len(entries) != 0 {
		t.Errorf("build root keeps %v", entries)
	}
	log, err := os.ReadFile(spec.LogFile)
	if err != nil || !strings.Contains(string(log), "configure: prefix="+bucket) || !strings.Contains(string(log), "$ make install DESTDIR="+spec.DestDir) {
		t.Errorf("log file: %v\n%s", err, log)
	}
}

func TestBuildStepFailures(t *testing.T) {
	needTools(t, "make")
	makefile := "all:\n\t@echo compiling\n\t@echo 'hello.c:3: error: expected ; before }' >&2\n\t@exit 2\n"
	tests := []struct {
		step  string
		files map[string]string
		last  string
	}{
		{StepConfigure, map[string]string{
			"configure": "#!/bin/sh\necho 'checking for cc... no'\necho 'configure: error: no acceptable C compiler found in $PATH' >&2\nexit 77\n",
		}, "configure: error: no acceptable C compiler found in $PATH"},
		{StepMake, map[string]string{"configure": okConfigure, "Makefile": makefile},
			"hello.c:3: error: expected ; before }"},
		{StepInstall, map[string]string{"configure": okConfigure,
			"Makefile": "all:\n\t@echo built\ninstall:\n\tmkdir -p $(DESTDIR)/half\n\t@echo 'install: cannot create regular file: Permission denied'\n\t@false\n"},
			"install: cannot create regular file: Permission denied"},
	}
	for _, tt := range tests {
		t.Run(strings.ReplaceAll(tt.step, " ", "_"), func(t *testing.T) {
			dir := t.TempDir()
			spec := testSpec(t, sourcePackage(t, dir, "broken", tt.files), "broken")
			res, err := Build(context.Background(), spec, testLog(t))
			if err == nil {
				t.Fatalf("built: %+v", res)
			}
			t.Log(err)
			var be *BuildError
			if !errors.As(err, &be) || be.Step != tt.step || be.Last != tt.last {
				t.Fatalf("error %#v, want step %q, last line %q", err, tt.step, tt.last)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "build broken: "+tt.step+" failed (exit status ") || !strings.HasSuffix(msg, ": "+tt.last) || strings.Contains(msg, "\n") {
				t.Errorf("message %q", msg)
			}
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Errorf("error does not wrap the exit status: %#v", be.Err)
			}
			if len(be.Tail) == 0 || be.Tail[len(be.Tail)-1] == "" || be.LogFile != spec.LogFile {
				t.Errorf("tail %q, log %q", be.Tail, be.LogFile)
			}
			log, _ := os.ReadFile(spec.LogFile)
			if !strings.Contains(string(log), tt.last) {
				t.Errorf("log file lacks the error:\n%s", log)
			}
			assertCleanedUp(t, spec)
		})
	}
}

// hangingMakefile records the pids of the recipe's shell and of a
// background child that holds the output pipe, then hangs.
const hangingMakefile = "all:\n\tsleep 300 & echo $$! $$$$ > $$PIDFILE; echo hanging; sleep 300\n"

func TestBuildTimeoutKillsProcessGroup(t *testing.T) {
	needTools(t, "make")
	dir := t.TempDir()
	spec := testSpec(t, sourcePackage(t, dir, "hang", map[string]string{"configure": okConfigure, "Makefile": hangingMakefile}), "hang")
	pidFile := filepath.Join(dir, "pids")
	spec.Env = []string{"PIDFILE=" + pidFile}
	spec.Timeout = 2 * time.Second
	start := time.Now()
	_, err := Build(context.Background(), spec, testLog(t))
	took := time.Since(start)
	t.Logf("%v after %s", err, took)
	var be *BuildError
	if !errors.As(err, &be) || be.Step != StepMake || be.Why != "timed out after 2s" || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %#v", err)
	}
	if err.Error() != "build hang: make failed (timed out after 2s): hanging" {
		t.Errorf("message %q", err)
	}
	if took > 5*time.Second {
		t.Errorf("took %s with a 2s timeout", took)
	}
	for _, pid := range readPids(t, pidFile) {
		waitGone(t, pid)
	}
	assertCleanedUp(t, spec)
}

func TestBuildCancelKillsProcessGroup(t *testing.T) {
	needTools(t, "make")
	dir := t.TempDir()
	spec := testSpec(t, sourcePackage(t, dir, "hang", map[string]string{"configure": okConfigure, "Makefile": hangingMakefile}), "hang")
	pidFile := filepath.Join(dir, "pids")
	spec.Env = []string{"PIDFILE=" + pidFile}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := func(step, line string) {
		if line == "hanging" {
			cancel()
		}
	}
	start := time.Now()
	_, err := Build(ctx, spec, log)
	took := time.Since(start)
	var be *BuildError
	if !errors.As(err, &be) || be.Step != StepMake || be.Why != "canceled" || !errors.Is(err, context.Canceled) {
		t.Fatalf("error %#v", err)
	}
	if took > 5*time.Second {
		t.Errorf("took %s to stop", took)
	}
	for _, pid := range readPids(t, pidFile) {
		waitGone(t, pid)
	}
	assertCleanedUp(t, spec)
}

// A step that succeeds but leaves a child behind (holding its output open)
// neither hangs the build nor leaves the child running.
func TestBuildKillsLeftoverChildren(t *testing.T) {
	needTools(t, "make")
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pids")
	spec := testSpec(t, sourcePackage(t, dir, "leaver", map[string]string{
		"configure": okConfigure,
		"Makefile":  "all:\n\tsleep 300 & echo $$! > $$PIDFILE\ninstall:\n\tmkdir -p $(DESTDIR)$(PREFIX)/share\n\techo hi > $(DESTDIR)$(PREFIX)/share/hi\n",
	}), "leaver")
	spec.Env = []string{"PIDFILE=" + pidFile, "PREFIX=" + BucketPath(spec.Prefix, "leaver")}
	start := time.Now()
	res, err := Build(context.Background(), spec, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > drainGrace {
		t.Errorf("took %s: waited for the leftover child", took)
	}
	for _, pid := range readPids(t, pidFile) {
		waitGone(t, pid)
	}
	if len(res.Files) != 2 || res.Files[0].Path != "share" || res.Files[1].Path != "share/hi" || res.Files[1].Size != 3 {
		t.Errorf("files %+v", res.Files)
	}
}

func TestBuildRefusesStrayInstall(t *testing.T) {
	needTools(t, "make")
	dir := t.TempDir()
	spec := testSpec(t, sourcePackage(t, dir, "stray", map[string]string{
		"configure": okConfigure,
		"Makefile":  "all:\ninstall:\n\tmkdir -p $(DESTDIR)$(PREFIX)/bin $(DESTDIR)/etc\n\ttouch $(DESTDIR)$(PREFIX)/bin/x $(DESTDIR)/etc/stray.conf\n",
	}), "stray")
	spec.Env = []string{"PREFIX=" + BucketPath(spec.Prefix, "stray")}
	_, err := Build(context.Background(), spec, testLog(t))
	var be *BuildError
	if !errors.As(err, &be) || be.Step != StepInstall || !strings.Contains(err.Error(), "/etc") {
		t.Fatalf("error %v", err)
	}
	assertCleanedUp(t, spec)

	// Nothing installed in the bucket at all.
	spec = testSpec(t, sourcePackage(t, t.TempDir(), "empty", map[string]string{"configure": okConfigure, "Makefile": "all:\ninstall:\n"}), "empty")
	if _, err := Build(context.Background(), spec, testLog(t)); err == nil || !strings.Contains(err.Error(), "make install put nothing in") {
		t.Fatalf("error %v", err)
	}
	assertCleanedUp(t, spec)
}

func TestBuildRefusesHostileTrees(t *testing.T) {
	configure := func() *tar.Header {
		return &tar.Header{Name: "data/configure", Typeflag: tar.TypeReg, Mode: 0o755, Uname: "#!/bin/sh\ntouch \"$MARKER\"\n"}
	}
	sym := func(name, target string) *tar.Header {
		return &tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777}
	}
	dirh := func(name string) *tar.Header { return &tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755} }
	tests := []struct {
		name string
		hdrs []*tar.Header
		want string
	}{
		{"absolute symlink", []*tar.Header{configure(), sym("data/passwd", "/etc/passwd")}, `entry "data/passwd": symlink target "/etc/passwd" is absolute`},
		{"escaping symlink", []*tar.Header{configure(), dirh("data/src/"), sym("data/src/up", "../../x")}, `entry "data/src/up": symlink target "../../x" leads outside the source tree`},
		{"escape through a link to ..", []*tar.Header{configure(), dirh("data/sub/"), sym("data/sub/l", ".."), sym("data/x", "sub/l/..")}, `entry "data/x": symlink target "sub/l/.." leads outside`},
		{"symlink loop", []*tar.Header{configure(), sym("data/a", "b"), sym("data/b", "a")}, "goes through more than 40 symlinks"},
		{"dot-dot name", []*tar.Header{configure(), {Name: "data/../evil", Typeflag: tar.TypeReg, Mode: 0o644, Uname: "x"}}, `".." component`},
		{"write through a symlink", []*tar.Header{configure(), sym("data/d", "sub"), dirh("data/sub/"), {Name: "data/d/f", Typeflag: tar.TypeReg, Mode: 0o644, Uname: "x"}}, "passes through the symlink"},
		{"binary package", nil, ""},
	}
	for _, tt := range tests {
		t.Run(strings.ReplaceAll(tt.name, " ", "_"), func(t *testing.T) {
			dir := t.TempDir()
			var archive string
			if tt.hdrs != nil {
				archive = rawArchive(t, dir, tt.hdrs)
			} else {
				sourcePackage(t, dir, "evil", map[string]string{"configure": okConfigure})
				raw, _ := os.ReadFile(filepath.Join(dir, "pkg-evil", "info", "package.json"))
				mustWrite(t, filepath.Join(dir, "pkg-evil", "info", "package.json"), strings.Replace(string(raw), "Source", "Binary", 1), 0o644)
				var err error
				if archive, _, err = tarball.PackFile(filepath.Join(dir, "pkg-evil"), dir, tarball.PackOptions{}); err != nil {
					t.Fatal(err)
				}
				tt.want = "is a Binary package, not a Source package"
			}
			spec := testSpec(t, archive, "evil")
			marker := filepath.Join(dir, "configure-ran")
			spec.Env = []string{"MARKER=" + marker}
			_, err := Build(context.Background(), spec, testLog(t))
			var be *BuildError
			if !errors.As(err, &be) || be.Step != StepUnpack || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want unpack failing with %q", err, tt.want)
			}
			t.Log(err)
			if _, err := os.Stat(marker); err == nil {
				t.Error("configure ran")
			}
			assertCleanedUp(t, spec)
		})
	}
}

// Links inside the tree, hard links, modes and mtimes come through; setuid
// does not.
func TestUnpackKeepsTree(t *testing.T) {
	old := time.Date(2014, 11, 16, 12, 0, 0, 0, time.UTC)
	hdrs := []*tar.Header{
		{Name: "data/configure", Typeflag: tar.TypeReg, Mode: 0o755, Uname: "#!/bin/sh\n", ModTime: old},
		{Name: "data/ro/", Typeflag: tar.TypeDir, Mode: 0o555, ModTime: old},
		{Name: "data/ro/suid", Typeflag: tar.TypeReg, Mode: 0o4755, Uname: "x", ModTime: old},
		{Name: "data/ro/hard", Typeflag: tar.TypeLink, Linkname: "data/ro/suid"},
		{Name: "data/deep/er/file", Typeflag: tar.TypeReg, Mode: 0o600, Uname: "y", ModTime: old},
		{Name: "data/deep/up", Typeflag: tar.TypeSymlink, Linkname: "../ro/suid"},
		{Name: "data/deep/er/self", Typeflag: tar.TypeSymlink, Linkname: "../../deep/er/../../configure"},
	}
	dir := t.TempDir()
	archive := rawArchive(t, dir, hdrs)
	src := filepath.Join(dir, "src")
	m, err := unpack(context.Background(), archive, tarball.DefaultLimits(), src)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "evil" {
		t.Errorf("manifest %+v", m)
	}
	check := func(rel string, mode os.FileMode) {
		t.Helper()
		st, err := os.Lstat(filepath.Join(src, rel))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", rel, st.Mode(), mode)
		}
		if mode&os.ModeSymlink == 0 && !st.ModTime().Equal(old) && rel != "deep" && rel != "deep/er" && rel != "ro/hard" {
			t.Errorf("%s: mtime %v, want %v", rel, st.ModTime(), old)
		}
	}
	check("configure", 0o755)
	check("ro", os.ModeDir|0o755)
	check("ro/suid", 0o755)
	check("ro/hard", 0o755)
	check("deep/er/file", 0o600)
	check("deep/up", os.ModeSymlink|0o777)
	if data, err := os.ReadFile(filepath.Join(src, "deep/er/self")); err != nil || string(data) != "#!/bin/sh\n" {
		t.Errorf("deep/er/self: %q %v", data, err)
	}
}

func TestResolve(t *testing.T) {
	links := map[string]string{"a/l": "..", "a/m": "../b", "b": "a/l/a", "top": "."}
	tests := []struct {
		dir, target, want string
		err               error
	}{
		{"a", "l/b", "a", nil},        // l is the top, b leads to a
		{"", "top/top/a/m", "a", nil}, // m leads to b, b to a
		{"a", "../..", "", errEscapes},
		{"a", "l/..", "", errEscapes},
		{"", "b/../a", "a", nil}, // b leads to a, whose parent is the top
		{"", "/x", "", errAbsolute},
		{"a/x/y", "../../../c", "c", nil},
	}
	for _, tt := range tests {
		hops := 0
		got, err := resolve(links, parts(tt.dir), tt.target, &hops)
		if !errors.Is(err, tt.err) || (err == nil && strings.Join(got, "/") != tt.want) {
			t.Errorf("resolve(%q, %q) = %q, %v; want %q, %v", tt.dir, tt.target, strings.Join(got, "/"), err, tt.want, tt.err)
		}
	}
}

func TestBuildRootMustBeOurs(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "shared")
	if err := os.Mkdir(root, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(root, 0o777)
	if _, err := makeBuildDir(root, "x"); err == nil || !strings.Contains(err.Error(), "writable by others") {
		t.Fatalf("error %v", err)
	}
	link := filepath.Join(dir, "link")
	os.Symlink(dir, link)
	if _, err := makeBuildDir(link, "x"); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("error %v", err)
	}
}

func TestOutputTail(t *testing.T) {
	o := &output{step: StepMake}
	for i := 0; i < 25; i++ {
		o.line(strings.Repeat("x", i))
	}
	o.line("cc: error: bad\r")
	o.line("make: *** [Makefile:2: all] Error 1")
	o.line("")
	tail := o.tailLines()
	if len(tail) != TailLines || tail[len(tail)-1] != "" || tail[len(tail)-3] != "cc: error: bad" || tail[0] != strings.Repeat("x", 8) {
		t.Errorf("tail %q", tail)
	}
	if o.stepLast != "cc: error: bad" {
		t.Errorf("last %q", o.stepLast)
	}
	if got := oneLine("a\tb\x1b[0m" + strings.Repeat("é", 200)); strings.ContainsAny(got, "\t\x1b") || len(got) > 304 || !strings.HasSuffix(got, "…") {
		t.Errorf("oneLine: %q", got)
	}
}
