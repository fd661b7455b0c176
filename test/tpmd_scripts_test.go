package test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"tpm/builder/buildertest"
	"tpm/cli"
	"tpm/fifo"
)

// TestTpmdScripts runs the scenarios of testdata/tpmd: real tpmd
// servers and clients (the binary built here), on loopback with ports the
// kernel picks, everything in each script's $WORK, driven by the real tpm.
func TestTpmdScripts(t *testing.T) {
	if testing.Short() {
		t.Skip("tpmd scenarios start real servers; skipped with -short")
	}
	bin := t.TempDir()
	// tpm too, as a file other users may run: a scenario drops privileges.
	out, err := exec.Command("go", "build", "-o", bin, "tpm/cmd/tpmd", "tpm/cmd/tpm").CombinedOutput()
	if err != nil {
		t.Fatalf("building tpmd and tpm: %v\n%s", err, out)
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	examples, err := filepath.Abs("../examples")
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/tpmd",
		RequireExplicitExec: true,
		Setup: func(e *testscript.Env) error {
			e.Setenv("EXAMPLES", examples)
			e.Setenv("BIN", bin)
			e.Setenv("PATH", bin+string(os.PathListSeparator)+e.Getenv("PATH"))
			e.Setenv("GORACE", "atexit_sleep_ms=0")
			// tpm and tpmd refuse the system's own directories: no
			// script may write to / (CI runs as root).
			e.Setenv(cli.GuardEnv, "1")
			return nil
		},
		Condition: func(cond string) (bool, error) {
			switch cond {
			case "root":
				return os.Geteuid() == 0, nil
			case "gnuhello":
				return buildertest.Enabled() && buildertest.Available() == nil, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"freeport": cmdFreeport,
			"waitfor":  cmdWaitfor,
			"mode":     cmdMode,
			"sigpid":   cmdSigpid,
			"traverse": cmdTraverse,
			"gnuhello": cmdGNUHello,
		},
	})
}

// cmdFreeport sets each named variable to a loopback port nobody listens on.
func cmdFreeport(ts *testscript.TestScript, neg bool, args []string) {
	for _, name := range args {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		ts.Check(err)
		ts.Setenv(name, fmt.Sprint(l.Addr().(*net.TCPAddr).Port))
		l.Close()
	}
}

// cmdGNUHello lays out GNU hello's source (from the host's Debian archive)
// as a Source package folder: gnuhello DIR. Guard it with [gnuhello].
func cmdGNUHello(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: gnuhello DIR")
	}
	pkg, version, err := buildertest.GNUHello(ts.MkAbs(args[0]))
	ts.Check(err)
	ts.Setenv("GNU_HELLO_PKG", pkg)
	ts.Setenv("GNU_HELLO_VERSION", version)
}

// cmdTraverse lets other users reach $WORK: it adds search permission to
// $WORK and to each of the test's own temporary folders above it (they are
// 0700), stopping at the system's temporary directory.
func cmdTraverse(ts *testscript.TestScript, neg bool, args []string) {
	stop := filepath.Clean(os.TempDir())
	for dir := ts.Getenv("WORK"); dir != stop && dir != "/" && strings.HasPrefix(dir, stop); dir = filepath.Dir(dir) {
		info, err := os.Stat(dir)
		ts.Check(err)
		ts.Check(os.Chmod(dir, info.Mode().Perm()|0o011))
	}
}

// cmdSigpid sends a signal (HUP, TERM, KILL) to the process whose pid file
// is named: testscript's own kill knows only INT and KILL.
func cmdSigpid(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: sigpid HUP|TERM|KILL PIDFILE")
	}
	sig := map[string]syscall.Signal{"HUP": syscall.SIGHUP, "TERM": syscall.SIGTERM, "KILL": syscall.SIGKILL}[args[0]]
	if sig == 0 {
		ts.Fatalf("unknown signal %s", args[0])
	}
	raw, err := os.ReadFile(ts.MkAbs(args[1]))
	ts.Check(err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	ts.Check(err)
	ts.Check(syscall.Kill(pid, sig))
}

// cmdWaitfor waits (20 s at most) until a URL answers 200 or a FIFO has a
// reader: waitfor http://127.0.0.1:$PORT/healthz | waitfor fifo PATH.
func cmdWaitfor(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 1 {
		ts.Fatalf("usage: waitfor URL | waitfor fifo PATH")
	}
	ready := func() bool {
		if args[0] == "fifo" {
			return fifo.Alive(ts.MkAbs(args[1]))
		}
		resp, err := http.Get(args[0])
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	deadline := time.Now().Add(20 * time.Second)
	for !ready() {
		if time.Now().After(deadline) {
			ts.Fatalf("%s not ready after 20s", strings.Join(args, " "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
