package builder

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// drainGrace is how long the output is still read once a step's process
// group is dead: only a process that left the group (setsid) can hold the
// pipe open longer, and the build does not wait for it.
const drainGrace = 2 * time.Second

// maxLine cuts lines without a newline, so that a binary blob on stdout
// cannot grow memory without bound.
const maxLine = 64 << 10

// umaskWrapper runs the step with umask 022 whatever the daemon's umask, so
// the bucket's files are readable through the farm by everyone.
const umaskWrapper = `umask 022 && exec "$0" "$@"`

// runStep runs argv in dir, in its own process group, passing each output
// line (stdout and stderr together) to out. It returns once the process has
// exited and every process of its group is killed, so that a step leaves
// nothing running behind it, whether it succeeded, failed or was stopped by
// ctx.
func runStep(ctx context.Context, dir string, env, argv []string, out *output) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cmd := exec.Command("/bin/sh", append([]string{"-c", umaskWrapper}, argv...)...)
	cmd.Dir = dir
	cmd.Env = env
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
	pgid := cmd.Process.Pid

	read := make(chan struct{})
	go func() {
		defer close(read)
		out.readFrom(r)
	}()

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
	// test suite forgot) goes with it.
	syscall.Kill(-pgid, syscall.SIGKILL)
	close(exited)
	<-killer
	err = cmd.Wait()

	r.SetReadDeadline(time.Now().Add(drainGrace))
	<-read
	out.flushFile()
	return err
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
