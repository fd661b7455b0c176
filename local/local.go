// Package local is the client of the tpmd daemon on this host: requests go
// through its spool and FIFOs (package fifo), replies come back on a
// private reply FIFO. Call is the one request/reply loop; the methods named
// for the verbs wrap it with the wire protocol's types (package messages).
package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"tpm/fifo"
	"tpm/messages/wire"
)

// Client talks to the tpmd client daemon whose FIFOs are in RunDir. The zero
// value is not useful: RunDir must be set. A Client holds no connection, so
// one may serve any number of calls, at once too.
type Client struct {
	RunDir string
	// Prefix is sent with requests that name none; "" leaves the choice to
	// the daemon (its --prefix).
	Prefix string
	// MaxReply bounds one reply line (0: fifo.MaxReplyLine).
	MaxReply int
	// Silence is how long a call waits for the next line of its answer
	// (0: DefaultSilence). The daemon says it is alive every
	// wire.AliveEvery while it works, so only a stuck daemon is silent.
	Silence time.Duration
}

// DefaultSilence is how long tpm waits for a daemon that says nothing.
const DefaultSilence = 30 * time.Second

// sendTimeout bounds the sending of a request: a daemon that leaves its
// FIFO full that long is as good as gone.
const sendTimeout = 10 * time.Second

// livenessCheck is how often a call waiting for a reply checks that the
// daemon still reads its FIFO, so a daemon that dies never leaves it
// waiting forever.
const livenessCheck = time.Second

// ErrStopped is the cause when the daemon stopped reading its FIFO while a
// call waited for its reply.
var ErrStopped = errors.New("tpmd stopped while answering")

// ErrSilent is the cause when the daemon said nothing for Silence.
var ErrSilent = errors.New("tpmd did not answer in time")

// DaemonError is a request the daemon answered with an error reply.
type DaemonError struct {
	Verb    string
	Message string // the daemon's one line
}

func (e *DaemonError) Error() string { return e.Message }

// userError is an error whose text is the one line for the user, with its
// cause kept for errors.Is.
type userError struct {
	msg   string
	cause error
}

func (e *userError) Error() string { return e.msg }
func (e *userError) Unwrap() error { return e.cause }

// Call sends req and passes every non-final reply for it to each (when not
// nil) until the final one, which it returns; "alive" replies only keep
// the call waiting. V is filled in when zero, Prefix is c.Prefix when
// empty. An error reply becomes a *DaemonError; an error from each stops
// the call.
func (c *Client) Call(ctx context.Context, req wire.Request, each func(*wire.Reply) error) (*wire.Reply, error) {
	body, err := c.encode(&req)
	if err != nil {
		return nil, err
	}
	out, err := c.send(ctx, req.Verb, body)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	maxReply := fifo.MaxReplyLine
	if c.MaxReply > 0 {
		maxReply = c.MaxReply
	}
	out.SetMaxLine(maxReply)
	silence := c.Silence
	if silence <= 0 {
		silence = DefaultSilence
	}
	queryFIFO := fifo.Path(c.RunDir, false)
	heard := time.Now()
	for {
		wait, cancel := context.WithTimeout(ctx, min(livenessCheck, silence))
		raw, err := out.ReadLine(wait)
		cancel()
		switch {
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			if !fifo.Alive(queryFIFO) {
				return nil, &userError{"tpmd stopped while answering; start it again and check with tpm status", ErrStopped}
			}
			if time.Since(heard) >= silence {
				return nil, &userError{fmt.Sprintf("tpmd did not answer within %v: is it stuck? see its log", silence), ErrSilent}
			}
			continue
		case errors.Is(err, fifo.ErrTooLong):
			return nil, &userError{fmt.Sprintf("tpmd sent a reply line longer than %d bytes; are tpm and tpmd from the same release?", maxReply), err}
		case err != nil:
			return nil, fmt.Errorf("waiting for tpmd's answer to %s: %w", req.Verb, err)
		}
		heard = time.Now()
		if final, err := c.take(raw, out.Token(), req.Verb, each); final != nil || err != nil {
			return final, err
		}
	}
}

// encode fills in what req leaves to the client (the protocol version, the
// client's prefix) and encodes it, refused when longer than tpmd takes.
func (c *Client) encode(req *wire.Request) ([]byte, error) {
	if req.V == 0 {
		req.V = wire.ProtocolVersion
	}
	if req.Prefix == "" {
		req.Prefix = c.Prefix
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode the %s request: %w", req.Verb, err)
	}
	if len(body) > wire.MaxRequest {
		return nil, fmt.Errorf("the %s request is longer than tpmd takes (%d bytes): name fewer packages at once", req.Verb, wire.MaxRequest)
	}
	return body, nil
}

