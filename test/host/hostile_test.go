package host

// A hostile local user against the real daemon: each attack runs this test
// binary again as an unprivileged uid (attacker, below), while root's
// requests must go on being answered, and nothing reaches a FIFO that is not
// the requester's.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"tpm/fifo"
	"tpm/local"
	"tpm/messages/wire"
)

const (
	attackEnv    = "TPM_TEST_ATTACK"     // which attack the binary runs instead of the tests
	attackRunEnv = "TPM_TEST_ATTACK_RUN" // the daemon's run directory
	attackArgEnv = "TPM_TEST_ATTACK_ARG" // what the attack needs besides
	nobody       = 65534
)

// hostile is a daemon on a run directory an unprivileged user can reach,
// and this test binary where that user can run it.
type hostile struct {
	h   *host
	d   *daemon
	bin string
}

func startHostile(t *testing.T, extra ...string) *hostile {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run the attacker as another uid and the daemon as root")
	}
	r := newRepository(t)
	r.addPackage(t, `{"Name":"big","Version":"1.0","Architecture":"any","Type":"Binary"}`, manyFiles(2000))
	srv := startServer(t, r)
	h := newHost(t)
	reachable(t, h.run)
	d := startClient(t, h, srv.url, r.pubPath, extra...)
	waitIndex(t, h.run, 4)
	ok(t, h.run, "install", []string{"big"}, nil, nil)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	reachable(t, dir)
	bin := filepath.Join(dir, "attacker")
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return &hostile{h: h, d: d, bin: bin}
}

// manyFiles is a package payload whose file list is long.
func manyFiles(n int) map[string]string {
	files := map[string]string{}
	for i := range n {
		files[fmt.Sprintf("data/usr/share/big/%04d/a-long-enough-file-name-%04d", i/100, i)] = "x"
	}
	return files
}

// reachable lets every user search dir and the directories above it that
// the test made (t.TempDir's are 0700).
func reachable(t *testing.T, dir string) {
	t.Helper()
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// attack runs the attack as uid nobody with the given groups (its primary
// group first) and returns what it printed.
func (x *hostile) attack(t *testing.T, name, arg string, groups ...uint32) string {
	t.Helper()
	cmd := x.attackCmd(t, name, arg, groups...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("attack %s: %v\n%s", name, err, out)
	}
	return string(out)
}

func (x *hostile) attackCmd(t *testing.T, name, arg string, groups ...uint32) *exec.Cmd {
	t.Helper()
	if len(groups) == 0 {
		groups = []uint32{nobody}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, x.bin)
	cmd.Env = []string{attackEnv + "=" + name, attackRunEnv + "=" + x.h.run, attackArgEnv + "=" + arg, "PATH=/usr/bin:/bin"}
	cmd.Dir = "/"
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: groups[0], Groups: groups}}
	return cmd
}

// rootAnswers checks that root's status is answered now, through the real
// client; the FIFO is read in order, so what was written on it before has
// been dealt with.
func (x *hostile) rootAnswers(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := (&local.Client{RunDir: x.h.run}).Status(ctx)
	if err != nil || st.PID != x.d.Cmd.Process.Pid {
		t.Fatalf("root's status: %+v %v\n%s", st, err, x.d.Logs)
	}
}

// TestFloodIsBoundedPerUID: a user who sends 200 requests for a long answer
// and never reads them gets 16 in flight; the rest are refused at once, and
// root is answered meanwhile.
func TestFloodIsBoundedPerUID(t *testing.T) {
	x := startHostile(t)
	cmd := x.attackCmd(t, "flood", "200")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewReader(stdout)
	if line, err := lines.ReadString('\n'); err != nil || line != "sent\n" {
		t.Fatalf("flood: %q %v", line, err)
	}
	// The attacker holds its 200 reply FIFOs, unread: root is answered,
	// and once it is, the flood before it was dealt with.
	x.rootAnswers(t)
	io.WriteString(stdin, "count\n")
	line, err := lines.ReadString('\n')
	var busy, taken int
	if _, err2 := fmt.Sscanf(line, "busy=%d taken=%d", &busy, &taken); err != nil || err2 != nil {
		t.Fatalf("flood said %q (%v)", line, err)
	}
	// 16 are taken when the flood arrives in one read; a read that came
	// after some of those ended (5 s of a CLI not reading) takes more.
	if taken > 2*16 || busy+taken != 200 {
		t.Fatalf("flood of 200: %d refused as busy, %d taken; want at most 16 or so taken", busy, taken)
	}
	cmd.Process.Kill()
	cmd.Wait()
	x.rootAnswers(t)
}

