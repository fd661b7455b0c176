package host

// Issue 29, finding 1: users who read long answers slowly must not starve
// everyone's queries. Two uids each drip-read two files answers of a
// package of thousands of files; another uid's info and root's are answered
// while those four are still reading.

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"tpm/fifo"
	"tpm/messages/wire"
)

// requestAs leaves a request in run's spool as uid would (its directory,
// request file and reply FIFO owned by uid), announces it on the query
// FIFO, and returns the reply FIFO, open for reading.
func requestAs(t *testing.T, run string, uid int, verb string, args ...string) *os.File {
	t.Helper()
	b := make([]byte, 16)
	rand.Read(b)
	token := "tpm-" + hex.EncodeToString(b)
	dir := filepath.Join(run, fifo.SpoolDir, token)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	reply := filepath.Join(dir, fifo.ReplyFIFO)
	if err := unix.Mkfifo(reply, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(reply, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	body, _ := json.Marshal(wire.Request{V: wire.ProtocolVersion, Verb: verb, Args: args})
	if err := os.WriteFile(filepath.Join(dir, fifo.RequestFile), body, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(dir, fifo.RequestFile), reply, dir} {
		if err := os.Lchown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	q, err := os.OpenFile(fifo.Path(run, false), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if _, err := q.Write([]byte(token + "\n")); err != nil {
		t.Fatal(err)
	}
	return f
}

// readReplies reads f's reply lines, each read at most chunk bytes and,
// until fast is closed, one read per tick; it passes each reply to each
// and returns the final one.
func readReplies(f *os.File, chunk int, tick <-chan time.Time, fast <-chan struct{}, each func(wire.Reply)) (wire.Reply, error) {
	var buf []byte
	b := make([]byte, chunk)
	for {
		select {
		case <-fast:
		default:
			if tick != nil {
				select {
				case <-tick:
				case <-fast:
				}
			}
		}
		n, err := f.Read(b)
		if err != nil {
			return wire.Reply{}, err
		}
		buf = append(buf, b[:n]...)
		for {
			i := bytes.IndexByte(buf, '\n')
			if i < 0 {
				break
			}
			var r wire.Reply
			if err := json.Unmarshal(buf[:i], &r); err != nil {
				return r, err
			}
			buf = buf[i+1:]
			if each != nil {
				each(r)
			}
			if r.Final() {
				return r, nil
			}
		}
	}
}

func TestSlowReadersDoNotStarveQueries(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to make requests as other uids")
	}
	const files = 3000
	r := newRepository(t)
	r.addPackage(t, `{"Name":"big","Version":"1.0","Architecture":"any","Type":"Binary"}`, manyFiles(files))
	srv := startServer(t, r)
	h := newHost(t)
	startClient(t, h, srv.url, r.pubPath)
	waitIndex(t, h.run, 4)
	ok(t, h.run, "install", []string{"big"}, nil, nil)

	// Four drip readers: a few KB every tick, as long as fast is open.
	fast := make(chan struct{})
	var finished atomic.Int32
	var read [4]atomic.Int32 // files each reader has read
	type outcome struct {
		final wire.Reply
		items int
		err   error
	}
	results := make(chan outcome, 4)
	started := make(chan struct{}, 4)
	for i := range 4 {
		f := requestAs(t, h.run, 1000+i/2, "files", "big")
		ticker := time.NewTicker(100 * time.Millisecond) // each its own
		t.Cleanup(ticker.Stop)
		go func() {
			var o outcome
			first := true
			o.final, o.err = readReplies(f, 4<<10, ticker.C, fast, func(r wire.Reply) {
				if r.Type != wire.ReplyItems {
					return
				}
				var part []wire.PackageFile
				json.Unmarshal(r.Data, &part)
				o.items += len(part)
				read[i].Store(int32(o.items))
				if first {
					first = false
					started <- struct{}{}
				}
			})
			finished.Add(1)
			results <- o
		}()
	}
	var once sync.Once
	release := func() { once.Do(func() { close(fast) }) }
	defer release()
	deadline := time.After(60 * time.Second)
	for range 4 {
		select {
		case <-started:
		case <-deadline:
			t.Fatal("the drip readers got no first part")
		}
	}

	// Another uid's info and root's, answered while the four still read.
	other := requestAs(t, h.run, 1002, "info", "big")
	if r, err := readReplies(other, 64<<10, nil, nil, nil); err != nil || r.Type != wire.ReplyResult {
		t.Fatalf("uid 1002's info: %+v %v", r, err)
	}
	if r, _ := call(t, h.run, "info", []string{"big"}, nil); r.Type != wire.ReplyResult {
		t.Fatalf("root's info: %+v", r)
	}
	// Without slots given back, the info answers come only once a reader's
	// last part is in its FIFO: it has read all but what the pipe holds.
	for i := range read {
		if n := read[i].Load(); finished.Load() != 0 || n >= files/2 {
			t.Fatalf("the info answers came after drip reader %d had read %d of %d files (%d finished)", i, n, files, finished.Load())
		}
	}
	release() // they read the rest at once
	for range 4 {
		var o outcome
		select {
		case o = <-results:
		case <-deadline:
			t.Fatal("the drip readers did not finish")
		}
		if o.err != nil || o.final.Type != wire.ReplyResult || o.items < files {
			t.Fatalf("a drip reader: %d files, %+v %v", o.items, o.final, o.err)
		}
	}
}
