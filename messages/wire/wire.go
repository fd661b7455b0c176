// Package wire is the versioned protocol between tpm and tpmd client:
// requests, the replies that answer them, and the data of each verb's
// result. It is plain JSON-encoded data and imports nothing of the project,
// so a CLI of another release decodes it, and any package may speak it.
package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// The wire protocol between tpm and tpmd client. A request is one JSON
// object in a request file that package fifo carries to the daemon,
// announced on query.fifo (read-only verbs) or admin.fifo (verbs that
// change the host); the daemon answers on the request's reply FIFO with a
// stream of Reply lines that ends with exactly one "result" or "error".
// tpm --json prints the same Reply lines (without the id), whether the
// daemon or the offline engine did the work.

// ProtocolVersion changes whenever a field changes meaning; the daemon
// refuses requests of another version with a message saying so.
const ProtocolVersion = 3

// AliveEvery is how often the daemon says a request it works on is alive
// when it has said nothing else; tpm gives up after a silence of three.
const AliveEvery = 10 * time.Second

// MaxRequest bounds one request; longer ones are refused unread.
const MaxRequest = 64 << 10

// The verbs.
const (
	VerbSearch  = "search"
	VerbInfo    = "info"
	VerbList    = "list"
	VerbFiles   = "files"
	VerbOwns    = "owns"
	VerbStatus  = "status"
	VerbPlan    = "plan"
	VerbVerify  = "verify"
	VerbInstall = "install"
	VerbUpgrade = "upgrade"
	VerbRemove  = "remove"
	VerbSync    = "sync"
	// Issue 28's verbs: orphans, marks, holds, history.
	VerbAutoremove = "autoremove"
	VerbMark       = "mark"
	VerbHold       = "hold"
	VerbUnhold     = "unhold"
	VerbHistory    = "history"
	VerbUndo       = "undo"     // args: a transaction's number
	VerbRollback   = "rollback" // args: a transaction's number
	VerbClean      = "clean"
)

// Verbs by the FIFO they are allowed on.
var (
	QueryVerbs = []string{VerbSearch, VerbInfo, VerbList, VerbFiles, VerbOwns, VerbStatus, VerbPlan, VerbVerify, VerbHistory}
	AdminVerbs = []string{VerbInstall, VerbRemove, VerbUpgrade, VerbSync, VerbAutoremove, VerbMark, VerbHold, VerbUnhold, VerbUndo, VerbRollback, VerbClean}
)

// IsAdmin says whether verb changes the host, so it goes to admin.fifo.
func IsAdmin(verb string) bool { return slices.Contains(AdminVerbs, verb) }

// Request is one CLI request.
type Request struct {
	V int `json:"v"`
	// ID and UID are the transport's: the request's token, which its
	// replies carry, and the uid the kernel says made it.
	ID      string   `json:"-"`
	UID     int      `json:"-"`
	Verb    string   `json:"verb"`
	Args    []string `json:"args,omitempty"`
	Prefix  string   `json:"prefix,omitempty"`
	Options Options  `json:"options,omitzero"`
	// Expect pins an install to the plan the user confirmed: name → version.
	// The daemon refuses when its plan differs (the index changed meanwhile).
	Expect map[string]string `json:"expect,omitempty"`
}

// Options are the verbs' switches; each verb reads those it has.
type Options struct {
	Upgrade        bool `json:"upgrade,omitempty"`         // plan: an upgrade rather than an install (set for the upgrade verb too)
	Reinstall      bool `json:"reinstall,omitempty"`       // install, plan
	AllowDowngrade bool `json:"allow_downgrade,omitempty"` // install, upgrade, plan
	Cascade        bool `json:"cascade,omitempty"`         // remove, plan
	Autoremove     bool `json:"autoremove,omitempty"`      // remove, plan: also what is no longer needed
	Remove         bool `json:"remove,omitempty"`          // plan: a removal rather than an install
	Undo           bool `json:"undo,omitempty"`            // plan: an undo of the transaction in args
	Rollback       bool `json:"rollback,omitempty"`        // plan: a rollback to the transaction in args
}