// TestRequestsWithNobodyToAnswerCostNothing: requests whose reply FIFO has
// no reader are refused before any work starts.
func TestRequestsWithNobodyToAnswerCostNothing(t *testing.T) {
	x := startHostile(t)
	x.attack(t, "nowhere", "1000")
	x.rootAnswers(t)
	if n := strings.Count(x.d.Logs.String(), `verb=files`); n != 0 {
		t.Fatalf("the daemon took %d requests nobody could be answered for\n%s", n, x.d.Logs)
	}
}

// TestPartialWriteDropsNobody: half a request without a newline, left on
// the FIFO, does not swallow the next user's request.
func TestPartialWriteDropsNobody(t *testing.T) {
	x := startHostile(t)
	x.attack(t, "partial", "")
	x.rootAnswers(t)
	x.rootAnswers(t)
}

// TestHeldLocksBlockNobody: whatever the user locks, root's requests, a
// query and an admin one, are answered.
func TestHeldLocksBlockNobody(t *testing.T) {
	x := startHostile(t)
	for _, name := range []string{"query.lock", "admin.lock"} {
		if _, err := os.Stat(filepath.Join(x.h.run, name)); err == nil {
			t.Fatalf("%s exists: anyone could lock it", name)
		}
	}
	cmd := x.attackCmd(t, "locks", "")
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "holding\n" {
		t.Fatalf("locks: %q %v", line, err)
	}
	x.rootAnswers(t)
	var sr wire.SyncResult
	ok(t, x.h.run, "sync", nil, nil, &sr)
}

