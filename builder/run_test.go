package builder

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// stragglerMake is a recipe that starts a child in a session of its own
// (setsid: out of the step's process group), which writes its pid to
// $PIDFILE and sleeps; the recipe waits until it has, and ends.
const stragglerMake = "\tsetsid sh -c 'echo $$$$ > $$PIDFILE.tmp && mv $$PIDFILE.tmp $$PIDFILE; exec sleep 999' & while [ ! -e $$PIDFILE ]; do sleep 0.01; done; echo started\n"

// stragglerConfigure does the same from configure, and then hangs.
const stragglerConfigure = "#!/bin/sh\n" +
	"setsid sh -c 'echo $$ > $PIDFILE.tmp && mv $PIDFILE.tmp $PIDFILE; exec sleep 999' &\n" +
	"while [ ! -e $PIDFILE ]; do sleep 0.01; done\necho hanging\nexec sleep 999\n"

// straggler reads the pid a build's setsid child wrote, and kills that
// sleeper at the test's end whatever happens.
func straggler(t *testing.T, file string) int {
	t.Helper()
	pid := readPids(t, file)[0]
	t.Cleanup(func() {
		// Only the sleeper itself: its pid may be another's by now.
		if b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); string(b) == "sleep\x00999\x00" {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return pid
}

// assertNoneLeft checks, once the build has returned, that the straggler
// is gone, not even a zombie, and that this process (a subreaper, as tpmd
// is) has no zombie child.
func assertNoneLeft(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		state := "running"
		if processGone(pid) {
			state = "a zombie"
		}
		t.Errorf("the step's setsid child %d outlived the build: %s", pid, state)
	}
	if z := zombieChildren(t); len(z) != 0 {
		t.Errorf("zombie children of this process: %v", z)
	}
}

// zombieChildren lists the zombie children of this process.
func zombieChildren(t *testing.T) []int {
	t.Helper()
	names, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	self := strconv.Itoa(os.Getpid())
	var z []int
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[0] == "Z" && f[1] == self {
			pid, _ := strconv.Atoi(strings.Split(n, "/")[2])
			z = append(z, pid)
		}
	}
	return z
}

// A make step that starts a setsid child and succeeds leaves neither the
// child nor a zombie once the build is done.
func TestBuildStepLeavesNoSetsidChild(t *testing.T) {
	buildStray(t)
}

// buildStray builds a package whose make step starts a setsid child, with
// env added to the build's, and checks that neither the child nor a zombie
// is left.
func buildStray(t *testing.T, env ...string) {
	t.Helper()
	needTools(t, "make", "setsid")
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	spec := testSpec(t, sourcePackage(t, dir, "stray", map[string]string{
		"configure": okConfigure,
		"Makefile":  "all:\n" + stragglerMake + "install:\n\tmkdir -p $(DESTDIR)$(PREFIX)/share\n\techo hi > $(DESTDIR)$(PREFIX)/share/hi\n",
	}), "stray")
	spec.Env = append([]string{"PIDFILE=" + pidFile, "PREFIX=" + BucketPath(spec.Prefix, "stray")}, env...)
	if _, err := Build(context.Background(), spec, testLog(t)); err != nil {
		t.Fatal(err)
	}
	assertNoneLeft(t, straggler(t, pidFile))
}

// A configure that starts a setsid child and hangs past the build's
// timeout is killed, and its child with it, leaving no zombie.
func TestTimedOutStepLeavesNoSetsidChild(t *testing.T) {
	needTools(t, "setsid")
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	spec := testSpec(t, sourcePackage(t, dir, "hang", map[string]string{"configure": stragglerConfigure}), "hang")
	spec.Env = []string{"PIDFILE=" + pidFile}
	spec.Timeout = 2 * time.Second
	_, err := Build(context.Background(), spec, testLog(t))
	var be *BuildError
	if !errors.As(err, &be) || be.Step != StepConfigure || be.Why != "timed out after 2s" {
		t.Fatalf("error %v, want configure timing out", err)
	}
	assertNoneLeft(t, straggler(t, pidFile))
	assertCleanedUp(t, spec)
}

// The step's mark is the last word of its environment: Spec.Env cannot
// take a step out of the sweep.
func TestStepMarkCannotBeOverridden(t *testing.T) {
	buildStray(t, stepMarkVar+"=chosen")
}
