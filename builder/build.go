package builder

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"tpm/manifest"
	"tpm/tarball"
)

// Defaults for the Spec fields left zero.
const (
	DefaultBuildRoot = "/tmp/tpm"
	DefaultTimeout   = time.Hour
)

// TailLines is how many of the last output lines a Result or BuildError keeps.
const TailLines = 20

// Steps of a build, as passed to a LogFunc and named in errors.
const (
	StepUnpack    = "unpack"
	StepConfigure = "configure"
	StepMake      = "make"
	StepInstall   = "make install"
)

// BucketsDir is where buckets live, relative to the prefix.
const BucketsDir = "opt/tpm/buckets"

// BucketPath is the final path of NAME's bucket under prefix, the directory
// given to configure as --prefix.
func BucketPath(prefix, name string) string {
	return filepath.Join(prefix, BucketsDir, name)
}

// DefaultLinkDir is where the symlink farm goes when no link dir is
// configured: PREFIX/usr/local.
func DefaultLinkDir(prefix string) string {
	return filepath.Join(prefix, "usr", "local")
}

// Spec is one build.
type Spec struct {
	// Archive is the path of the Source .tpkg; its data/ is the source tree.
	Archive string
	// Limits bound the archive like any other; zero means
	// tarball.DefaultLimits.
	Limits tarball.Limits
	// BuildRoot holds the build directories (default /tmp/tpm). It is made
	// 0700 if missing, and refused unless it is a real directory owned by us
	// and writable by nobody else, since whoever can rename inside it could
	// swap a tree under a build running as root.
	BuildRoot string
	// Prefix is the absolute install prefix; the bucket's final path is
	// BucketPath(Prefix, Name).
	Prefix string
	// Name is the package name; the archive's manifest must agree.
	Name string
	// DestDir is where make install puts the files (DESTDIR): absolute, and
	// either missing (it is made 0700) or an empty directory. The caller
	// chooses it on the prefix's file system, so that the bucket it holds can
	// be renamed into place. It is left on success and removed on failure.
	DestDir string
	// Timeout bounds the whole build; zero means DefaultTimeout.
	Timeout time.Duration
	// Env is added to the minimal environment of the steps (PATH, HOME=the
	// build directory, TMPDIR inside it, LANG=C); a later entry wins, so it
	// may also override those (PATH, CC, MAKEFLAGS=-j4, ...).
	Env []string
	// LogFile, if set, is where the whole log is written (parents are made);
	// it is kept on success and failure alike.
	LogFile string
}

// LogFunc receives each output line of a build as it comes (raw bytes, not
// necessarily UTF-8), with its step: StepUnpack, StepConfigure, StepMake,
// StepInstall, or "cleanup" and "done" for the builder's own last words.
// Each step starts with its command line ("$ make"). Calls never overlap; a
// slow LogFunc slows the build down.
type LogFunc func(step, line string)

// Result is a successful build.
type Result struct {
	// Bucket is the bucket inside DestDir: DestDir + BucketPath(Prefix,
	// Name), the directory to rename onto BucketPath(Prefix, Name).
	Bucket string
	// Files is everything in Bucket, parents before children, sorted.
	Files []File
	// LogFile is Spec.LogFile; Tail the last TailLines output lines.
	LogFile string
	Tail    []string
	// Duration is the whole build, unpacking included.
	Duration time.Duration
}

// BuildError is a failed build. Its message is one line naming the package,
// the step, why, and the last line of output.
type BuildError struct {
	Name    string
	Step    string   // StepUnpack, StepConfigure, StepMake or StepInstall
	Why     string   // "exit status 2", "timed out after 2s", "canceled"; empty when Err says it all
	Last    string   // last non-empty output line of the step
	Tail    []string // last TailLines output lines of the build
	LogFile string   // the whole log, if Spec.LogFile was set
	Err     error    // the cause: *exec.ExitError, context errors, *tarball.RuleError, ...
}