// TestRepliesGoOnlyToTheRequester: requests whose reply FIFO leads to a
// FIFO of root, of another user, or to the daemon's own admin.fifo are
// refused, and nothing is written to any of them.
func TestRepliesGoOnlyToTheRequester(t *testing.T) {
	x := startHostile(t)
	dir := t.TempDir()
	reachable(t, dir)
	rootFIFO, otherFIFO := filepath.Join(dir, "root.fifo"), filepath.Join(dir, "other.fifo")
	var victims []int
	for _, v := range []struct {
		path string
		uid  int
	}{{rootFIFO, 0}, {otherFIFO, nobody - 1}} {
		if err := unix.Mkfifo(v.path, 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chown(v.path, v.uid, v.uid)
		fd, err := unix.Open(v.path, unix.O_RDONLY|unix.O_NONBLOCK, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		victims = append(victims, fd)
	}
	// The daemon's own admin.fifo is read by the daemon: what it would
	// write there shows in its log as a request.
	out := x.attack(t, "deputy", strings.Join([]string{rootFIFO, otherFIFO, fifo.Path(x.h.run, true)}, ":"))
	x.rootAnswers(t)
	for i, fd := range victims {
		buf := make([]byte, 100)
		if n, _ := unix.Read(fd, buf); n > 0 { // EOF or EAGAIN: nothing there
			t.Fatalf("victim FIFO %d got %q", i, buf[:n])
		}
	}
	if strings.Contains(x.d.Logs.String(), "ignored bytes that name no request\" fifo=admin.fifo") {
		t.Fatalf("the daemon wrote into its own admin.fifo\n%s", x.d.Logs)
	}
	// A symlink to each victim and a FIFO in an open directory at least;
	// hard links too where the kernel allows them.
	var sent int
	if _, err := fmt.Sscanf(out, "sent %d", &sent); err != nil || sent < 4 {
		t.Fatalf("deputy: %s", out)
	}
}

// TestJunkFloodKeepsTheLogShort: 100,000 lines of junk leave a few
// warnings, with a count of what was dropped, not one per line.
func TestJunkFloodKeepsTheLogShort(t *testing.T) {
	x := startHostile(t)
	before := len(x.d.Logs.String())
	x.attack(t, "junk", "100000")
	x.rootAnswers(t)
	added := x.d.Logs.String()[before:]
	t.Logf("100,000 lines of junk: %d warnings, %d bytes of log", strings.Count(added, "level=WARN"), len(added))
	if n := strings.Count(added, "level=WARN"); n > 3*10 || len(added) > 64<<10 {
		t.Fatalf("100,000 lines of junk: %d warnings, %d bytes of log\n%s", n, len(added), added)
	}
}

// TestAdminRightsFollowTheUID: writing admin.fifo is not enough; the
// request must be made by root or by a member of --admin-group, as the
// group the kernel let its owner give it says.
func TestAdminRightsFollowTheUID(t *testing.T) {
	x := startHostile(t, "--admin-group", "nogroup")
	// A member of nogroup, as its primary group: its request is nogroup's.
	if out := x.attack(t, "admin", "sync"); !strings.Contains(out, `"type":"result"`) {
		t.Fatalf("sync by a member of the admin group: %s", out)
	}
	if !strings.Contains(x.d.Logs.String(), "uid=65534 verb=sync") {
		t.Fatalf("the change is not logged with its uid\n%s", x.d.Logs)
	}
	// A member whose request carries another of its groups (the FIFO's
	// mode lets it write) is refused.
	if out := x.attack(t, "admin", "sync", nobody-1, nobody); !strings.Contains(out, "you may not ask tpmd to change this host") {
		t.Fatalf("sync with a request of another group: %s", out)
	}
	// Not a member: the FIFO itself is closed to it.
	if out := x.attack(t, "admin", "sync", nobody-1); !strings.Contains(out, "permission denied") {
		t.Fatalf("sync by a non-member: %s", out)
	}
}

// attacker runs the attack named in the environment; TestMain calls it
// when the binary is started as one.
func attacker(name string) error {
	run, arg := os.Getenv(attackRunEnv), os.Getenv(attackArgEnv)
	spool := filepath.Join(run, fifo.SpoolDir)
	queryFIFO := fifo.Path(run, false)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	switch name {
	case "flood", "nowhere":
		n, _ := strconv.Atoi(arg)
		return flood(ctx, spool, queryFIFO, n, name == "flood")
	case "partial":
		return writeFIFO(queryFIFO, []byte(`{"v":1,`))
	case "junk":
		n, _ := strconv.Atoi(arg)
		return writeFIFO(queryFIFO, []byte(strings.Repeat("x\n", n)))
	case "locks":
		// Everything it may open: the query FIFO (to write) and the run
		// directory.
		for _, p := range []struct {
			path  string
			flags int
		}{{queryFIFO, unix.O_WRONLY | unix.O_NONBLOCK}, {run, unix.O_RDONLY}} {
			fd, err := unix.Open(p.path, p.flags, 0)
			if err != nil {
				return err
			}
			if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
				return err
			}
		}
		fmt.Println("holding")
		time.Sleep(time.Hour) // until killed
		return nil
	case "deputy":
		return deputy(ctx, spool, queryFIFO, strings.Split(arg, ":"))
	case "admin":
		out, err := fifo.NewOutgoing(spool)
		if err != nil {
			return err
		}
		defer out.Close()
		body, _ := json.Marshal(wire.Request{V: wire.ProtocolVersion, Verb: arg})
		if err := out.Send(ctx, fifo.Path(run, true), body, -1); err != nil {
			fmt.Println(err)
			return nil
		}
		line, err := out.ReadLine(ctx)
		fmt.Println(string(line))
		return err
	}
	return fmt.Errorf("no attack %q", name)
}

func writeFIFO(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Write(b)
	return err
}

// flood makes n requests for the long file list of big, with reply FIFOs
// whose pipes are as small as the kernel allows. held: it keeps them open
// without reading, then says how many were refused as busy; otherwise
// nobody reads them at all.
func flood(ctx context.Context, spool, queryFIFO string, n int, held bool) error {
	body, _ := json.Marshal(wire.Request{V: wire.ProtocolVersion, Verb: wire.VerbFiles, Args: []string{"big"}})
	var tokens []string
	var replies []*os.File
	for range n {
		token := fmt.Sprintf("tpm-%032x", time.Now().UnixNano()+int64(len(tokens)))
		dir := filepath.Join(spool, token)
		if err := os.Mkdir(dir, 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, fifo.RequestFile), body, 0o600); err != nil {
			return err
		}
		reply := filepath.Join(dir, fifo.ReplyFIFO)
		if err := unix.Mkfifo(reply, 0o600); err != nil {
			return err
		}
		if held {
			f, err := os.OpenFile(reply, os.O_RDWR, 0)
			if err != nil {
				return err
			}
			unix.FcntlInt(f.Fd(), unix.F_SETPIPE_SZ, 4096)
			replies = append(replies, f)
		}
		tokens = append(tokens, token)
	}
	var all strings.Builder
	for _, tok := range tokens {
		all.WriteString(tok + "\n")
	}
	if err := writeFIFO(queryFIFO, []byte(all.String())); err != nil {
		return err
	}
	if !held {
		return nil
	}
	// The test says when the daemon has dealt with the flood; what a
	// FIFO holds then says whether it was refused.
	fmt.Println("sent")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return err
	}
	var busy, taken int
	buf := make([]byte, 200)
	for _, f := range replies {
		fd := int(f.Fd())
		unix.SetNonblock(fd, true)
		n, _ := unix.Read(fd, buf)
		if n > 0 && strings.Contains(string(buf[:n]), "tpmd is busy") {
			busy++
		} else {
			taken++
		}
	}
	fmt.Printf("busy=%d taken=%d\n", busy, taken)
	time.Sleep(time.Hour) // holds the FIFOs until killed
	return nil
}

