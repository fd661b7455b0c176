// Package test runs end-to-end scenarios: testscript files in testdata/ that
// drive the real tpm command (this test binary re-executed as tpm) in
// temporary directories.
package test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"tpm/cli"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){"tpm": tpmMain})
}

// tpmMain is cmd/tpm's main plus one test hook: TPM_TEST_CRASH_AFTER=N
// kills the process, without running any deferred cleanup, just before the
// Nth step of a transaction, the way a power cut or kill -9 would.
func tpmMain() {
	env := cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	if n, err := strconv.Atoi(os.Getenv("TPM_TEST_CRASH_AFTER")); err == nil {
		steps := 0
		env.Step = func(desc string) {
			steps++
			if steps == n {
				fmt.Fprintf(os.Stderr, "crashing before step %d: %s\n", n, desc)
				os.Exit(137)
			}
		}
	}
	os.Exit(cli.Main(context.Background(), os.Args[1:], env))
}

func TestScripts(t *testing.T) {
	examples, err := filepath.Abs("../examples")
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata",
		RequireExplicitExec: true,
		Setup: func(e *testscript.Env) error {
			e.Setenv("EXAMPLES", examples)
			e.Setenv("ARCH", hostArch())
			// tpm refuses the system's own directories: no script may
			// install into / (CI runs as root).
			e.Setenv(cli.GuardEnv, "1")
			// A binary built with -race sleeps a second when it exits 0,
			// waiting for late race reports; with a few hundred tpm runs
			// that would be minutes. Reports still fail the run (exit 66).
			e.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
			return nil
		},
		Condition: func(cond string) (bool, error) {
			switch cond {
			case "root":
				return os.Geteuid() == 0, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"mktpkg":    cmdMktpkg,
			"mode":      cmdMode,
			"mtime":     cmdMtime,
			"repeat":    cmdRepeat,
			"lockdb":    cmdLockdb,
			"unlockdb":  cmdUnlockdb,
			"jsonlines": cmdJSONLines,
		},
	})
}

func hostArch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	}
	return runtime.GOARCH
}

// cmdMktpkg writes a .tpkg with arbitrary, possibly hostile, entries that
// tpm pack would never produce:
//
//	mktpkg [-raw] [-truncate N] [-manifest JSON] OUT ENTRY...
//
// ENTRY is TYPE:NAME[=VALUE]: file:data/x=content, dir:data/d,
// symlink:data/l=target, hardlink:data/h=data/x, char:data/c, block:data/b,
// fifo:data/f, exec:info/postinstall=script. A valid info/package.json
// (name "evil", version 1.0) comes first unless -manifest replaces it or
// -raw leaves it out. -truncate N cuts the compressed file to N bytes.
func cmdMktpkg(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! mktpkg")
	}
	manifest := `{"Name":"evil","Version":"1.0","Architecture":"any","Type":"Binary"}`
	raw, truncate := false, -1
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "-raw":
			raw = true
			args = args[1:]
		case "-truncate":
			n, err := strconv.Atoi(args[1])
			ts.Check(err)
			truncate = n
			args = args[2:]
		case "-manifest":
			manifest = args[1]
			args = args[2:]
		default:
			ts.Fatalf("mktpkg: unknown flag %s", args[0])
		}
	}
	if len(args) < 1 {
		ts.Fatalf("usage: mktpkg [-raw] [-truncate N] [-manifest JSON] OUT ENTRY...")
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	write := func(h *tar.Header, body string) {
		h.Size = int64(len(body))
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		ts.Check(tw.WriteHeader(h))
		if h.Size > 0 {
			_, err := tw.Write([]byte(body))
			ts.Check(err)
		}
	}
	if !raw {
		write(&tar.Header{Name: "info/", Typeflag: tar.TypeDir, Mode: 0o755}, "")
		write(&tar.Header{Name: "info/package.json", Typeflag: tar.TypeReg, Mode: 0o644}, manifest)
		write(&tar.Header{Name: "data/", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	}
	for _, spec := range args[1:] {
		kind, rest, ok := strings.Cut(spec, ":")
		if !ok {
			ts.Fatalf("mktpkg: entry %q is not TYPE:NAME[=VALUE]", spec)
		}
		name, value, _ := strings.Cut(rest, "=")
		h := &tar.Header{Name: name, Mode: 0o644}
		switch kind {
		case "file":
			h.Typeflag = tar.TypeReg
		case "exec":
			h.Typeflag, h.Mode = tar.TypeReg, 0o755
		case "suid":
			h.Typeflag, h.Mode = tar.TypeReg, 0o4755
		case "dir":
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		case "symlink":
			h.Typeflag, h.Linkname = tar.TypeSymlink, value
		case "hardlink":
			h.Typeflag, h.Linkname = tar.TypeLink, value
		case "char":
			h.Typeflag = tar.TypeChar
		case "block":
			h.Typeflag = tar.TypeBlock
		case "fifo":
			h.Typeflag = tar.TypeFifo
		default:
			ts.Fatalf("mktpkg: unknown entry type %q", kind)
		}
		write(h, value)
	}
	ts.Check(tw.Close())
	ts.Check(gz.Close())
	out := buf.Bytes()
	if truncate >= 0 && truncate < len(out) {
		out = out[:truncate]
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), out, 0o644))
}