// ParseRequest decodes and checks one request for a FIFO that takes the
// allowed verbs.
func ParseRequest(b []byte, allowed []string) (*Request, error) {
	if len(b) > MaxRequest {
		return nil, fmt.Errorf("request is longer than %d bytes", MaxRequest)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var r Request
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("request is not valid JSON: %v", err)
	}
	if dec.More() {
		return nil, errors.New("request has data after the JSON object")
	}
	if r.V != ProtocolVersion {
		return nil, fmt.Errorf("protocol version %d is not %d: tpm and tpmd are from different releases", r.V, ProtocolVersion)
	}
	if !slices.Contains(allowed, r.Verb) {
		if IsAdmin(r.Verb) {
			return nil, fmt.Errorf("%s changes the host: it must be sent to the admin FIFO (as root or the admin group)", r.Verb)
		}
		return nil, fmt.Errorf("%q is not a request this FIFO takes", r.Verb)
	}
	return &r, nil
}

// Reply types.
const (
	ReplyLog       = "log"       // a note for the user (Text)
	ReplyPlan      = "plan"      // what an install, upgrade or remove will do (Plan)
	ReplyProgress  = "progress"  // a package's download or install (Progress)
	ReplyOutput    = "output"    // a line a package script or source build printed (Output)
	ReplySkipped   = "skipped"   // a package asked for that needs nothing done (Skipped)
	ReplyDone      = "done"      // one package changed, as it happens (Done)
	ReplyRecovered = "recovered" // tpm --offline finished a transaction a crash left (Recovered)
	ReplyItems     = "items"     // a part of a long result (list, files, verify), in order (Data)
	ReplyAlive     = "alive"     // the daemon still works on the request (never shown)
	ReplyResult    = "result"    // the end: success, with the verb's Data
	ReplyError     = "error"     // the end: failure, one line (Error)
)

// Reply is one line of the daemon's answer, and one line of tpm --json.
// Type says which one field besides ID is set.
type Reply struct {
	ID        string          `json:"id,omitempty"`
	Type      string          `json:"type"`
	Text      string          `json:"text,omitempty"`
	Error     string          `json:"error,omitempty"`
	Plan      []PlanItem      `json:"plan,omitempty"`
	Progress  *Progress       `json:"progress,omitempty"`
	Output    *Output         `json:"output,omitempty"`
	Skipped   *Skipped        `json:"skipped,omitempty"`
	Done      *OpResult       `json:"done,omitempty"`
	Recovered *Recovered      `json:"recovered,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`
}

// Final says whether r ends the stream.
func (r *Reply) Final() bool { return r.Type == ReplyResult || r.Type == ReplyError }

// Result makes the final reply that carries data, the verb's result.
func Result(data any) (*Reply, error) {
	b, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("encode the result: %w", err)
	}
	return &Reply{Type: ReplyResult, Data: b}, nil
}

// Failure makes the final reply of a request that failed.
func Failure(msg string) *Reply { return &Reply{Type: ReplyError, Error: msg} }

// OneLine folds an error's text into the one line an error reply carries:
// a wrapped cause may bring newlines (a script's output, a path list).
func OneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// PlanItem is one package of a plan.
type PlanItem struct {
	Action     string `json:"action"`
	Name       string `json:"name"`
	Version    string `json:"version"`
	OldVersion string `json:"old_version,omitempty"`
	Requested  bool   `json:"requested"`
	Size       int64  `json:"size,omitempty"`
	// For is the virtual name a provider was chosen for, and Alternatives
	// the other providers it was chosen over (a plan with them asks).
	For          string   `json:"for,omitempty"`
	Alternatives []string `json:"alternatives,omitempty"`
	// ReplacedBy is, for a removal, the package of the plan that conflicts
	// with and replaces it.
	ReplacedBy string `json:"replaced_by,omitempty"`
	// Unneeded is, for a removal, a package installed as a dependency
	// that nothing left needs (autoremove).
	Unneeded bool `json:"unneeded,omitempty"`
}

