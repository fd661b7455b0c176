package fifo

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// otherUID owns directories made "by another user" when the tests run as
// root; otherwise every directory is ours.
const otherUID = 54321

// tokenDirs makes n empty request directories named from prefix, owned by
// uid (when the test may give them away), and returns their names.
func tokenDirs(t *testing.T, spool, prefix string, n, uid int) []string {
	t.Helper()
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("tpm-%s%0*d", prefix, 32-len(prefix), i)
		d := filepath.Join(spool, names[i])
		must(t, os.Mkdir(d, 0o700))
		if os.Getuid() == 0 {
			must(t, os.Lchown(d, uid, uid))
		}
	}
	return names
}

// present counts which of names are still in spool.
func present(spool string, names []string) int {
	n := 0
	for _, name := range names {
		if _, err := os.Lstat(filepath.Join(spool, name)); err == nil {
			n++
		}
	}
	return n
}

// sweepRound runs one whole round of a sweeper, begun at now, pass by
// pass, and returns its report and how many passes it took.
func sweepRound(t *testing.T, spool string, cfg SweepConfig, b *Ledger, now time.Time) (*SweepReport, int) {
	t.Helper()
	sw, err := newSweeper(spool, cfg)
	must(t, err)
	defer sw.close()
	sw.begin(now)
	for passes := 1; ; passes++ {
		if rep := sw.pass(context.Background(), b); rep != nil {
			return rep, passes
		}
		if passes > 10_000 {
			t.Fatal("the round does not end")
		}
	}
}

// Directories no token named, past the grace, are removed by descriptor,
// without following a link out of the spool; those the ledger knows stay;
// one deeper than a request's is given up on and named.
func TestSweepRemovesWhatNoTokenNamed(t *testing.T) {
	run, out := t.TempDir(), canary(t)
	spool, err := MakeSpool(run)
	must(t, err)
	hostileSpool(t, spool, out, 50, 100)
	known, queued := "tpm-"+strings.Repeat("c", 32), "tpm-"+strings.Repeat("d", 32)
	for _, d := range []string{known, queued} {
		must(t, os.Mkdir(filepath.Join(spool, d), 0o700))
	}
	must(t, os.WriteFile(filepath.Join(spool, "junk"), []byte("x"), 0o600))
	b := NewLedger(64, 16)
	b.Admit(known, os.Getuid())
	b.Remove(queued) // queued for the cleaner, not for the sweep
	// A minute on, everything is past its grace.
	rep, _ := sweepRound(t, spool, SweepConfig{Grace: time.Second, MaxYoungUID: 64, MaxYoung: 64}, b, time.Now().Add(time.Minute))
	t.Logf("%+v", rep)
	entries, err := os.ReadDir(spool)
	must(t, err)
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if strings.Join(left, " ") != known+" "+queued+" tpm-deep" {
		t.Fatalf("left in the spool: %v; want the known, the queued and the deep one", left)
	}
	if rep.Removed != 103 || rep.Failed != 1 || rep.Err == nil || !strings.Contains(rep.Err.Error(), "tpm-deep") {
		t.Fatalf("report %+v: want 103 removed, the deep one given up on", rep)
	}
	checkCanary(t, out)
}

