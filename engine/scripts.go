package engine

import (
	"bufio"
	"bytes"
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

	"tpm/reap"
)

const scriptDirPattern = ".script-*"

// scriptMarkVar is set, to a value of its own, in the environment of every
// maintainer script, so the processes a script started can be told from
// every other process once they have left its process group and session
// (setsid) and lost their parent.
const scriptMarkVar = "TPM_SCRIPT_RUN"

// runScript runs one maintainer script of op, if the package has it, with
// the prefix as working directory, the TPM_* variables, a timeout, and its
// output passed line by line to Hooks.Output as it comes (a bounded buffer,
// long lines cut). On timeout or cancel the process group is killed, and
// then every process the script started, those that left the group with
// setsid included, so a script's children cannot outlive it.
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
	run, err := reap.New(scriptMarkVar)
	if err != nil {
		return fmt.Errorf("%s of %s: %w", name, op.Name, err)
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
		run.Env(),
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out := &scriptOutput{emit: func(line string) { h.Output(op.Name, name, line) }}
	err = runScriptProcess(ctx, cmd, out, run)
	if err == nil {
		return nil
	}
	why := err.Error()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		why = "timed out after " + e.opts.ScriptTimeout.String()
	}
	if out.last != "" {
		why += ": " + out.last
	}
	return &scriptError{msg: fmt.Sprintf("%s of %s %s failed (%s)", name, op.Name, op.Version, why), err: err}
}

// scriptError says which script failed and why in one line, the cause
// (exit status, the sweep's failure) wrapped and already said in it.
type scriptError struct {
	msg string
	err error
}

func (e *scriptError) Error() string { return e.msg }
func (e *scriptError) Unwrap() error { return e.err }

// scriptDrainGrace is how long a script's output is still read once the
// script has exited: a daemon it started may hold the pipe open for ever,
// and the script is judged by its own exit status.
const scriptDrainGrace = 2 * time.Second

// sweepLimit bounds the sweep of a killed script's descendants.
const sweepLimit = 5 * time.Second

// runScriptProcess runs cmd with its output (stdout and stderr together)
// read line by line into out, and returns cmd's error. A script stopped by
// its context (timeout, cancel) has its process group killed by cmd.Cancel;
// then every process it started is killed too, those that left the group
// included (see reap.Run.Kill). What a script that exited by itself
// leaves running (a daemon it started) is left running, and reaped when it
// exits.
func runScriptProcess(ctx context.Context, cmd *exec.Cmd, out *scriptOutput, run *reap.Run) error {
	// Where this fails (no prctl), the sweep still kills what it finds by
	// its mark; only the reaping of re-parented processes is lost.
	_ = reap.Subreaper()
	// A pipe we read ourselves rather than a Writer: exec would then wait
	// for the copy to end, which a daemon holding the pipe delays for ever.
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("output pipe: %w", err)
	}
	defer r.Close()
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Start()
	w.Close()
	if err != nil {
		return err
	}
	run.Started(cmd.Process.Pid)
	read := make(chan struct{})
	go func() {
		defer close(read)
		out.readFrom(r)
	}()
	err = cmd.Wait()
	if ctx.Err() != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sweepLimit)
		serr := run.Kill(sctx)
		cancel()
		if serr != nil {
			err = fmt.Errorf("%w; %w", err, serr)
		}
	} else {
		run.ReapLeftovers()
	}
	r.SetReadDeadline(time.Now().Add(scriptDrainGrace))
	<-read
	return err
}

// maxScriptLine is the longest line passed on whole: past it a line is
// cut, marked, and the rest of it up to its newline dropped, so a script's
// output costs a bounded buffer however it is shaped.
const maxScriptLine = 64 << 10

// cutMark ends a line cut at maxScriptLine.
const cutMark = " [line cut at 64 KiB]"

// maxLastLine bounds the line kept for the error message.
const maxLastLine = 300

// scriptOutput passes each line of a script's output to emit as it is read,
// and keeps only the last non-empty one (cut to maxLastLine) for the error
// message: never the whole output. Only its reader goroutine uses it until
// flush.
type scriptOutput struct {
	emit    func(string)
	last    string
	cutting bool // the line being read was cut: drop up to its newline
}

func (o *scriptOutput) readFrom(r io.Reader) {
	br := bufio.NewReaderSize(r, maxScriptLine)
	for {
		chunk, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			if !o.cutting {
				o.line(string(chunk) + cutMark)
				o.cutting = true
			}
			continue
		case o.cutting:
			// The end of a line already passed on cut.
			o.cutting = false
		case len(chunk) > 0:
			chunk = bytes.TrimSuffix(chunk, []byte("\n"))
			o.line(string(bytes.TrimSuffix(chunk, []byte("\r"))))
		}
		if err != nil {
			return
		}
	}
}

func (o *scriptOutput) line(s string) {
	o.emit(s)
	if t := strings.TrimSpace(s); t != "" {
		if len(t) > maxLastLine {
			cut := maxLastLine
			for cut > 0 && t[cut]&0xc0 == 0x80 {
				cut--
			}
			t = t[:cut] + "…"
		}
		// A copy: t may share the long line's memory.
		o.last = strings.Clone(t)
	}
}
