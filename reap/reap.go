// Package reap finds, kills and reaps what a command left behind: the
// processes a maintainer script or a build step started that outlive it,
// those that left its process group and session (setsid) included.
//
// The process becomes a child subreaper (Subreaper), so an orphan below
// any of its children is re-parented to it rather than to init; each run
// marks its processes with a variable of its own in their environment and
// leads a process group of its own; Kill then kills every process of the
// run, by mark or by group, and reaps those that are, or become, its
// children. A process that clears its environment and leaves the group
// escapes; nothing short of a cgroup catches that.
//
// The package reaps only zombies it can tell from the children that
// os/exec waits for: those of the run, and orphans (a session or process
// group not led by themselves nor ours), which no exec.Cmd of this program
// can be, since it starts none with Setsid. A program that does must not
// use this package.
package reap

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// poll is how often Kill looks at /proc again while what it killed is
// still exiting.
const poll = 5 * time.Millisecond

// The prctl is process-wide and lasts until exit, so whether it was made
// is too: this is the one state the package keeps.
var (
	subreaperOnce sync.Once
	subreaperErr  error
)

// Subreaper makes this process a child subreaper, once. An orphan below
// any child of this process (a script's setsid daemon, a build step's
// straggler) is then re-parented to it instead of to init, so Kill finds
// it among its own children and can kill it without racing pid reuse (a
// child's pid is not reused until it is reaped). What is re-parented this
// way must be reaped by this process: Kill reaps what it kills,
// ReapLeftovers what a run leaves running.
func Subreaper() error {
	subreaperOnce.Do(func() {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			subreaperErr = fmt.Errorf("becoming a child subreaper: %w", err)
		}
	})
	return subreaperErr
}

// Run is one run of a command: the mark its processes carry and, once
// Started, its process group and start time.
type Run struct {
	env   string // NAME=VALUE
	mark  []byte // how env appears inside /proc/PID/environ
	group int
	since uint64
}

// New returns a run whose processes carry name, set to a random value of
// the run's own, in their environment.
func New(name string) (*Run, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("process mark: %w", err)
	}
	env := name + "=" + hex.EncodeToString(b)
	return &Run{env: env, mark: []byte("\x00" + env + "\x00")}, nil
}

// Env is the variable to put in the command's environment, last, so that
// nothing before it overrides it.
func (r *Run) Env() string { return r.env }

// Started records the run's first process, pid, which leads a process
// group of its own (Setpgid) and must not be reaped yet: what it starts
// starts no earlier than it does.
func (r *Run) Started(pid int) {
	r.group = pid
	if p, err := readStat(pid); err == nil {
		r.since = p.start
	}
}

// Kill kills every process of the run, but its first (the caller's to
// wait for): those with its mark and those in its process group. It reaps
// those that are, or become as their parents die, children of this
// process, and orphans it finds, and returns once none of the run's is
// left, or with an error when ctx ends first. The whole run is killed in
// each round, so a process cannot fork faster than it is swept; what was
// killed is recognised afterwards by pid and start time, as a zombie has
// no environment left.
func (r *Run) Kill(ctx context.Context) error {
	s := newScan(r)
	killed := map[int]uint64{}
	for {
		procs, err := processes(r.since)
		if err != nil {
			return fmt.Errorf("sweeping a run's processes: %w", err)
		}
		left := 0
		for _, p := range procs {
			start, seen := killed[p.pid]
			known := seen && start == p.start
			if !p.zombie && s.ours(p) {
				unix.Kill(p.pid, unix.SIGKILL)
				killed[p.pid], known = p.start, true
			}
			if p.zombie && p.ppid == s.self && (known || s.reapable(p)) && reaped(p.pid) {
				delete(killed, p.pid)
				continue
			}
			if known || (p.pid != r.group && p.pgid == r.group) {
				left++
			}
		}
		if left == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sweeping a run's processes: %d still there: %w", left, ctx.Err())
		case <-time.After(poll):
		}
	}
}

