package messages

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
)

// The FIFO wire protocol between tpm and tpmd client. A request is one JSON
// line written to query.fifo (read-only verbs) or admin.fifo (verbs that
// change the host); the daemon answers on the request's reply FIFO with a
// stream of Reply lines that ends with exactly one "result" or "error".

// ProtocolVersion changes whenever a field changes meaning; the daemon
// refuses requests of another version with a message saying so.
const ProtocolVersion = 1

// MaxRequest bounds one request line; longer lines are refused unread.
const MaxRequest = 64 << 10

// Verbs by the FIFO they are allowed on.
var (
	QueryVerbs = []string{"search", "info", "list", "files", "owns", "status", "plan", "verify"}
	AdminVerbs = []string{"install", "remove", "upgrade", "sync"}
)

// Request is one CLI request.
type Request struct {
	V      int      `json:"v"`
	ID     string   `json:"id"`
	Verb   string   `json:"verb"`
	Args   []string `json:"args,omitempty"`
	Prefix string   `json:"prefix,omitempty"`
	// Options of the verb: cascade, allow_downgrade, reinstall, as_plan ...
	Options map[string]bool `json:"options,omitempty"`
	// Expect pins an install to the plan the user confirmed: name → version.
	// The daemon refuses when its plan differs (the index changed meanwhile).
	Expect map[string]string `json:"expect,omitempty"`
	Reply  string            `json:"reply"`
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ParseRequest decodes and checks one request line. The returned request
// is nil when not even a reply FIFO could be read from the line; otherwise
// an error still comes with the request, so the daemon can answer it.
func ParseRequest(line []byte, allowed []string) (*Request, error) {
	if len(line) > MaxRequest {
		return nil, fmt.Errorf("request is longer than %d bytes", MaxRequest)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	var r Request
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("request is not valid JSON: %v", err)
	}
	if dec.More() {
		return nil, errors.New("request has data after the JSON object")
	}
	if r.Reply == "" || !filepath.IsAbs(r.Reply) {
		return nil, errors.New("request names no absolute reply FIFO")
	}
	if !idPattern.MatchString(r.ID) {
		return &r, fmt.Errorf("request id %q is not 1-64 letters, digits, _ or -", r.ID)
	}
	if r.V != ProtocolVersion {
		return &r, fmt.Errorf("protocol version %d is not %d: tpm and tpmd are from different releases", r.V, ProtocolVersion)
	}
	for _, v := range allowed {
		if v == r.Verb {
			return &r, nil
		}
	}
	return &r, fmt.Errorf("%q is not a request this FIFO takes", r.Verb)
}

// Reply types.
const (
	ReplyLog      = "log"      // a line for the user (script output, notes)
	ReplyPlan     = "plan"     // what an install would do
	ReplyProgress = "progress" // download and install progress
	ReplyResult   = "result"   // the end: success, with data
	ReplyError    = "error"    // the end: failure, one line
)

// Reply is one line of the daemon's answer.
type Reply struct {
	ID       string          `json:"id"`
	Type     string          `json:"type"`
	Text     string          `json:"text,omitempty"`
	Error    string          `json:"error,omitempty"`
	Plan     []PlanItem      `json:"plan,omitempty"`
	Progress *Progress       `json:"progress,omitempty"`
	Data     json.RawMessage `json:"data,omitempty"`
}

// Final says whether r ends the stream.
func (r *Reply) Final() bool { return r.Type == ReplyResult || r.Type == ReplyError }

// PlanItem is one package of a plan.
type PlanItem struct {
	Action     string `json:"action"`
	Name       string `json:"name"`
	Version    string `json:"version"`
	OldVersion string `json:"old_version,omitempty"`
	Requested  bool   `json:"requested"`
	Size       int64  `json:"size,omitempty"`
}

// Progress reports one package's download or install.
type Progress struct {
	Package string  `json:"package"`
	Stage   string  `json:"stage"` // "download", "verify", "install", "done"
	Bytes   int64   `json:"bytes"`
	Total   int64   `json:"total"`
	Rate    float64 `json:"rate,omitempty"` // bytes per second
	Peers   int     `json:"peers,omitempty"`
}

// OpResult is one package an install, upgrade or remove changed: the
// result Data of those requests is a list of them.
type OpResult struct {
	Action     string   `json:"action"`
	Name       string   `json:"name"`
	Version    string   `json:"version"`
	OldVersion string   `json:"old_version,omitempty"`
	Warnings   []string `json:"warnings"`
}

// Status is the result Data of a status request.
type Status struct {
	PID              int     `json:"pid"`
	UptimeSeconds    float64 `json:"uptime_seconds"`
	Server           string  `json:"server"`
	IndexGeneration  uint64  `json:"index_generation"`
	IndexAgeSeconds  float64 `json:"index_age_seconds"`
	IndexPackages    int     `json:"index_packages"`
	Seeding          int     `json:"seeding"`
	Peers            int     `json:"peers"`
	BytesUp          int64   `json:"bytes_up"`
	BytesDown        int64   `json:"bytes_down"`
	Installing       string  `json:"installing"`
	TorrentPort      int     `json:"torrent_port"`
	IndexFetchedSecs float64 `json:"index_fetched_seconds_ago"`
}
