// Package local is the client of the tpmd daemon on this host: requests go
// as JSON lines into its FIFOs (package fifo), replies come back on a
// private reply FIFO. Call is the one request/reply loop; the methods named
// for the verbs wrap it with the wire protocol's types (package messages).
package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"tpm/fifo"
	"tpm/messages"
)

// Client talks to the tpmd client daemon whose FIFOs are in RunDir. The zero
// value is not useful: RunDir must be set. A Client holds no connection, so
// one may serve any number of calls, at once too.
type Client struct {
	RunDir string
	// TempDir is where reply FIFOs get their private directories ("":
	// os.TempDir()).
	TempDir string
	// Prefix is sent with requests that name none; "" leaves the choice to
	// the daemon (its --prefix).
	Prefix string
	// MaxReply bounds one reply line (0: fifo.MaxReplyLine).
	MaxReply int
}

// sendTimeout bounds the sending of a request: a daemon that holds the
// lockfile or leaves its FIFO full that long is as good as gone.
const sendTimeout = 10 * time.Second

// livenessCheck is how often a call waiting for a reply checks that the
// daemon still reads its FIFO, so a daemon that dies never leaves it
// waiting forever.
const livenessCheck = time.Second

// ErrStopped is the cause when the daemon stopped reading its FIFO while a
// call waited for its reply.
var ErrStopped = errors.New("tpmd stopped while answering")

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
// nil) until the final one, which it returns. V, ID and Reply are filled in
// only when zero (a request naming another reply FIFO gets its answer
// there, so Call waits until ctx ends); Prefix is c.Prefix when empty. An
// error reply becomes a *DaemonError; an error from each stops the call.
// Replies with another id (anyone may name our FIFO as theirs) are skipped.
func (c *Client) Call(ctx context.Context, req messages.Request, each func(*messages.Reply) error) (*messages.Reply, error) {
	reply, err := fifo.NewReply(c.tempDir())
	if err != nil {
		return nil, err
	}
	defer reply.Close()
	maxReply := fifo.MaxReplyLine
	if c.MaxReply > 0 {
		maxReply = c.MaxReply
	}
	reply.SetMaxLine(maxReply)
	if req.V == 0 {
		req.V = messages.ProtocolVersion
	}
	if req.ID == "" {
		req.ID = newID()
	}
	if req.Reply == "" {
		req.Reply = reply.Path()
	}
	if req.Prefix == "" {
		req.Prefix = c.Prefix
	}
	line, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode the %s request: %w", req.Verb, err)
	}
	if len(line) > messages.MaxRequest {
		// The daemon drops such a line unread, so it could not even say no.
		return nil, fmt.Errorf("the %s request is longer than tpmd takes (%d bytes): name fewer packages at once", req.Verb, messages.MaxRequest)
	}
	if err := c.send(ctx, req.Verb, line); err != nil {
		return nil, err
	}
	queryFIFO, _ := fifo.Paths(c.RunDir, false)
	for {
		wait, cancel := context.WithTimeout(ctx, livenessCheck)
		raw, err := reply.ReadLine(wait)
		cancel()
		switch {
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			if !fifo.Alive(queryFIFO) {
				return nil, &userError{"tpmd stopped while answering; start it again and check with tpm status", ErrStopped}
			}
			continue
		case errors.Is(err, fifo.ErrTooLong):
			return nil, &userError{fmt.Sprintf("tpmd sent a reply line longer than %d bytes; are tpm and tpmd from the same release?", maxReply), err}
		case err != nil:
			return nil, fmt.Errorf("waiting for tpmd's answer to %s: %w", req.Verb, err)
		}
		var r messages.Reply
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, &userError{fmt.Sprintf("tpmd sent a line that is not a reply (%v); are tpm and tpmd from the same release?", err), err}
		}
		if r.ID != req.ID {
			continue
		}
		switch {
		case r.Type == messages.ReplyError:
			msg := r.Error
			if msg == "" {
				msg = "tpmd refused the " + req.Verb + " request without saying why; see its log"
			}
			return nil, &DaemonError{Verb: req.Verb, Message: msg}
		case r.Final():
			return &r, nil
		case each != nil:
			if err := each(&r); err != nil {
				return nil, err
			}
		}
	}
}

// send writes one request line to the FIFO its verb belongs on, saying in
// one line what to do when that fails.
func (c *Client) send(ctx context.Context, verb string, line []byte) error {
	admin := messages.IsAdmin(verb)
	path, lock := fifo.Paths(c.RunDir, admin)
	sendCtx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	err := fifo.Send(sendCtx, path, lock, line)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fifo.ErrNoDaemon):
		return &userError{fmt.Sprintf("tpmd is not running (nothing reads %s): start it (systemctl start tpmd, or tpmd client --server URL --trusted-key FILE), or use tpm --offline", path), err}
	case errors.Is(err, fs.ErrPermission) && admin:
		return &userError{fmt.Sprintf("you may not ask tpmd to change this host (%s): run tpm as root", path), err}
	case errors.Is(err, fs.ErrPermission):
		return &userError{fmt.Sprintf("you may not talk to tpmd (%s): ask an administrator", path), err}
	case ctx.Err() == nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded)):
		return &userError{fmt.Sprintf("tpmd did not take the request within %v (%s); check it with tpm status", sendTimeout, path), err}
	}
	return err
}

