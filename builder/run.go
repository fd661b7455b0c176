package builder

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"tpm/reap"
)

// drainGrace is how long the output is still read once every process of
// a step is dead: only a process that cleared its environment and left
// the group can hold the pipe open longer, and the build does not wait for
// it.
const drainGrace = 2 * time.Second

// maxLine cuts lines without a newline, so that a binary blob on stdout
// cannot grow memory without bound.
const maxLine = 64 << 10

// umaskWrapper runs the step with umask 022 whatever the daemon's umask, so
// the bucket's files are readable through the farm by everyone.
const umaskWrapper = `umask 022 && exec "$0" "$@"`

// stepMarkVar is set, to a value of each step's own, in the environment of
// every build step, so that what a step started is found once it has left
// the step's process group and session (setsid) and lost its parent.
const stepMarkVar = "TPM_BUILD_RUN"

// sweepLimit bounds the sweep of what a step left behind.
const sweepLimit = 5 * time.Second

// runStep runs argv in dir, in its own process group, passing each output
// line (stdout and stderr together) to out. It returns once the process has
// exited and every process it started is killed and reaped, those that
// left its group with setsid included, so that a step leaves nothing
// running behind it, nor a zombie of this process (a subreaper), whether it
// succeeded, failed or was stopped by ctx.
func runStep(ctx context.Context, dir string, env, argv []string, out *output) error {
	run, err := reap.New(stepMarkVar)
	if err != nil {
		return err
	}
	// Where this fails (no prctl), the sweep still kills what it finds by
	// its mark; only the reaping of re-parented processes is lost.
	_ = reap.Subreaper()
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cmd := exec.Command("/bin/sh", append([]string{"-c", umaskWrapper}, argv...)...)
	cmd.Dir = dir
	// The mark last: Spec.Env cannot override it.
	cmd.Env = append(slices.Clip(env), run.Env())
	// An *os.File, not a Writer: exec then starts no copying goroutine that
	// Wait would wait for, and we decide how long to read after the group
	// is gone.
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
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
	serr := killStep(ctx, cmd.Process.Pid, run)
	err = cmd.Wait()
	if serr != nil {
		if err == nil {
			// Built, but something of it could not be killed: say so, and
			// carry on, as a stuck process holds nothing of the build.
			out.emit(out.step, "cleanup: "+serr.Error())
		} else {
			err = fmt.Errorf("%w; %w", err, serr)
		}
	}

	r.SetReadDeadline(time.Now().Add(drainGrace))
	<-read
	out.flushFile()
	return err
}

// killStep waits until the step's first process, pgid, has exited (killing
// its group if ctx ends first), then kills its group and every process the
// step started, and reaps them; pgid is left for cmd.Wait to reap.
func killStep(ctx context.Context, pgid int, run *reap.Run) error {
	// Signals go to the group only while its leader is not reaped yet (a
	// zombie at worst): until then its pid, the group id, cannot be reused by
	// an unrelated process.
	exited := make(chan struct{})
	killer := make(chan struct{})
	go func() {
		defer close(killer)
		select {
		case <-ctx.Done():
			syscall.Kill(-pgid, syscall.SIGKILL)
		case <-exited:
		}
	}()
	waitExited(pgid)
	// What the step left in its group (make's background jobs, a daemon a
	// test suite forgot) goes with it, and then what left the group.
	syscall.Kill(-pgid, syscall.SIGKILL)
	close(exited)
	<-killer
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sweepLimit)
	defer cancel()
	return run.Kill(sctx)
}

// waitExited blocks until process pid has exited, without reaping it.
func waitExited(pid int) {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			// On any other error cmd.Wait still reaps it; only the killing
			// of stragglers before the reap is lost.
			return
		}
	}
}

// output passes a build's lines to its LogFunc and the log file, and keeps the
// tail for errors. Only one goroutine uses it at a time: the builder between
// steps, a step's reader during it.
type output struct {
	log      func(step, line string)
	file     *bufio.Writer
	step     string
	stepLast string   // last non-empty line of the current step
	tail     []string // ring of the last TailLines lines
	next     int
}

// startStep begins a step's output with its command line.
func (o *output) startStep(step, header string) {
	o.step = step
	o.stepLast = ""
	o.emit(step, header)
}

// emit sends a line of the builder's own (not a step's output).
func (o *output) emit(step, line string) {
	if o.log != nil {
		o.log(step, line)
	}
	if o.file != nil {
		o.file.WriteString(line)
		o.file.WriteByte('\n')
	}
}

// line sends a line of the current step's output.
func (o *output) line(s string) {
	s = strings.TrimSuffix(s, "\r")
	o.emit(o.step, s)
	if len(o.tail) < TailLines {
		o.tail = append(o.tail, s)
	} else {
		o.tail[o.next] = s
		o.next = (o.next + 1) % TailLines
	}
	// make's own "*** [Makefile:3: all] Error 1" and directory lines say
	// less than the compiler's error before them.
	if t := strings.TrimSpace(s); t != "" && (o.stepLast == "" || !makeNoise.MatchString(t)) {
		o.stepLast = oneLine(t)
	}
}

// makeNoise matches the lines make prints about itself when a recipe fails.
var makeNoise = regexp.MustCompile(`^g?make(\[\d+\])?: (\*\*\* |Leaving directory|Entering directory)`)

func (o *output) readFrom(r io.Reader) {
	br := bufio.NewReaderSize(r, maxLine)
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			o.line(string(bytes.TrimSuffix(chunk, []byte("\n"))))
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

func (o *output) flushFile() {
	if o.file != nil {
		o.file.Flush()
	}
}

func (o *output) tailLines() []string {
	t := make([]string, 0, len(o.tail))
	t = append(t, o.tail[o.next:]...)
	return append(t, o.tail[:o.next]...)
}

// oneLine keeps an output line fit for a one-line error message: no control
// characters and a bounded length.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	s = strings.ToValidUTF8(s, "?")
	if len(s) > 300 {
		cut := 300
		for cut > 0 && s[cut]&0xc0 == 0x80 {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
