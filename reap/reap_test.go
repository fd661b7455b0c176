package reap

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// start runs script under /bin/sh as a run's first process, in a process
// group of its own with the run's mark, as the engine and the builder do.
func start(t *testing.T, run *Run, script string) *exec.Cmd {
	t.Helper()
	if err := Subreaper(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), run.Env()}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	run.Started(cmd.Process.Pid)
	return cmd
}

// detached starts a child that leaves the group and the session (setsid),
// writes its pid to file and sleeps; in waits until it has.
func detached(file string) string {
	return "setsid sh -c 'echo $$ > " + file + ".tmp && mv " + file + ".tmp " + file + "; exec sleep 999' &\n" +
		"while [ ! -e " + file + " ]; do sleep 0.01; done\n"
}

// inGroup starts a child that stays in the group, writes its pid to file
// and sleeps; it waits until it has.
func inGroup(file string) string {
	return "sh -c 'echo $$ > " + file + ".tmp && mv " + file + ".tmp " + file + "; exec sleep 999' &\n" +
		"while [ ! -e " + file + " ]; do sleep 0.01; done\n"
}

// readPid reads a pid a child wrote, and kills that sleeper at the test's
// end whatever happens.
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
		if b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); string(b) == "sleep\x00999\x00" {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return pid
}

// exists says whether pid is a process, a zombie included.
func exists(pid int) bool {
	return !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// zombies lists the zombie children of this process.
func zombies(t *testing.T) []int {
	t.Helper()
	procs, err := processes(0)
	if err != nil {
		t.Fatal(err)
	}
	var z []int
	for _, p := range procs {
		if p.ppid == os.Getpid() && p.zombie {
			z = append(z, p.pid)
		}
	}
	return z
}

func killCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestKillTakesEveryProcessOfTheRun: a run killed as a timeout kills it
// (its group first, then Kill) leaves nothing: not its setsid child, not
// the child in its group, and no zombie of ours, though both were
// re-parented to us.
func TestKillTakesEveryProcessOfTheRun(t *testing.T) {
	dir := t.TempDir()
	run, err := New("TPM_TEST_RUN")
	if err != nil {
		t.Fatal(err)
	}
	away, near := filepath.Join(dir, "away"), filepath.Join(dir, "near")
	cmd := start(t, run, detached(away)+inGroup(near)+"echo ready > "+filepath.Join(dir, "ready")+"\nexec sleep 999\n")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(dir, "ready")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the run did not start its children")
		}
	}
	pids := []int{readPid(t, away), readPid(t, near)}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // what a timeout does
	cmd.Wait()
	if err := run.Kill(killCtx(t)); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if exists(pid) {
			t.Errorf("process %d of the run is still there (or a zombie)", pid)
		}
	}
	if z := zombies(t); len(z) != 0 {
		t.Errorf("zombies left: %v", z)
	}
}

// TestReapLeftoversLeavesDaemonRunning: what a run that ended by itself
// left running stays running, and is reaped, not left a zombie, once it
// exits.
func TestReapLeftoversLeavesDaemonRunning(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pid")
	run, err := New("TPM_TEST_RUN")
	if err != nil {
		t.Fatal(err)
	}
	cmd := start(t, run, detached(file))
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	run.ReapLeftovers()
	pid := readPid(t, file)
	if !exists(pid) {
		t.Fatal("the daemon was killed")
	}
	syscall.Kill(pid, syscall.SIGKILL)
	for deadline := time.Now().Add(10 * time.Second); exists(pid); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon %d stays a zombie", pid)
		}
	}
}

// TestKillLeavesOthersChildren: a child another exec.Cmd waits for, exited
// and not yet waited for, is neither killed nor reaped by a run's Kill,
// and a running child of another run is left running.
func TestKillLeavesOthersChildren(t *testing.T) {
	other, err := New("TPM_TEST_RUN")
	if err != nil {
		t.Fatal(err)
	}
	running := start(t, other, "exec sleep 999")
	t.Cleanup(func() { running.Process.Kill(); running.Wait() })
	exited := start(t, other, "exit 7")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if p, err := readStat(exited.Process.Pid); err == nil && p.zombie {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the child did not exit")
		}
	}
	run, err := New("TPM_TEST_RUN")
	if err != nil {
		t.Fatal(err)
	}
	cmd := start(t, run, "exit 0")
	cmd.Wait()
	if err := run.Kill(killCtx(t)); err != nil {
		t.Fatal(err)
	}
	run.ReapLeftovers()
	var exit *exec.ExitError
	if err := exited.Wait(); !errors.As(err, &exit) || exit.ExitCode() != 7 {
		t.Fatalf("another's exited child: Wait says %v, want exit status 7", err)
	}
	if p, err := readStat(running.Process.Pid); err != nil || p.zombie {
		t.Fatalf("another run's child was killed: %+v, %v", p, err)
	}
}
