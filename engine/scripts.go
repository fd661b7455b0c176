package engine

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
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
func (e *Engine) runScript(ctx context.Context, prefix string, op *Op, name string, body []byte) error {
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
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s of %s: %w", name, op.Name, err)
	}
	last := readLines(out, func(line string) { e.opts.Output(op.Name, name, line) })
	err = cmd.Wait()
	if err == nil {
		return nil
	}
	why := err.Error()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		why = "timed out after " + e.opts.ScriptTimeout.String()
	}
	if last != "" {
		why += ": " + last
	}
	return fmt.Errorf("%s of %s %s failed (%s)", name, op.Name, op.Version, why)
}

// readLines passes each line of r to fn and returns the last non-empty one,
// which is what an error message shows.
func readLines(r io.Reader, fn func(string)) string {
	var last string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		fn(line)
		if strings.TrimSpace(line) != "" {
			last = line
		}
	}
	return last
}