// Young directories no token named are kept up to a few per uid and a
// few in all; past those bounds they go at once, the grace or not.
func TestSweepBoundsYoungDirectories(t *testing.T) {
	spool, err := MakeSpool(t.TempDir())
	must(t, err)
	mine := tokenDirs(t, spool, "a", 50, os.Getuid())
	theirs := tokenDirs(t, spool, "b", 500, otherUID)
	b := NewLedger(64, 16)
	b.Admit(theirs[499], otherUID) // counted: never swept
	rep, _ := sweepRound(t, spool, SweepConfig{Grace: time.Hour, MaxYoungUID: 64, MaxYoung: 1000}, b, time.Now())
	n, m := present(spool, mine), present(spool, theirs)
	switch {
	case os.Getuid() != 0: // one uid: 64 of the 549 it may lose, and the counted one
		if n+m != 64+1 {
			t.Fatalf("kept %d of one uid's, want 65 (report %+v)", n+m, rep)
		}
	case n != 50 || m != 64+1:
		t.Fatalf("kept %d of ours and %d of theirs; want 50 and 65 (report %+v)", n, m, rep)
	case len(rep.ByUID) != 1 || rep.ByUID[0] != (UIDCount{UID: otherUID, N: 500 - 65}) || rep.OverBound != 500-65:
		t.Fatalf("report %+v: want %d of uid %d removed over the bound", rep, 500-65, otherUID)
	}

	// Everyone's young ones are bounded too (many uids, say those of a
	// user namespace, are no way around the bound of one).
	rep, _ = sweepRound(t, spool, SweepConfig{Grace: time.Hour, MaxYoungUID: 64, MaxYoung: 20}, b, time.Now())
	if n := present(spool, mine) + present(spool, theirs); n != 21 {
		t.Fatalf("kept %d in all, want 20 and the counted one (report %+v)", n, rep)
	}
}

// A pass looks at a bounded number of entries, so the cleaner takes its
// queued removals between passes however large the spool is; a round
// over 5,000 directories takes several passes and removes them all.
func TestSweepPassesAreBounded(t *testing.T) {
	spool, err := MakeSpool(t.TempDir())
	must(t, err)
	names := tokenDirs(t, spool, "e", 5000, otherUID)
	cfg, later := SweepConfig{Grace: time.Second, MaxYoungUID: 64, MaxYoung: 64}, time.Now().Add(time.Minute)
	sw, err := newSweeper(spool, cfg)
	must(t, err)
	defer sw.close()
	sw.begin(later)
	if rep := sw.pass(context.Background(), NewLedger(64, 16)); rep != nil {
		t.Fatalf("one pass did a whole round: %+v", rep)
	}
	if n := sw.round.report.Examined; n != passEntries {
		t.Fatalf("one pass looked at %d entries, want %d", n, passEntries)
	}
	if n := present(spool, names); n != 5000-passEntries {
		t.Fatalf("%d left after one pass, want %d", n, 5000-passEntries)
	}
	rep, passes := sweepRound(t, spool, cfg, NewLedger(64, 16), later)
	if rep.Removed != 5000-passEntries || passes < (5000-passEntries)/passEntries || present(spool, names) != 0 {
		t.Fatalf("round %+v in %d passes", rep, passes)
	}
}

// When the spool fills up between rounds, a round begins at the next
// count of its directories, not at the next round's time: thousands of
// young directories of one uid are cut down to its bound within moments
// though rounds are an hour apart, while a queued removal still goes.
func TestCleanSweepsUnderPressure(t *testing.T) {
	spool, err := MakeSpool(t.TempDir())
	must(t, err)
	b := NewLedger(64, 16)
	reports := make(chan SweepReport, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Clean(ctx, spool, CleanConfig{
			Sweep:      SweepConfig{Grace: time.Hour, MaxYoungUID: 64, MaxYoung: 4096},
			SweepEvery: time.Hour, CheckEvery: 20 * time.Millisecond, Pressure: 256,
			Warn: func(msg string, args ...any) { t.Log(append([]any{msg}, args...)...) },
			Swept: func(r SweepReport) {
				select {
				case reports <- r:
				default:
				}
			},
		})
	}()
	defer func() { cancel(); <-done }()
	names := tokenDirs(t, spool, "f", 3000, otherUID)
	tok := "tpm-" + strings.Repeat("9", 32)
	must(t, os.Mkdir(filepath.Join(spool, tok), 0o700))
	unix.Mkfifo(filepath.Join(spool, tok, ReplyFIFO), 0o600)
	b.Admit(tok, os.Getuid())
	b.Remove(tok)
	for deadline := time.Now().Add(30 * time.Second); present(spool, names) > 64; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d directories of one uid are still there", present(spool, names))
		}
	}
	select {
	case r := <-reports:
		t.Logf("a round: %+v", r)
	case <-time.After(30 * time.Second):
		t.Fatal("no round was reported")
	}
	for deadline := time.Now().Add(30 * time.Second); present(spool, []string{tok}) != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the queued removal did not happen")
		}
	}
}
