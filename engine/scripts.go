package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

const scriptDirPattern = ".script-*"

// runScript runs one maintainer script of op, if the package has it, with
// the prefix as working directory, the TPM_* variables, a timeout, and its
// output passed line by line to Options.Output. The whole process group is
// killed on timeout or cancel, so a script's children cannot outlive it.
func (e *Engine) runScript(ctx context.Context, h Hooks, prefix string, op *Op, name string, body []byte) error {
	if body == nil {
		return nil
	}
	dir, err := os.MkdirTemp(e.opts.StateDir, scriptDirPattern)
	if err != nil {
		return fmt.Errorf("%s of %s: %w", name, op.Name, err)
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, name)
	if err := os.WriteFile(file, body, 0o700); err != nil {
		return fmt.Errorf("%s of %s: %w", name, op.Name, err)
	}

	ctx, cancel := context.WithTimeout(ctx, e.opts.ScriptTimeout)
	defer cancel()
	var args []string
	switch op.Action {
	case Install, Remove:
		args = []string{op.Version}
	default:
		args = []string{op.OldVersion, op.Version}
	}
	cmd := exec.CommandContext(ctx, file, args...)
	cmd.Dir = prefix
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	cmd.Env = []string{
		"PATH=" + path,
		"TPM_PREFIX=" + prefix,
		"TPM_PACKAGE=" + op.Name,
		"TPM_VERSION=" + op.Version,
		"TPM_OLD_VERSION=" + op.OldVersion,
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	// A writer rather than a pipe we drain ourselves: a script that starts a
	// daemon leaves the output open in that child, and the script is judged
	// by its own exit status, with WaitDelay bounding the wait for its output.
	out := &lineWriter{emit: func(line string) { h.Output(op.Name, name, line) }}
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Run()
	out.flush()
	if err == nil || (errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState != nil && cmd.ProcessState.Success()) {
		return nil
	}
	why := err.Error()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		why = "timed out after " + e.opts.ScriptTimeout.String()
	}
	if out.last != "" {
		why += ": " + out.last
	}
	return fmt.Errorf("%s of %s %s failed (%s)", name, op.Name, op.Version, why)
}

// lineWriter passes each complete line written to it to emit, and keeps the
// last non-empty one for error messages. exec.Cmd writes to it from one
// goroutine at a time.
type lineWriter struct {
	emit    func(string)
	partial []byte
	last    string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.line(string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
	if len(w.partial) > 64<<10 {
		w.line(string(w.partial))
		w.partial = nil
	}
	return len(p), nil
}

func (w *lineWriter) flush() {
	if len(w.partial) > 0 {
		w.line(string(w.partial))
		w.partial = nil
	}
}

func (w *lineWriter) line(s string) {
	w.emit(s)
	if strings.TrimSpace(s) != "" {
		w.last = s
	}
}