// take reads one reply line: the final reply (or the error an error reply
// or each makes) ends the call; other requests' lines and "alive" are
// passed over.
func (c *Client) take(raw []byte, token, verb string, each func(*wire.Reply) error) (*wire.Reply, error) {
	var r wire.Reply
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, &userError{fmt.Sprintf("tpmd sent a line that is not a reply (%v); are tpm and tpmd from the same release?", err), err}
	}
	switch {
	case r.ID != token, r.Type == wire.ReplyAlive:
	case r.Type == wire.ReplyError:
		msg := r.Error
		if msg == "" {
			msg = "tpmd refused the " + verb + " request without saying why; see its log"
		}
		return nil, &DaemonError{Verb: verb, Message: msg}
	case r.Final():
		return &r, nil
	case each != nil:
		if err := each(&r); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// send leaves the request in the daemon's spool and announces it on the
// FIFO its verb belongs on, saying in one line what to do when that fails.
func (c *Client) send(ctx context.Context, verb string, body []byte) (*fifo.Outgoing, error) {
	admin := wire.IsAdmin(verb)
	path := fifo.Path(c.RunDir, admin)
	notRunning := func(err error) error {
		return &userError{fmt.Sprintf("tpmd is not running (nothing reads %s): start it (systemctl start tpmd, or tpmd client --server URL --trusted-key FILE), or use tpm --offline", path), err}
	}
	denied := func(err error) error {
		if admin {
			return &userError{fmt.Sprintf("you may not ask tpmd to change this host (%s): run tpm as root", path), err}
		}
		return &userError{fmt.Sprintf("you may not talk to tpmd (%s): ask an administrator", path), err}
	}
	out, err := fifo.NewOutgoing(filepath.Join(c.RunDir, fifo.SpoolDir))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, notRunning(fmt.Errorf("%w: %w", fifo.ErrNoDaemon, err))
	case errors.Is(err, fs.ErrPermission):
		return nil, denied(err)
	case err != nil:
		return nil, err
	}
	sendCtx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	err = out.Send(sendCtx, path, body, adminGroup(admin, path))
	switch {
	case err == nil:
		return out, nil
	case errors.Is(err, fifo.ErrNoDaemon):
		err = notRunning(err)
	case errors.Is(err, fs.ErrPermission):
		err = denied(err)
	case ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded):
		err = &userError{fmt.Sprintf("tpmd did not take the request within %v (%s); check it with tpm status", sendTimeout, path), err}
	}
	out.Close()
	return nil, err
}