// Progress stages.
const (
	StageDownload = "download"
	StageVerify   = "verify"
	StageInstall  = "install"
	StageDone     = "done"
)

// Progress reports one package's download or install.
type Progress struct {
	Package string  `json:"package"`
	Stage   string  `json:"stage"`
	Bytes   int64   `json:"bytes"`
	Total   int64   `json:"total"`
	Rate    float64 `json:"rate,omitempty"` // bytes per second
	Peers   int     `json:"peers,omitempty"`
}

// Output is one line a package's script printed (Step is the script:
// postinstall, ...) or its source build (Step is unpack, configure, make,
// make install, cleanup or done).
type Output struct {
	Package string `json:"package"`
	Step    string `json:"step"`
	Line    string `json:"line"`
}

// Skipped is a package asked for that needs nothing done.
type Skipped struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Why     string `json:"why"`
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

// Recovered is a transaction that a crash interrupted and the next command
// finished (Completed) or undid (RolledBack).
type Recovered struct {
	Transaction   string   `json:"transaction"`
	Prefix        string   `json:"prefix"`
	Completed     []string `json:"completed"`
	RolledBack    []string `json:"rolled_back"`
	ScriptsNotRun []string `json:"scripts_not_run"`
}

// The result Data of each verb.

// SearchResult is one package search found (the result of search is a
// list of them, by name).
type SearchResult struct {
	Name        string `json:"name"`
	Version     string `json:"version"`
	Description string `json:"description"`
	Installed   string `json:"installed"` // the installed version, or ""
}

// PackageInfo is the result of info: a package of the index.
type PackageInfo struct {
	Name         string     `json:"name"`
	Version      string     `json:"version"`
	Architecture string     `json:"architecture"`
	Type         string     `json:"type"`
	Maintainer   string     `json:"maintainer"`
	Description  string     `json:"description"`
	Dependencies []string   `json:"dependencies"`
	Provides     []string   `json:"provides,omitempty"`
	Conflicts    []string   `json:"conflicts,omitempty"`
	Replaces     []string   `json:"replaces,omitempty"`
	File         string     `json:"file"`
	Size         int64      `json:"size"`
	SHA256       string     `json:"sha256"`
	InfoHash     string     `json:"infohash"`
	Installed    *Installed `json:"installed"` // nil when not installed
}

// Installed is what a host has of a package.
type Installed struct {
	Version     string    `json:"version"`
	Reason      string    `json:"reason"` // explicit or dependency
	InstalledAt time.Time `json:"installed_at"`
}

// InstalledPackage is one package of list's result.
type InstalledPackage struct {
	Name         string    `json:"name"`
	Version      string    `json:"version"`
	Architecture string    `json:"architecture"`
	Reason       string    `json:"reason"`
	InstalledAt  time.Time `json:"installed_at"`
	Prefix       string    `json:"prefix"`
	Held         bool      `json:"held,omitempty"` // tpm hold keeps it at its version
}

// PackageFile is one path of files' result.
type PackageFile struct {
	Package string `json:"package"`
	Path    string `json:"path"` // absolute
	Type    string `json:"type"` // file, dir or symlink
	Mode    string `json:"mode"` // octal permission bits
	SHA256  string `json:"sha256,omitempty"`
	Link    string `json:"link,omitempty"`
}

