package fifo

import (
	"context"
	"fmt"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// A directory whose token never came costs the spool's file system an inode
// like any other, and anyone may make thousands a second. A tpm sends its
// token right after making its directory (and removes it when it cannot
// within 10 s), so the sweep removes what the ledger does not know once it
// is older than a grace, and at once what a uid, or everyone, keeps beyond
// a few young ones: neither one user nor many can fill the run directory's
// file system between sweeps.

// Bounds of the sweep's work. A pass looks at no more than passEntries
// entries and spends no more than passSteps removal steps before the
// cleaner takes its queued removals again; a round (one walk over the
// spool) looks at no more than twice the entries the spool held when it
// began, plus roundSlack, since a flood adds entries behind the walk as
// fast as it goes.
const (
	passEntries  = 1024
	passSteps    = 32_768
	roundSlack   = 4096
	roundDefault = 1 << 20 // where the file system does not count directories
	topUIDs      = 8
)

// SweepReport is what one round of the sweep did.
type SweepReport struct {
	Examined, Removed, Failed int
	// OverBound counts the directories removed within their grace, over
	// the bounds of young ones: the mark of a flood.
	OverBound int
	// Cut: the round stopped at its bound before the spool's end.
	Cut  bool
	Took time.Duration
	// ByUID names the uids whose directories it removed most, most first,
	// at most a few.
	ByUID []UIDCount
	// Err is the first removal it gave up on, or why it stopped.
	Err error
}

// UIDCount is how many directories of a uid a round removed.
type UIDCount struct{ UID, N int }

// SweepConfig bounds what the spool keeps that no token named; a zero
// field keeps nothing.
type SweepConfig struct {
	// Grace is how long a directory may wait for its token, from when it
	// was last changed.
	Grace time.Duration
	// MaxYoungUID and MaxYoung are how many directories younger than the
	// grace a uid, and everyone, may keep without a token; more are removed
	// at once.
	MaxYoungUID, MaxYoung int
}

// sweeper walks the spool a bounded pass at a time, through a descriptor
// it keeps, so a round resumes where its last pass stopped.
type sweeper struct {
	dfd   int
	buf   []byte
	names []string // read, not yet looked at
	cfg   SweepConfig
	round *round // nil between rounds
	base  int    // directories the last round left
	busy  bool   // the last round removed what was over the bounds
}

// round is one walk over the spool.
type round struct {
	start, cutoff time.Time
	budget        int // entries it may still look at
	young         map[int]int
	youngAll      int
	removed       map[int]int
	report        SweepReport
}

func newSweeper(spool string, cfg SweepConfig) (*sweeper, error) {
	dfd, err := unix.Open(spool, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("spool %s: %w", spool, err)
	}
	return &sweeper{dfd: dfd, buf: make([]byte, 8192), cfg: cfg}, nil
}

func (s *sweeper) close() { unix.Close(s.dfd) }

// subdirs is how many directories the spool holds, from its link count:
// one fstat, whatever their number. It is -1 where the file system does
// not count them (btrfs; ext4 past 65,000).
func (s *sweeper) subdirs() int {
	var st unix.Stat_t
	if unix.Fstat(s.dfd, &st) != nil || st.Nlink < 2 {
		return -1
	}
	return int(st.Nlink) - 2
}

// pressed says whether a round should begin before its time: the last
// round had to remove directories over the bounds (a flood may go on), or
// the spool holds more than pressure directories beyond those the ledger
// expects and those the last round left.
func (s *sweeper) pressed(expected, pressure int) bool {
	if s.busy {
		return true
	}
	n := s.subdirs()
	return n >= 0 && n > max(s.base, expected)+pressure
}

// begin starts a round at now, unless one runs.
func (s *sweeper) begin(now time.Time) {
	if s.round != nil {
		return
	}
	unix.Seek(s.dfd, 0, 0)
	s.names = s.names[:0]
	budget := roundDefault
	if n := s.subdirs(); n >= 0 {
		budget = 2*n + roundSlack
	}
	s.round = &round{start: time.Now(), cutoff: now.Add(-s.cfg.Grace), budget: budget, young: map[int]int{}, removed: map[int]int{}}
}

// pass does a bounded part of the round that runs, and returns its report
// once it is over.
func (s *sweeper) pass(ctx context.Context, b *Ledger) *SweepReport {
	r := s.round
	steps, looked := passSteps, 0
	for looked < passEntries && steps > 0 {
		if ctx.Err() != nil {
			return s.end(errStopped)
		}
		if r.budget <= 0 {
			r.report.Cut = true
			return s.end(nil)
		}
		name, ok, err := s.next()
		switch {
		case err != nil:
			return s.end(fmt.Errorf("read the spool: %w", err))
		case !ok:
			return s.end(nil)
		case name == "." || name == "..":
			continue
		}
		r.budget--
		looked++
		steps -= s.look(ctx, b, name)
	}
	return nil
}

// next is the next entry of the spool the round has not looked at.
func (s *sweeper) next() (string, bool, error) {
	for len(s.names) == 0 {
		n, err := unix.Getdents(s.dfd, s.buf)
		if err != nil {
			return "", false, err
		}
		if n <= 0 {
			return "", false, nil
		}
		_, _, s.names = unix.ParseDirent(s.buf[:n], -1, s.names[:0])
	}
	name := s.names[0]
	s.names = s.names[1:]
	return name, true, nil
}

// look removes the entry name when no token named it and it is older than
// the grace, or its uid (or everyone) keeps too many young ones; it
// returns the steps it spent.
func (s *sweeper) look(ctx context.Context, b *Ledger, name string) int {
	r := &s.round.report
	r.Examined++
	var st unix.Stat_t
	if unix.Fstatat(s.dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil || b.known(name) {
		return 1
	}
	uid := int(st.Uid)
	changed := time.Unix(st.Ctim.Unix())
	if m := time.Unix(st.Mtim.Unix()); m.After(changed) {
		changed = m
	}
	if changed.After(s.round.cutoff) {
		if s.round.young[uid] < s.cfg.MaxYoungUID && s.round.youngAll < s.cfg.MaxYoung {
			s.round.young[uid]++
			s.round.youngAll++
			return 1
		}
		r.OverBound++
	}
	// Most are empty: one rmdir, which no link can lead astray.
	if unix.Unlinkat(s.dfd, name, unix.AT_REMOVEDIR) == nil {
		r.Removed++
		s.round.removed[uid]++
		return 2
	}
	rm := newRemover(ctx, requestDepth, requestSteps, -1)
	err := rm.removeAt(s.dfd, name, 1)
	spent := requestSteps - rm.steps + 2
	if err != nil {
		r.Failed++
		if r.Err == nil {
			r.Err = fmt.Errorf("%s: %w", name, err)
		}
		return spent
	}
	r.Removed++
	s.round.removed[uid]++
	return spent
}

// end closes the round that runs and says what it did.
func (s *sweeper) end(err error) *SweepReport {
	r := s.round
	s.round = nil
	rep := r.report
	if err != nil {
		rep.Err = err // why it stopped says more than a removal given up on
	}
	rep.Took = time.Since(r.start)
	for uid, n := range r.removed {
		rep.ByUID = append(rep.ByUID, UIDCount{UID: uid, N: n})
	}
	slices.SortFunc(rep.ByUID, func(a, b UIDCount) int { return b.N - a.N })
	rep.ByUID = rep.ByUID[:min(len(rep.ByUID), topUIDs)]
	s.base = max(s.subdirs(), 0)
	s.busy = rep.OverBound > 0 || rep.Cut
	return &rep
}