// adminGroup is the group a user who is not root gives an admin request:
// the admin FIFO's, when that group may write it. The kernel lets a user
// give a file only a group it belongs to, so the daemon takes the group as
// proof of membership.
func adminGroup(admin bool, path string) int {
	if !admin || os.Geteuid() == 0 {
		return -1
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm()&0o020 == 0 {
		return -1
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return -1
	}
	return int(st.Gid)
}

// decode reads a result's data as the verb's type.
func decode[T any](verb string, r *wire.Reply) (T, error) {
	var out T
	if len(r.Data) == 0 {
		return out, nil
	}
	if err := json.Unmarshal(r.Data, &out); err != nil {
		return out, &userError{fmt.Sprintf("tpmd's answer to %s is not what this tpm expects (%v); are tpm and tpmd from the same release?", verb, err), err}
	}
	return out, nil
}

// query runs a request without a stream and decodes its result.
func query[T any](ctx context.Context, c *Client, req wire.Request) (T, error) {
	r, err := c.Call(ctx, req, nil)
	if err != nil {
		var zero T
		return zero, err
	}
	return decode[T](req.Verb, r)
}

// stream runs a request whose result comes in "items" parts, in order,
// and gathers them.
func stream[T any](ctx context.Context, c *Client, req wire.Request) ([]T, error) {
	out := []T{}
	err := streamEach(ctx, c, req, func(part []T) error {
		out = append(out, part...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// streamEach runs a request whose result comes in "items" parts and
// passes each to each as it comes.
func streamEach[T any](ctx context.Context, c *Client, req wire.Request, each func([]T) error) error {
	_, err := c.Call(ctx, req, func(r *wire.Reply) error {
		if r.Type != wire.ReplyItems {
			return nil
		}
		part, err := decode[[]T](req.Verb, r)
		if err != nil {
			return err
		}
		return each(part)
	})
	return err
}

// Status describes the daemon: index, seeding, peers, traffic.
func (c *Client) Status(ctx context.Context) (wire.Status, error) {
	return query[wire.Status](ctx, c, wire.Request{Verb: wire.VerbStatus})
}

// Search finds the index's packages whose name or description has word.
func (c *Client) Search(ctx context.Context, word string) ([]wire.SearchResult, error) {
	return query[[]wire.SearchResult](ctx, c, wire.Request{Verb: wire.VerbSearch, Args: []string{word}})
}

// Info describes the newest version of a package of the index.
func (c *Client) Info(ctx context.Context, name string) (wire.PackageInfo, error) {
	return query[wire.PackageInfo](ctx, c, wire.Request{Verb: wire.VerbInfo, Args: []string{name}})
}

// List is every installed package.
func (c *Client) List(ctx context.Context) ([]wire.InstalledPackage, error) {
	return stream[wire.InstalledPackage](ctx, c, wire.Request{Verb: wire.VerbList})
}

// Files lists what the named installed packages own.
func (c *Client) Files(ctx context.Context, names []string) ([]wire.PackageFile, error) {
	return stream[wire.PackageFile](ctx, c, wire.Request{Verb: wire.VerbFiles, Args: names})
}

// Owns says which packages own the absolute paths.
func (c *Client) Owns(ctx context.Context, paths []string) ([]wire.Owner, error) {
	return query[[]wire.Owner](ctx, c, wire.Request{Verb: wire.VerbOwns, Args: paths})
}

// Verify compares the disk with the receipts of names (all when none).
func (c *Client) Verify(ctx context.Context, names []string) ([]wire.Problem, error) {
	return stream[wire.Problem](ctx, c, wire.Request{Verb: wire.VerbVerify, Args: names})
}

// Plan says what an install (or with opts.Upgrade, an upgrade) of args
// would do, without doing it.
func (c *Client) Plan(ctx context.Context, args []string, opts wire.Options) (wire.PlanResult, error) {
	return query[wire.PlanResult](ctx, c, wire.Request{Verb: wire.VerbPlan, Args: args, Options: opts})
}

// Install installs packages with what they need; expect (when not nil)
// pins it to the plan the user confirmed. each gets the stream (plan,
// progress, output, skipped, done, log); the result is every package done.
func (c *Client) Install(ctx context.Context, names []string, opts wire.Options, expect map[string]string, each func(*wire.Reply) error) ([]wire.OpResult, error) {
	return c.transaction(ctx, wire.Request{Verb: wire.VerbInstall, Args: names, Options: opts, Expect: expect}, each)
}

// Upgrade upgrades the named packages (all installed ones when none is
// named), as Install does.
func (c *Client) Upgrade(ctx context.Context, names []string, opts wire.Options, expect map[string]string, each func(*wire.Reply) error) ([]wire.OpResult, error) {
	return c.transaction(ctx, wire.Request{Verb: wire.VerbUpgrade, Args: names, Options: opts, Expect: expect}, each)
}

// Remove removes installed packages (with opts.Cascade, what needs them
// too; with opts.Autoremove, what is no longer needed), streaming to each
// as Install does; expect (when not nil) pins it to the plan confirmed.
func (c *Client) Remove(ctx context.Context, names []string, opts wire.Options, expect map[string]string, each func(*wire.Reply) error) ([]wire.OpResult, error) {
	return c.transaction(ctx, wire.Request{Verb: wire.VerbRemove, Args: names, Options: opts, Expect: expect}, each)
}

// Autoremove removes the packages installed as dependencies that nothing
// installed needs any more, as Remove does.
func (c *Client) Autoremove(ctx context.Context, expect map[string]string, each func(*wire.Reply) error) ([]wire.OpResult, error) {
	return c.transaction(ctx, wire.Request{Verb: wire.VerbAutoremove, Expect: expect}, each)
}

// Undo reverts transaction id (verb undo) or every transaction after it
// (verb rollback), pinned to the plan the user confirmed, as Install.
func (c *Client) Undo(ctx context.Context, verb, id string, expect map[string]string, each func(*wire.Reply) error) ([]wire.OpResult, error) {
	return c.transaction(ctx, wire.Request{Verb: verb, Args: []string{id}, Expect: expect}, each)
}

// Clean drops from the host's cache the versions no prefix has installed.
func (c *Client) Clean(ctx context.Context) ([]wire.Cleaned, error) {
	return query[[]wire.Cleaned](ctx, c, wire.Request{Verb: wire.VerbClean})
}

// Mark sets a mark on installed packages: verb is mark (args: auto or
// manual, then names), hold or unhold (args: names).
func (c *Client) Mark(ctx context.Context, verb string, args []string) ([]wire.Marked, error) {
	return query[[]wire.Marked](ctx, c, wire.Request{Verb: verb, Args: args})
}

// History lists the transactions, newest first, or (with an id) one whole.
func (c *Client) History(ctx context.Context, args []string) ([]wire.Transaction, error) {
	return stream[wire.Transaction](ctx, c, wire.Request{Verb: wire.VerbHistory, Args: args})
}

// HistoryEach is History that passes each part to each as it comes, so a
// long history is shown as it is read.
func (c *Client) HistoryEach(ctx context.Context, args []string, each func([]wire.Transaction) error) error {
	return streamEach(ctx, c, wire.Request{Verb: wire.VerbHistory, Args: args}, each)
}

func (c *Client) transaction(ctx context.Context, req wire.Request, each func(*wire.Reply) error) ([]wire.OpResult, error) {
	r, err := c.Call(ctx, req, each)
	if err != nil {
		return nil, err
	}
	return decode[[]wire.OpResult](req.Verb, r)
}

// Sync makes the daemon fetch the repository's index now.
func (c *Client) Sync(ctx context.Context) (wire.SyncResult, error) {
	return query[wire.SyncResult](ctx, c, wire.Request{Verb: wire.VerbSync})
}