// cmdMode prints, one line per PATH, the octal permission bits of the path
// itself (not of a symlink's target), setuid, setgid and sticky included:
//
//	mode PATH...
//
// prints 0755, 4755, 0750, …
func cmdMode(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! mode")
	}
	if len(args) == 0 {
		ts.Fatalf("usage: mode PATH...")
	}
	for _, p := range args {
		info, err := os.Lstat(ts.MkAbs(p))
		ts.Check(err)
		m := info.Mode()
		bits := uint32(m.Perm())
		if m&fs.ModeSetuid != 0 {
			bits |= 0o4000
		}
		if m&fs.ModeSetgid != 0 {
			bits |= 0o2000
		}
		if m&fs.ModeSticky != 0 {
			bits |= 0o1000
		}
		fmt.Fprintf(ts.Stdout(), "%04o\n", bits)
	}
}

// cmdMtime sets the access and modification times of each PATH (not
// following symlinks) to UNIX seconds, like touch -h -d @UNIX:
//
//	mtime UNIX PATH...
func cmdMtime(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! mtime")
	}
	if len(args) < 2 {
		ts.Fatalf("usage: mtime UNIX PATH...")
	}
	secs, err := strconv.ParseInt(args[0], 10, 64)
	ts.Check(err)
	t := time.Unix(secs, 0)
	for _, p := range args[1:] {
		ts.Check(os.Chtimes(ts.MkAbs(p), t, t))
	}
}

// cmdRepeat sets the environment variable VAR to STRING repeated N times,
// for names and link targets too long to write out:
//
//	repeat VAR N STRING
func cmdRepeat(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! repeat")
	}
	if len(args) != 3 {
		ts.Fatalf("usage: repeat VAR N STRING")
	}
	n, err := strconv.Atoi(args[1])
	ts.Check(err)
	ts.Setenv(args[0], strings.Repeat(args[2], n))
}

// locks are the files lockdb holds, by absolute path, per script.
var locks sync.Map // *testscript.TestScript → map[string]*os.File

func heldLocks(ts *testscript.TestScript) map[string]*os.File {
	m, _ := locks.LoadOrStore(ts, make(map[string]*os.File))
	return m.(map[string]*os.File)
}

// cmdLockdb takes the exclusive flock that bbolt takes on a database file,
// the way a running daemon holding the state database would, and keeps it
// until unlockdb PATH or the end of the script:
//
//	lockdb PATH
func cmdLockdb(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! lockdb")
	}
	if len(args) != 1 {
		ts.Fatalf("usage: lockdb PATH")
	}
	p := ts.MkAbs(args[0])
	held := heldLocks(ts)
	if held[p] != nil {
		ts.Fatalf("lockdb: %s is already locked", p)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	ts.Check(err)
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		ts.Fatalf("lockdb %s: %v", p, err)
	}
	held[p] = f
	ts.Defer(func() {
		if held[p] == f {
			delete(held, p)
			f.Close()
		}
		if len(held) == 0 {
			locks.Delete(ts)
		}
	})
}

// cmdUnlockdb releases a lock taken by lockdb:
//
//	unlockdb PATH
func cmdUnlockdb(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! unlockdb")
	}
	if len(args) != 1 {
		ts.Fatalf("usage: unlockdb PATH")
	}
	p := ts.MkAbs(args[0])
	held := heldLocks(ts)
	f := held[p]
	if f == nil {
		ts.Fatalf("unlockdb: %s is not locked", p)
	}
	delete(held, p)
	ts.Check(f.Close())
}

// cmdJSONLines checks that FILE (or stdout, or stderr) is JSON lines: at
// least one line, and every line one JSON object:
//
//	jsonlines FILE
func cmdJSONLines(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: jsonlines FILE")
	}
	text := ts.ReadFile(args[0])
	err := checkJSONLines(text)
	switch {
	case err != nil && !neg:
		ts.Fatalf("%s is not JSON lines: %v", args[0], err)
	case err == nil && neg:
		ts.Fatalf("%s is JSON lines, unexpectedly", args[0])
	}
}

func checkJSONLines(text string) error {
	if text == "" {
		return fmt.Errorf("it is empty")
	}
	if !strings.HasSuffix(text, "\n") {
		return fmt.Errorf("the last line has no newline")
	}
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		var obj map[string]any
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			return fmt.Errorf("line %d %q: %v", i+1, line, err)
		}
	}
	return nil
}