func (e *BuildError) Error() string {
	msg := "build " + e.Name + ": " + e.Step + " failed"
	if e.Why != "" {
		msg += " (" + e.Why + ")"
	}
	switch {
	case e.Last != "":
		msg += ": " + e.Last
	case e.Why == "" && e.Err != nil:
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *BuildError) Unwrap() error { return e.Err }

// errTimeout is the cause of a build context that ran out of time, told
// apart from a cancel by the caller.
var errTimeout = errors.New("build timed out")

// Build builds the Source package spec.Archive and installs it into
// spec.DestDir. The build directory is always removed; DestDir is removed on
// failure. Every process a step starts is killed with its process group when
// the step ends, times out or is canceled. A failure is a *BuildError.
func Build(ctx context.Context, spec Spec, log LogFunc) (*Result, error) {
	start := time.Now()
	if err := spec.check(); err != nil {
		return nil, err
	}
	spec.setDefaults()
	ctx, cancel := context.WithTimeoutCause(ctx, spec.Timeout, errTimeout)
	defer cancel()

	out := &output{log: log}
	if spec.LogFile != "" {
		f, err := createLog(spec.LogFile)
		if err != nil {
			return nil, fmt.Errorf("build %s: %w", spec.Name, err)
		}
		out.file = bufio.NewWriter(f)
		defer func() {
			out.file.Flush()
			f.Close()
		}()
	}
	if err := makeDestDir(spec.DestDir); err != nil {
		return nil, fmt.Errorf("build %s: %w", spec.Name, err)
	}
	ok := false
	defer func() {
		if !ok {
			out.removeDir(spec.DestDir)
		}
	}()
	buildDir, err := makeBuildDir(spec.BuildRoot, spec.Name)
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", spec.Name, err)
	}
	defer out.removeDir(buildDir)
	files, err := buildIn(ctx, spec, out, buildDir)
	if err != nil {
		return nil, err
	}
	ok = true
	d := time.Since(start)
	bucket := BucketPath(spec.Prefix, spec.Name)
	out.emit("done", fmt.Sprintf("built %s in %s: %d entries in %s", spec.Name, d.Round(time.Millisecond), len(files), bucket))
	return &Result{Bucket: filepath.Join(spec.DestDir, bucket), Files: files, LogFile: spec.LogFile, Tail: out.tailLines(), Duration: d}, nil
}

func (s *Spec) setDefaults() {
	if s.BuildRoot == "" {
		s.BuildRoot = DefaultBuildRoot
	}
	if s.Timeout <= 0 {
		s.Timeout = DefaultTimeout
	}
	if s.Limits == (tarball.Limits{}) {
		s.Limits = tarball.DefaultLimits()
	}
}

// removeDir removes a directory of the build, and says so in the log when
// it cannot.
func (o *output) removeDir(dir string) {
	if err := removeAll(dir); err != nil {
		o.emit("cleanup", "removing "+dir+": "+err.Error())
	}
}

// buildIn unpacks the source into buildDir and runs configure, make and
// make install there; it returns what make install put in the bucket.
func buildIn(ctx context.Context, spec Spec, out *output, buildDir string) ([]File, error) {
	src := filepath.Join(buildDir, "src")
	tmp := filepath.Join(buildDir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return nil, failed(spec, out, StepUnpack, err)
	}
	if err := unpackSource(ctx, spec, out, src); err != nil {
		return nil, err
	}
	bucket := BucketPath(spec.Prefix, spec.Name)
	env := []string{"PATH=" + defaultPath(), "HOME=" + buildDir, "TMPDIR=" + tmp, "LANG=C"}
	env = append(env, spec.Env...)
	steps := []struct {
		name string
		argv []string
	}{
		{StepConfigure, []string{"./configure", "--prefix=" + bucket}},
		{StepMake, []string{"make"}},
		{StepInstall, []string{"make", "install", "DESTDIR=" + spec.DestDir}},
	}
	for _, s := range steps {
		out.startStep(s.name, "$ "+strings.Join(s.argv, " "))
		if err := runStep(ctx, src, env, s.argv, out); err != nil {
			return nil, stepError(ctx, spec, out, s.name, err)
		}
	}
	files, err := collect(spec.DestDir, bucket)
	if err != nil {
		out.emit(StepInstall, err.Error())
		return nil, failed(spec, out, StepInstall, err)
	}
	return files, nil
}

// unpackSource unpacks the archive into src, and checks that it holds the
// Source package spec names.
func unpackSource(ctx context.Context, spec Spec, out *output, src string) error {
	out.step = StepUnpack
	out.emit(StepUnpack, "$ unpack "+spec.Archive+" into "+src)
	m, err := unpack(ctx, spec.Archive, spec.Limits, src)
	if err == nil {
		err = spec.checkManifest(m)
	}
	if err != nil {
		if ctx.Err() != nil {
			return stepError(ctx, spec, out, StepUnpack, err)
		}
		out.emit(StepUnpack, err.Error())
		return failed(spec, out, StepUnpack, err)
	}
	return nil
}

