// Package testenv is what the end-to-end test packages share: the tpmd
// binary they run, its processes with their logs, and free loopback ports.
package testenv

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// GuardEnv is cli.GuardEnv: set, tpm and tpmd refuse the system's own
// directories (/var/lib/tpm, /, /run/tpm, ...), so a test that forgets to
// name its own cannot write there (CI runs as root).
const GuardEnv = "TPM_TEST_GUARD"

// Main builds tpmd with buildFlags (-race, say) and its test hooks (the
// tpmd_testhooks build tag: --test-kill-at-step) into a temporary folder,
// sets *bin to it, runs the tests with GuardEnv set (every process they
// start inherits it) and exits with their code.
func Main(m *testing.M, bin *string, buildFlags ...string) {
	if err := os.Setenv(GuardEnv, "1"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "tpmd-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*bin = filepath.Join(dir, "tpmd")
	args := append(append([]string{"build", "-tags", "tpmd_testhooks"}, buildFlags...), "-o", *bin, "tpm/cmd/tpmd")
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building tpmd: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// LogBuffer collects a process's output; it may be read while written.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// FreeAddr returns a loopback address with a port free right now, for a
// daemon whose URL must be known before it starts.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Proc is a running tpmd, killed when the test ends; its log is shown when
// the test failed, and a data race in it fails the test.
type Proc struct {
	Cmd  *exec.Cmd
	Logs *LogBuffer
	done chan error
}

// Start runs bin with args (args[0] names it in messages: server, client).
func Start(t testing.TB, bin string, args ...string) *Proc {
	t.Helper()
	p := &Proc{Cmd: exec.Command(bin, args...), Logs: &LogBuffer{}, done: make(chan error, 1)}
	p.Cmd.Stdout, p.Cmd.Stderr = p.Logs, p.Logs
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.Cmd.Wait() }()
	t.Cleanup(func() {
		p.Kill()
		if strings.Contains(p.Logs.String(), "DATA RACE") {
			t.Errorf("tpmd %s: the race detector found a data race", args[0])
		}
		if t.Failed() {
			t.Logf("tpmd %s log:\n%s", args[0], p.Logs)
		}
	})
	return p
}

// Wait waits up to limit for the process to exit and says whether it did,
// and with what.
func (p *Proc) Wait(limit time.Duration) (bool, error) {
	select {
	case err := <-p.done:
		p.done <- err
		return true, err
	case <-time.After(limit):
		return false, nil
	}
}

// Exited says whether the process has exited, and with what.
func (p *Proc) Exited() (bool, error) {
	select {
	case err := <-p.done:
		p.done <- err
		return true, err
	default:
		return false, nil
	}
}

// Stop sends SIGTERM and returns how long the process took to exit, and
// what it exited with; it fails the test after 15 s.
func (p *Proc) Stop(t testing.TB) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	p.Cmd.Process.Signal(syscall.SIGTERM)
	exited, err := p.Wait(15 * time.Second)
	if !exited {
		t.Fatalf("did not stop within 15 s of SIGTERM\n%s", p.Logs)
	}
	return time.Since(start), err
}

// Kill kills the process and waits for it.
func (p *Proc) Kill() {
	p.Cmd.Process.Signal(syscall.SIGKILL)
	p.Wait(time.Hour)
}
