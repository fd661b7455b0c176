package engine

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// installWithScripts installs one package with the given scripts into a
// fresh prefix and returns Apply's error.
func installWithScripts(t *testing.T, timeout time.Duration, scripts map[string]string, output func(pkg, step, line string)) error {
	t.Helper()
	dir := t.TempDir()
	state, prefix := filepath.Join(dir, "state"), filepath.Join(dir, "root")
	archive := writePackage(t, t.TempDir(), pkgSpec{name: "s", version: "1.0", files: map[string]string{"usr/share/s/s.txt": "s\n"}, scripts: scripts})
	ctx := context.Background()
	e, _, err := Open(ctx, Options{StateDir: state, BuildRoot: buildRootFor(state), ScriptTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	changeset, _, err := e.PrepareInstall(ctx, InstallRequest{Prefix: prefix, Archives: []Archive{{Path: archive}}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.Apply(ctx, changeset, Hooks{Output: output})
	return err
}

// TestScriptOutputIsStreamedInBoundedMemory: 200 MB of output (200,000
// lines, then one 3 MB line without a newline) reach the Output hook line by
// line while the heap stays far below the output's size.
func TestScriptOutputIsStreamedInBoundedMemory(t *testing.T) {
	const lines, lineLen = 200_000, 1000
	script := "#!/bin/sh\n" +
		`yes "$(head -c ` + strconv.Itoa(lineLen-1) + ` /dev/zero | tr '\0' x)" | head -n ` + strconv.Itoa(lines) + "\n" +
		"head -c 3000000 /dev/zero | tr '\\0' y\necho\necho done\n"
	runtime.GC()
	var before, now runtime.MemStats
	runtime.ReadMemStats(&before)
	var peak uint64
	var got, cut int
	var last string
	err := installWithScripts(t, time.Minute, map[string]string{"postinstall": script}, func(pkg, step, line string) {
		switch {
		case strings.HasSuffix(line, cutMark):
			cut++
			if len(line) != maxScriptLine+len(cutMark) || strings.Trim(line[:maxScriptLine], "y") != "" {
				t.Errorf("cut line: %d bytes, %q…", len(line), line[:20])
			}
		case len(line) == lineLen-1:
			got++
		}
		last = line
		if (got+cut)%2000 == 0 {
			runtime.ReadMemStats(&now)
			peak = max(peak, now.HeapInuse)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if got != lines || cut != 1 || last != "done" {
		t.Fatalf("Output saw %d lines of %d bytes (want %d), %d cut lines (want 1), last %q", got, lineLen-1, lines, cut, last)
	}
	const bound = 64 << 20
	if peak > before.HeapInuse+bound {
		t.Fatalf("heap in use grew from %d to %d bytes while a script wrote 200 MB", before.HeapInuse, peak)
	}
	t.Logf("heap in use: %d before, %d at most during", before.HeapInuse, peak)
}

// TestScriptOutputTailInError: a failing script's error names its last
// non-empty line, cut to a bounded length.
func TestScriptOutputTailInError(t *testing.T) {
	script := "#!/bin/sh\necho first\nhead -c 5000 /dev/zero | tr '\\0' z\necho\necho\nexit 3\n"
	err := installWithScripts(t, time.Minute, map[string]string{"preinstall": script}, nil)
	if err == nil {
		t.Fatal("a failing preinstall succeeded")
	}
	want := "preinstall of s 1.0 failed (exit status 3: " + strings.Repeat("z", maxLastLine) + "…)"
	if err.Error() != want {
		t.Fatalf("error %.100q…, want %.100q…", err, want)
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("error %T does not wrap the exit status", err)
	}
}

// waitGone waits until process pid no longer exists (reaped, not a zombie).
func waitGone(t *testing.T, pid int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := syscall.Kill(pid, 0)
		if errors.Is(err, syscall.ESRCH) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d still exists %v later (kill 0: %v)", pid, within, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readPid reads the pid a script's child wrote, and makes sure the test
// leaves no such process behind whatever happens.
func readPid(t *testing.T, file string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		t.Fatalf("pid file: %q", b)
	}
	t.Cleanup(func() {
		// Only the sleeper itself: its pid may be another's by now.
		if b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); string(b) == "sleep\x00999\x00" {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return pid
}

// detached starts a child in a session of its own (out of the script's
// process group) that writes its pid to file and sleeps, and waits until
// it has.
func detached(file string) string {
	return "setsid sh -c 'echo $$ > " + file + ".tmp && mv " + file + ".tmp " + file + "; exec sleep 999' &\n" +
		"while [ ! -e " + file + " ]; do sleep 0.01; done\n"
}

// TestTimedOutScriptLeavesNoDescendant: a preinstall that starts a setsid
// child and hangs is killed at the script timeout, and the child with it.
func TestTimedOutScriptLeavesNoDescendant(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	script := "#!/bin/sh\n" + detached(pidFile) + "echo hanging\nsleep 999\n"
	err := installWithScripts(t, 3*time.Second, map[string]string{"preinstall": script}, nil)
	if err == nil || !strings.Contains(err.Error(), "timed out after 3s") {
		t.Fatalf("Apply: %v, want a timeout", err)
	}
	waitGone(t, readPid(t, pidFile), 10*time.Second)
}

// TestDaemonOfSuccessfulScriptIsReaped: what a successful script leaves
// running stays running (a daemon it started), and once it exits it is
// reaped, not left a zombie of this process (a subreaper).
func TestDaemonOfSuccessfulScriptIsReaped(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	script := "#!/bin/sh\n" + detached(pidFile) + "echo started\n"
	if err := installWithScripts(t, time.Minute, map[string]string{"postinstall": script}, nil); err != nil {
		t.Fatal(err)
	}
	pid := readPid(t, pidFile)
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("the daemon a successful script started is gone: %v", err)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	waitGone(t, pid, 10*time.Second)
}