// Owner is one answer of owns: the package that owns a path.
type Owner struct {
	Path    string `json:"path"`
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Problem is one difference verify found between the disk and a receipt.
type Problem struct {
	Package string `json:"package"`
	Path    string `json:"path"`
	Kind    string `json:"kind"`
	Detail  string `json:"detail"`
}

// PlanResult is the result of plan.
type PlanResult struct {
	Plan []PlanItem `json:"plan"`
	// Skipped are the packages an upgrade leaves as they are: held.
	Skipped []Skipped `json:"skipped,omitempty"`
}

// Cleaned is one file of the result of clean: a version no prefix has
// installed, dropped from the host's cache.
type Cleaned struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	File    string `json:"file"`
	Size    int64  `json:"size"`
}

// Marked is one package of the result of mark, hold and unhold.
type Marked struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Mark    string `json:"mark"`    // auto, manual, hold or unhold
	Changed bool   `json:"changed"` // false: it was so already
}

// Transaction is one transaction of history's result, newest first: in a
// list, with its first changes; asked for by id, with all of them.
type Transaction struct {
	ID     uint64    `json:"id"`
	Time   time.Time `json:"time"`
	UID    int       `json:"uid"`
	Verb   string    `json:"verb"`
	Args   []string  `json:"args"`
	Prefix string    `json:"prefix"`
	// Count is how many packages it changed.
	Count   int      `json:"count"`
	Changes []Change `json:"changes"`
}

// Change is one package a transaction changed, with the reason it was
// given (or had, when removed).
type Change struct {
	Action     string `json:"action"`
	Name       string `json:"name"`
	Version    string `json:"version"`
	OldVersion string `json:"old_version,omitempty"`
	Reason     string `json:"reason,omitempty"`
}

// SyncResult is the result of sync.
type SyncResult struct {
	Generation uint64 `json:"generation"`
	Changed    bool   `json:"changed"`
}

// Status is the result of status.
type Status struct {
	PID           int     `json:"pid"`
	UptimeSeconds float64 `json:"uptime_seconds"`
	Server        string  `json:"server"` // the first of Servers
	// Servers are the repository's servers (origin and mirrors) as the
	// last index fetch found them.
	Servers          []ServerStatus `json:"servers"`
	IndexGeneration  uint64         `json:"index_generation"`
	IndexAgeSeconds  float64        `json:"index_age_seconds"`
	IndexPackages    int            `json:"index_packages"`
	IndexFetchedSecs float64        `json:"index_fetched_seconds_ago"`
	// The index's expiry: past it, nothing is installed from it.
	IndexValidUntil time.Time `json:"index_valid_until,omitzero"`
	IndexExpired    bool      `json:"index_expired"`
	Seeding         int       `json:"seeding"`
	Peers           int       `json:"peers"`
	BytesUp         int64     `json:"bytes_up"`
	BytesDown       int64     `json:"bytes_down"`
	// Downloading counts the downloads running; DownloadsWaiting those
	// waiting for one of them to end (tpmd client --parallel-downloads).
	Downloading      int    `json:"downloading"`
	DownloadsWaiting int    `json:"downloads_waiting"`
	Installing       string `json:"installing"`
	Queued           int    `json:"queued"` // transactions waiting for the one that runs
	TorrentPort      int    `json:"torrent_port"`
}

// ServerStatus is one repository server as the host's last index fetch
// found it.
type ServerStatus struct {
	URL string `json:"url"`
	// State is "ok" (it served the index the host has), "behind" (a valid
	// but older one), "down" (no valid index: Error says why) or "unknown"
	// (not asked since the daemon started).
	State      string `json:"state"`
	Generation uint64 `json:"generation,omitempty"`
	Error      string `json:"error,omitempty"`
}

// Results of the verbs only tpm runs (no daemon involved).

// Packed is the result of pack.
type Packed struct {
	File         string `json:"file"`
	Name         string `json:"name"`
	Version      string `json:"version"`
	Architecture string `json:"architecture"`
}

// KeyPair is the result of keygen.
type KeyPair struct {
	Key    string `json:"key"`
	Public string `json:"public"`
}