// ReapLeftovers leaves running what the run left running (a daemon a
// successful script started) and waits, each on a goroutine of its own,
// for those of them that are now children of this process, so that they
// do not stay zombies once they exit; orphans already exited are reaped at
// once. What is not a child of this process yet is left to its parent.
func (r *Run) ReapLeftovers() {
	procs, err := processes(r.since)
	if err != nil {
		return
	}
	s := newScan(r)
	for _, p := range procs {
		switch {
		case p.ppid != s.self:
		case p.zombie:
			if s.reapable(p) {
				reaped(p.pid)
			}
		case s.ours(p):
			go func(pid int) {
				for {
					var ws unix.WaitStatus
					if _, err := unix.Wait4(pid, &ws, 0, nil); !errors.Is(err, unix.EINTR) {
						return
					}
				}
			}(p.pid)
		}
	}
}

// scan is what one look at /proc compares processes with.
type scan struct {
	r                *Run
	self, pgrp, sess int
}

func newScan(r *Run) scan {
	sess, _ := unix.Getsid(0)
	return scan{r: r, self: os.Getpid(), pgrp: unix.Getpgrp(), sess: sess}
}

// ours says whether live process p belongs to the run: in its group, or
// marked. The run's first process is not, being the caller's.
func (s scan) ours(p procInfo) bool {
	if p.pid == s.r.group {
		return false
	}
	return (s.r.group != 0 && p.pgid == s.r.group) || hasMark(p.pid, s.r.mark)
}

// reapable says whether zombie p, a child of this process, may be reaped
// here: it is no child os/exec waits for, which are group leaders in our
// session (Setpgid) or members of our own group.
func (s scan) reapable(p procInfo) bool {
	if p.pid == s.r.group {
		return false
	}
	return p.sess != s.sess || (p.pgid != p.pid && p.pgid != s.pgrp)
}

// procInfo is what /proc/PID/stat says about a process that matters here.
type procInfo struct {
	pid, ppid, pgid, sess int
	zombie                bool
	start                 uint64 // clock ticks since boot: with the pid, names one process
}

// readStat reads /proc/PID/stat. The command name is between the first "("
// and the last ")", and may hold spaces and parentheses itself.
func readStat(pid int) (procInfo, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procInfo{}, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procInfo{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 of proc(5) (state), f[1] field 4 (ppid), f[2] field 5
	// (pgrp), f[3] field 6 (session), f[19] field 22 (starttime).
	if len(f) < 20 {
		return procInfo{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	var n [3]int
	for k := range n {
		if n[k], err = strconv.Atoi(string(f[1+k])); err != nil {
			return procInfo{}, fmt.Errorf("/proc/%d/stat: field %d: %w", pid, 4+k, err)
		}
	}
	start, err := strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return procInfo{}, fmt.Errorf("/proc/%d/stat: starttime: %w", pid, err)
	}
	return procInfo{pid: pid, ppid: n[0], pgid: n[1], sess: n[2], zombie: string(f[0]) == "Z", start: start}, nil
}

// processes lists every process that started at or after since (clock
// ticks since boot). Processes that vanish while /proc is read are skipped.
func processes(since uint64) ([]procInfo, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("listing /proc: %w", err)
	}
	var out []procInfo
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		p, err := readStat(pid)
		if err != nil || p.start < since {
			continue
		}
		out = append(out, p)
	}
	return out, nil
}

// hasMark says whether process pid was started with mark in its
// environment (what it was exec'd with; a zombie has none left).
func hasMark(pid int, mark []byte) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return false
	}
	return bytes.HasPrefix(b, mark[1:]) || bytes.Contains(b, mark)
}

// reaped reaps child pid if it has exited, without waiting.
func reaped(pid int) bool {
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		// ECHILD: someone else reaped it (or it was never ours): gone.
		return got == pid || errors.Is(err, unix.ECHILD)
	}
}