// deputy makes requests whose reply FIFO leads to each victim: a symlink
// to it, and a hard link when the kernel allows one; then one whose
// directory others may open.
func deputy(ctx context.Context, spool, queryFIFO string, victims []string) error {
	body, _ := json.Marshal(wire.Request{V: wire.ProtocolVersion, Verb: wire.VerbStatus})
	var tokens []string
	mk := func(reply func(path string) error, dirMode os.FileMode) error {
		token := fmt.Sprintf("tpm-%032x", time.Now().UnixNano()+int64(len(tokens)))
		dir := filepath.Join(spool, token)
		if err := os.Mkdir(dir, 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, fifo.RequestFile), body, 0o600); err != nil {
			return err
		}
		if err := reply(filepath.Join(dir, fifo.ReplyFIFO)); err != nil {
			return nil // the kernel refused the link: nothing to send
		}
		if err := os.Chmod(dir, dirMode); err != nil {
			return err
		}
		tokens = append(tokens, token)
		return nil
	}
	for _, v := range victims {
		mk(func(p string) error { return os.Symlink(v, p) }, 0o700)
		mk(func(p string) error { return os.Link(v, p) }, 0o700)
	}
	// A FIFO of its own, in a directory others may open: someone could
	// swap it, so it is refused too (the attacker holds it open to see).
	mk(func(p string) error { return unix.Mkfifo(p, 0o600) }, 0o755)
	for _, tok := range tokens {
		if err := writeFIFO(queryFIFO, []byte(tok+"\n")); err != nil {
			return err
		}
	}
	fmt.Printf("sent %d\n", len(tokens))
	return ctx.Err()
}
