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

	"tpm/fifo"
)

// TestDaemonScripts runs the scenarios of testdata/daemon: real tpmd
// servers and clients (the binary built here), on loopback with ports the
// kernel picks, everything in each script's $WORK, driven by the real tpm.
func TestDaemonScripts(t *testing.T) {
	if testing.Short() {
		t.Skip("daemon scenarios start real servers; skipped with -short")
	}
	bin := t.TempDir()
	out, err := exec.Command("go", "build", "-o", bin, "tpm/cmd/tpmd").CombinedOutput()
	if err != nil {
		t.Fatalf("building tpmd: %v\n%s", err, out)
	}
	examples, err := filepath.Abs("../examples")
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/daemon",
		RequireExplicitExec: true,
		Setup: func(e *testscript.Env) error {
			e.Setenv("EXAMPLES", examples)
			e.Setenv("PATH", bin+string(os.PathListSeparator)+e.Getenv("PATH"))
			e.Setenv("GORACE", "atexit_sleep_ms=0")
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"freeport": cmdFreeport,
			"waitfor":  cmdWaitfor,
			"mode":     cmdMode,
			"sigpid":   cmdSigpid,
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
