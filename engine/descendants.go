package engine

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// scriptMarkVar is set, to a value of its own, in the environment of every
// maintainer script, so the processes a script started can be told from
// every other process once they have left its process group and session
// (setsid) and lost their parent. A process that clears its environment
// escapes the sweep; nothing short of a cgroup catches that.
const scriptMarkVar = "TPM_SCRIPT_RUN"

// sweepPoll is how often killDescendants looks at /proc again while what it
// killed is still exiting.
const sweepPoll = 5 * time.Millisecond

var (
	subreaperOnce sync.Once
	subreaperErr  error
)

// becomeSubreaper makes this process a child subreaper, once, the first time
// a script runs. The effect is process-wide and lasts until exit: an orphan
// below any child of this process (a script's setsid daemon, a build step's
// straggler) is re-parented to it instead of to init, so the sweep after a
// timed-out script finds it among its own children and can kill it without
// racing pid reuse (a child's pid is not reused until it is reaped). The
// processes re-parented this way must be reaped by us: killDescendants reaps
// what it kills, reapLeftovers what a successful script leaves running.
func becomeSubreaper() error {
	subreaperOnce.Do(func() {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			subreaperErr = fmt.Errorf("becoming a child subreaper: %w", err)
		}
	})
	return subreaperErr
}

// procInfo is what /proc/PID/stat says about a process that matters here.
type procInfo struct {
	pid, ppid int
	zombie    bool
	start     uint64 // clock ticks since boot: with the pid, names one process
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
	// f[0] is field 3 of proc(5) (state), f[1] field 4 (ppid), f[19]
	// field 22 (starttime).
	if len(f) < 20 {
		return procInfo{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ppid, err := strconv.Atoi(string(f[1]))
	if err != nil {
		return procInfo{}, fmt.Errorf("/proc/%d/stat: ppid: %w", pid, err)
	}
	start, err := strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return procInfo{}, fmt.Errorf("/proc/%d/stat: starttime: %w", pid, err)
	}
	return procInfo{pid: pid, ppid: ppid, zombie: string(f[0]) == "Z", start: start}, nil
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

// hasMark says whether process pid was started with mark in its environment
// (what it was exec'd with; a zombie has none left).
func hasMark(pid int, mark []byte) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return false
	}
	return bytes.HasPrefix(b, mark[1:]) || bytes.Contains(b, mark)
}

// markBytes is how mark appears inside /proc/PID/environ: NUL-separated.
func markBytes(mark string) []byte {
	return []byte("\x00" + scriptMarkVar + "=" + mark + "\x00")
}

// killDescendants kills every process started, at or after since, with mark
// in its environment, reaps those of them that are (or become, as their
// parents die) children of this process, and returns once none is left or
// at the deadline. The whole marked tree is killed in each round, so a
// process cannot fork faster than it is swept; what it killed is recognised
// afterwards by pid and start time, as a zombie has no environment.
func killDescendants(mark string, since uint64, deadline time.Time) error {
	self := os.Getpid()
	env := markBytes(mark)
	killed := map[int]uint64{}
	for {
		procs, err := processes(since)
		if err != nil {
			return fmt.Errorf("sweeping a script's processes: %w", err)
		}
		left := 0
		for _, p := range procs {
			start, seen := killed[p.pid]
			ours := seen && start == p.start
			if !ours && !p.zombie && hasMark(p.pid, env) {
				unix.Kill(p.pid, unix.SIGKILL)
				killed[p.pid] = p.start
				ours = true
			}
			if !ours {
				continue
			}
			if p.ppid == self && reaped(p.pid) {
				delete(killed, p.pid)
				continue
			}
			left++
		}
		if left == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sweeping a script's processes: %d still there", left)
		}
		time.Sleep(sweepPoll)
	}
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

// reapLeftovers waits, each on a goroutine of its own, for the processes a
// successful script left running (a daemon it started) that are now our
// children, so that they do not stay zombies once they exit. Marked
// processes that are not our children yet are left to their parents.
func reapLeftovers(mark string, since uint64) {
	procs, err := processes(since)
	if err != nil {
		return
	}
	self, env := os.Getpid(), markBytes(mark)
	for _, p := range procs {
		if p.ppid != self || p.zombie || !hasMark(p.pid, env) {
			continue
		}
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