func newID() string {
	b := make([]byte, 8)
	rand.Read(b) // never fails (crypto/rand panics rather)
	return hex.EncodeToString(b)
}

// decode reads a result's data as the verb's type.
func decode[T any](verb string, r *messages.Reply) (T, error) {
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
func query[T any](ctx context.Context, c *Client, req messages.Request) (T, error) {
	r, err := c.Call(ctx, req, nil)
	if err != nil {
		var zero T
		return zero, err
	}
	return decode[T](req.Verb, r)
}

// Status describes the daemon: index, seeding, peers, traffic.
func (c *Client) Status(ctx context.Context) (messages.Status, error) {
	return query[messages.Status](ctx, c, messages.Request{Verb: messages.VerbStatus})
}

// Search finds the index's packages whose name or description has word.
func (c *Client) Search(ctx context.Context, word string) ([]messages.SearchResult, error) {
	return query[[]messages.SearchResult](ctx, c, messages.Request{Verb: messages.VerbSearch, Args: []string{word}})
}

// Info describes the newest version of a package of the index.
func (c *Client) Info(ctx context.Context, name string) (messages.PackageInfo, error) {
	return query[messages.PackageInfo](ctx, c, messages.Request{Verb: messages.VerbInfo, Args: []string{name}})
}

// List is every installed package.
func (c *Client) List(ctx context.Context) ([]messages.InstalledPackage, error) {
	return query[[]messages.InstalledPackage](ctx, c, messages.Request{Verb: messages.VerbList})
}

// Files lists what the named installed packages own.
func (c *Client) Files(ctx context.Context, names []string) ([]messages.PackageFile, error) {
	return query[[]messages.PackageFile](ctx, c, messages.Request{Verb: messages.VerbFiles, Args: names})
}

// Owns says which packages own the absolute paths.
func (c *Client) Owns(ctx context.Context, paths []string) ([]messages.Owner, error) {
	return query[[]messages.Owner](ctx, c, messages.Request{Verb: messages.VerbOwns, Args: paths})
}

// Verify compares the disk with the receipts of names (all when none).
func (c *Client) Verify(ctx context.Context, names []string) ([]messages.Problem, error) {
	return query[[]messages.Problem](ctx, c, messages.Request{Verb: messages.VerbVerify, Args: names})
}

// Plan says what an install (or with opts.Upgrade, an upgrade) of args
// would do, without doing it.
func (c *Client) Plan(ctx context.Context, args []string, opts messages.Options) (messages.PlanResult, error) {
	return query[messages.PlanResult](ctx, c, messages.Request{Verb: messages.VerbPlan, Args: args, Options: opts})
}

// Install installs packages with what they need; expect (when not nil)
// pins it to the plan the user confirmed. each gets the stream (plan,
// progress, output, skipped, done, log); the result is every package done.
func (c *Client) Install(ctx context.Context, names []string, opts messages.Options, expect map[string]string, each func(*messages.Reply) error) ([]messages.OpResult, error) {
	return c.transaction(ctx, messages.Request{Verb: messages.VerbInstall, Args: names, Options: opts, Expect: expect}, each)
}

// Upgrade upgrades the named packages (all installed ones when none is
// named), as Install does.
func (c *Client) Upgrade(ctx context.Context, names []string, opts messages.Options, expect map[string]string, each func(*messages.Reply) error) ([]messages.OpResult, error) {
	return c.transaction(ctx, messages.Request{Verb: messages.VerbUpgrade, Args: names, Options: opts, Expect: expect}, each)
}

// Remove removes installed packages (with opts.Cascade, what needs them
// too), streaming to each as Install does.
func (c *Client) Remove(ctx context.Context, names []string, opts messages.Options, each func(*messages.Reply) error) ([]messages.OpResult, error) {
	return c.transaction(ctx, messages.Request{Verb: messages.VerbRemove, Args: names, Options: opts}, each)
}

func (c *Client) transaction(ctx context.Context, req messages.Request, each func(*messages.Reply) error) ([]messages.OpResult, error) {
	r, err := c.Call(ctx, req, each)
	if err != nil {
		return nil, err
	}
	return decode[[]messages.OpResult](req.Verb, r)
}

// Sync makes the daemon fetch the repository's index now.
func (c *Client) Sync(ctx context.Context) (messages.SyncResult, error) {
	return query[messages.SyncResult](ctx, c, messages.Request{Verb: messages.VerbSync})
}

func (c *Client) tempDir() string {
	if c.TempDir == "" {
		return os.TempDir()
	}
	return c.TempDir
}
