package actors

// The installer's query slots bound the database work, not the writing of
// the parts of long results: readers that take their parts slowly hold no
// slot while their parts wait to be written (issue 29, finding 1).

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"tpm/messages"
	"tpm/messages/wire"
	"tpm/repo/repotest"
)

// heldPart is a part of a long result that a slow reader has not taken:
// answering from with PartWritten says it is written.
type heldPart struct {
	reader int
	reply  *wire.Reply
	from   *actor.PID
}

// slowReader stands in for the actor of a request whose CLI reads slowly:
// its parts go to parts, unanswered, and its other replies to got.
type slowReader struct {
	n     int
	parts chan any
	got   chan any
}

// readerReply is a reply other than a part that a slow reader got.
type readerReply struct {
	reader int
	reply  *wire.Reply
}

func (s *slowReader) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *messages.Part:
		s.parts <- &heldPart{reader: s.n, reply: m.Reply, from: ctx.Sender()}
	case *wire.Reply:
		s.got <- &readerReply{reader: s.n, reply: m}
	}
}

// askAs sends req to the installer as the actor of uid's request would.
func (u *installerUnderTest) askAs(uid int, to *actor.PID, verb string, args ...string) {
	req := &wire.Request{V: wire.ProtocolVersion, ID: "t", UID: uid, Verb: verb, Args: args}
	u.system.Root.RequestWithCustomSender(u.pid, req, to)
}

// slowReaders starts n files requests of many, by uids taking turns of
// two, each read by a slowReader; every part they get waits on parts.
func (u *installerUnderTest) slowReaders(n int, uids ...int) (parts, got chan any) {
	parts, got = make(chan any, 100), make(chan any, 100)
	for i := range n {
		pid := u.system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &slowReader{n: i, parts: parts, got: got} }))
		u.top = append(u.top, pid)
		u.askAs(uids[i%len(uids)], pid, wire.VerbFiles, "many")
	}
	return parts, got
}

func installMany(t *testing.T) *installerUnderTest {
	t.Helper()
	r := newTestRepo(t, repotest.Package{Name: "many", Version: "1", SmallFiles: 3000, Seed: 1})
	u := startInstaller(t, r)
	_, cli := u.ask(wire.VerbInstall, "many")
	if r := finalReply(t, cli); r.Type != wire.ReplyResult {
		t.Fatalf("install: %+v", r)
	}
	return u
}

// TestSlowReadersHoldNoQuerySlot: two uids each with two files requests
// whose readers have not taken their first part (as many as the query
// slots), and another uid's and root's info are answered while every one
// of those parts is still unwritten; then the slow readers get the rest.
func TestSlowReadersHoldNoQuerySlot(t *testing.T) {
	u := installMany(t)
	parts, got := u.slowReaders(maxQueries, 1000, 1001)
	held := map[int]*heldPart{}
	for len(held) < maxQueries {
		p := await[*heldPart](t, parts, "a first part of each slow reader", nil)
		held[p.reader] = p
	}
	for _, uid := range []int{1002, 0} {
		pid, info := u.spawn(nil)
		u.askAs(uid, pid, wire.VerbInfo, "many")
		if r := finalReply(t, info); r.Type != wire.ReplyResult {
			t.Fatalf("uid %d's info: %+v", uid, r)
		}
	}
	// Only now are the slow readers' parts written, and they read on to the
	// end: their requests were alive when the info answers came (without
	// the slots given back, those came only once the held parts' futures
	// had expired and cut the slow readers' requests short).
	files := make([]int, maxQueries)
	for _, p := range held {
		files[p.reader] += count(t, p.reply)
		u.system.Root.Send(p.from, &messages.PartWritten{})
	}
	deadline := time.After(20 * time.Second)
	for ended := 0; ended < maxQueries; {
		select {
		case m := <-parts:
			p := m.(*heldPart)
			files[p.reader] += count(t, p.reply)
			u.system.Root.Send(p.from, &messages.PartWritten{})
		case m := <-got:
			e := m.(*readerReply)
			if e.reply.Type != wire.ReplyResult {
				t.Fatalf("reader %d: %+v", e.reader, e.reply)
			}
			ended++
		case <-deadline:
			t.Fatalf("the slow readers' requests did not read on to their end (files read: %v)", files)
		}
	}
	for i, n := range files {
		if n < 3000 {
			t.Fatalf("reader %d got %d files", i, n)
		}
	}
}

// TestPausedQueryOfARestartedInstaller: a query whose part is being
// written when its installer is restarted does not read on: its reader is
// told, and the new instance's slots are all free.
func TestPausedQueryOfARestartedInstaller(t *testing.T) {
	u := installMany(t)
	parts, got := u.slowReaders(1, 1000)
	p := await[*heldPart](t, parts, "a first part", nil)
	u.system.Root.Send(u.pid, &crash{})
	await(t, u.parentGot, "the restarted installer ready", func(r *messages.Ready) bool { return r.Component == Installer && r.Err == nil })
	u.system.Root.Send(p.from, &messages.PartWritten{})
	if r := await[*readerReply](t, got, "the paused query's end", nil).reply; r.Type != wire.ReplyError || r.Error != pausedGone {
		t.Fatalf("the paused query after the restart: %+v", r)
	}
	// The new instance's slots are free: as many slow readers as slots
	// each get a part.
	parts, _ = u.slowReaders(maxQueries, 1000, 1001)
	for range maxQueries {
		await[*heldPart](t, parts, "a part after the restart", nil)
	}
	pid, info := u.spawn(nil)
	u.askAs(0, pid, wire.VerbInfo, "many")
	if r := finalReply(t, info); r.Type != wire.ReplyResult {
		t.Fatalf("root's info: %+v", r)
	}
}

// count is how many files a part of a files answer lists.
func count(t *testing.T, r *wire.Reply) int {
	t.Helper()
	var part []wire.PackageFile
	if r.Type != wire.ReplyItems {
		t.Fatalf("not a part: %+v", r)
	}
	if err := json.Unmarshal(r.Data, &part); err != nil {
		t.Fatal(err)
	}
	return len(part)
}