// failed is the BuildError of a step that failed on the builder's side,
// not in a command it ran.
func failed(spec Spec, out *output, step string, err error) error {
	return &BuildError{Name: spec.Name, Step: step, Err: err, Tail: out.tailLines(), LogFile: spec.LogFile}
}

// stepError explains a failed step: its exit status, or the timeout or
// cancel that killed it.
func stepError(ctx context.Context, spec Spec, out *output, step string, err error) error {
	why := err.Error()
	if ctx.Err() != nil {
		if errors.Is(context.Cause(ctx), errTimeout) {
			why = "timed out after " + spec.Timeout.String()
			err = fmt.Errorf("%s: %w", why, context.DeadlineExceeded)
		} else {
			why = "canceled"
			err = context.Cause(ctx)
		}
	}
	out.emit(step, step+" failed ("+why+")")
	return &BuildError{Name: spec.Name, Step: step, Why: why, Last: out.stepLast, Err: err, Tail: out.tailLines(), LogFile: spec.LogFile}
}

func (s *Spec) check() error {
	if err := manifest.ValidName(s.Name); err != nil {
		return fmt.Errorf("build: package %w", err)
	}
	switch {
	case s.Archive == "":
		return fmt.Errorf("build %s: no archive given", s.Name)
	case !filepath.IsAbs(s.Prefix):
		return fmt.Errorf("build %s: prefix %q is not absolute", s.Name, s.Prefix)
	case !filepath.IsAbs(s.DestDir) || filepath.Clean(s.DestDir) == "/":
		return fmt.Errorf("build %s: DESTDIR %q must be an absolute path other than /", s.Name, s.DestDir)
	case s.BuildRoot != "" && !filepath.IsAbs(s.BuildRoot):
		return fmt.Errorf("build %s: build root %q is not absolute", s.Name, s.BuildRoot)
	}
	s.Prefix = filepath.Clean(s.Prefix)
	s.DestDir = filepath.Clean(s.DestDir)
	return nil
}

func (s *Spec) checkManifest(m *manifest.Manifest) error {
	switch {
	case m.Type != manifest.TypeSource:
		return fmt.Errorf("%s %s is a %s package, not a Source package", m.Name, m.Version, m.Type)
	case m.Name != s.Name:
		return fmt.Errorf("the archive holds %s, not %s", m.Name, s.Name)
	}
	return nil
}

func defaultPath() string {
	// The daemon's own PATH, so that a compiler installed where the admin
	// told the service manager to look is found.
	if p := os.Getenv("PATH"); p != "" {
		return p
	}
	return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
}

func createLog(name string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return nil, fmt.Errorf("build log: %w", err)
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("build log: %w", err)
	}
	return f, nil
}

// makeDestDir makes dir, or accepts it when it is an empty directory the
// caller made (os.MkdirTemp beside the bucket, say).
func makeDestDir(dir string) error {
	err := os.Mkdir(dir, 0o700)
	if err == nil || !errors.Is(err, os.ErrExist) {
		return err
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("DESTDIR %s exists and is not a directory", dir)
	}
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Readdirnames(1); err != io.EOF {
		if err == nil {
			return fmt.Errorf("DESTDIR %s is not empty", dir)
		}
		return err
	}
	return nil
}

// makeBuildDir makes a fresh private directory in root, like mktemp -d,
// after checking that nobody else can rename things inside root.
func makeBuildDir(root, name string) (string, error) {
	if err := os.MkdirAll(filepath.Dir(root), 0o755); err != nil {
		return "", err
	}
	if err := os.Mkdir(root, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return "", err
	}
	st, err := os.Lstat(root)
	if err != nil {
		return "", err
	}
	sys, _ := st.Sys().(*syscall.Stat_t)
	switch {
	case !st.IsDir():
		return "", fmt.Errorf("build root %s is not a directory", root)
	case sys != nil && int(sys.Uid) != os.Geteuid():
		return "", fmt.Errorf("build root %s belongs to uid %d, not to us (uid %d); remove it or choose another", root, sys.Uid, os.Geteuid())
	case st.Mode().Perm()&0o022 != 0:
		return "", fmt.Errorf("build root %s is writable by others (mode %v); chmod go-w it or choose another", root, st.Mode().Perm())
	}
	return os.MkdirTemp(root, name+"-*")
}

// removeAll removes a tree even where the build (or the archive) left
// directories without write permission, which stop os.RemoveAll for anyone
// but root.
func removeAll(dir string) error {
	if err := os.RemoveAll(dir); err == nil {
		return nil
	}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}
