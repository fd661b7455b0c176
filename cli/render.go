package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"

	"tpm/messages/wire"
)

// view is where a verb's output goes, whichever mode did the work. With
// --json every reply is one JSON line (wire.Reply without its id): the
// daemon's replies as they come, and the same replies made from the
// offline engine's hooks. Otherwise the replies are rendered as text, the
// same way for both modes.
type view struct {
	stdout, stderr io.Writer
	json           bool
	verbose        bool // every line of source builds, not just their steps
	// barsOK says stdout is a terminal showing text, where bars may be
	// drawn; stderrTTY that stderr is a terminal too (the same one, as a
	// rule), where a warning written while bars are drawn would cut
	// through them.
	barsOK, stderrTTY bool

	// mu keeps lines whole: the engine's hooks may report from a script's
	// or a build's goroutine.
	mu        sync.Mutex
	progress  *progressView
	buildStep map[string]string // the step each source build is in
	shown     map[string]bool   // packages whose done line was printed
}

func newView(stdout, stderr io.Writer, json bool) *view {
	return &view{stdout: stdout, stderr: stderr, json: json, progress: newProgressView(stdout),
		barsOK: !json && isTerminal(stdout), stderrTTY: isTerminal(stderr),
		buildStep: map[string]string{}, shown: map[string]bool{}}
}

// startBars draws progress bars, when stdout is a terminal and the output
// is text, until stopBars.
func (v *view) startBars() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.barsOK {
		v.progress.start()
	}
}

func (v *view) stopBars() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.progress.stop()
}

// reply shows one reply of a stream (not the final one).
func (v *view) reply(r *wire.Reply) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.json {
		return v.emit(r)
	}
	switch {
	case r.Type == wire.ReplyLog:
		v.println(r.Text)
	case r.Type == wire.ReplyProgress && r.Progress != nil:
		v.progress.progress(r.Progress)
	case r.Type == wire.ReplyOutput && r.Output != nil:
		v.output(r.Output)
	case r.Type == wire.ReplySkipped && r.Skipped != nil:
		v.println(fmt.Sprintf("%s %s is %s; skipping", r.Skipped.Name, r.Skipped.Version, r.Skipped.Why))
	case r.Type == wire.ReplyDone && r.Done != nil:
		v.done(r.Done)
	case r.Type == wire.ReplyRecovered && r.Recovered != nil:
		rec := r.Recovered
		v.warn(fmt.Sprintf("tpm: recovered an interrupted transaction in %s: finished [%s], undid [%s]",
			rec.Prefix, strings.Join(rec.Completed, " "), strings.Join(rec.RolledBack, " ")))
		if len(rec.ScriptsNotRun) > 0 {
			v.warn("tpm: the interruption skipped these scripts of installed packages; run them by hand if needed: " + strings.Join(rec.ScriptsNotRun, ", "))
		}
	}
	// A plan is shown by the verb itself, before it asks (or not at all
	// when it goes ahead without asking, as before).
	return nil
}

// result ends a verb that succeeded: the result reply carrying data with
// --json, otherwise what text writes (nothing when nil).
func (v *view) result(data any, text func(w io.Writer) error) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.json {
		r, err := wire.Result(data)
		if err != nil {
			return err
		}
		return v.emit(r)
	}
	if text == nil {
		return nil
	}
	return text(v.stdout)
}

// opResults ends an install, upgrade or remove: each package was shown as
// its done reply came; any the stream did not announce are shown now.
func (v *view) opResults(results []wire.OpResult) error {
	if results == nil {
		results = []wire.OpResult{}
	}
	return v.result(results, func(io.Writer) error {
		for i := range results {
			if !v.shown[doneKey(&results[i])] {
				v.done(&results[i])
			}
		}
		return nil
	})
}

// failure is the error reply that ends a failed verb with --json (the
// daemon's own error reply is never printed, so it is not said twice).
func (v *view) failure(msg string) {
	if !v.json {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.emit(wire.Failure(msg))
}

func (v *view) emit(r *wire.Reply) error {
	out := *r
	out.ID = ""
	b, err := json.Marshal(&out)
	if err != nil {
		return fmt.Errorf("print a %s reply as JSON: %w", r.Type, err)
	}
	_, err = fmt.Fprintf(v.stdout, "%s\n", b)
	return err
}

// println prints a line of text, above the progress bars when they are on.
func (v *view) println(line string) {
	fmt.Fprintln(v.progress.writer(), line)
}

// warn prints a line for stderr. While bars are drawn on the terminal
// stderr shows too, it goes above them as println's lines do: written
// straight to the terminal it would land below the bars, and their next
// frame, drawn from where the bars began, would erase it and leave a
// stale bar behind. A redirected stderr keeps every warning.
func (v *view) warn(line string) {
	if v.progress.on() && v.stderrTTY {
		fmt.Fprintln(v.progress.writer(), line)
		return
	}
	fmt.Fprintln(v.stderr, line)
}

func (v *view) done(r *wire.OpResult) {
	v.shown[doneKey(r)] = true
	item := wire.PlanItem{Action: r.Action, Name: r.Name, Version: r.Version, OldVersion: r.OldVersion}
	v.println(pastTense(describeItem(item)))
	for _, w := range r.Warnings {
		v.warn("tpm: warning: " + w + " (the package is in place)")
	}
}

func doneKey(r *wire.OpResult) string { return r.Action + " " + r.Name + " " + r.Version }

// isBuildStep says whether a source build reports its output under step;
// any other step is a package script's.
func isBuildStep(step string) bool {
	switch step {
	case "unpack", "configure", "make", "make install", "cleanup", "done":
		return true
	}
	return false
}

// output shows a line a script or a source build printed. Builds are
// terse unless --verbose: one line when a build enters a step, and the
// build's last word.
func (v *view) output(o *wire.Output) {
	full := o.Package + ": " + o.Step + ": " + o.Line
	switch {
	case !isBuildStep(o.Step) || v.verbose:
		v.println(full)
	case o.Step == "done":
		v.println(o.Package + ": " + o.Line)
	case v.buildStep[o.Package] != o.Step:
		v.buildStep[o.Package] = o.Step
		v.println(fmt.Sprintf("building %s: %s (tpm install --verbose shows its output)", o.Package, o.Step))
	}
}

// describeItem says what a plan item does: "upgrade hello 1.0 -> 2.0".
func describeItem(it wire.PlanItem) string {
	if it.OldVersion != "" && it.OldVersion != it.Version {
		return fmt.Sprintf("%s %s %s -> %s", it.Action, it.Name, it.OldVersion, it.Version)
	}
	return fmt.Sprintf("%s %s %s", it.Action, it.Name, it.Version)
}

// asks says whether a plan item makes the plan ask before it goes on:
// it was not named (a dependency, a package removed), or it is a provider
// chosen over others.
func asks(it wire.PlanItem) bool { return !it.Requested || len(it.Alternatives) > 0 }

// itemNote says why an item is in a plan when it was not named as it is:
// "(needed, for awk, chosen over mawk)", "(replaced by postfix)".
func itemNote(it wire.PlanItem) string {
	var notes []string
	switch {
	case it.ReplacedBy != "":
		notes = append(notes, "replaced by "+it.ReplacedBy)
	case it.Unneeded:
		notes = append(notes, "no longer needed")
	case !it.Requested && it.Action != "remove":
		notes = append(notes, "needed")
	}
	if it.For != "" {
		notes = append(notes, "for "+it.For)
		if len(it.Alternatives) > 0 {
			notes = append(notes, "chosen over "+strings.Join(it.Alternatives, ", "))
		}
	}
	if len(notes) == 0 {
		return ""
	}
	return "(" + strings.Join(notes, ", ") + ")"
}

func pastTense(s string) string {
	verb, rest, _ := strings.Cut(s, " ")
	switch verb {
	case "remove":
		verb = "removed"
	case "downgrade", "upgrade":
		verb += "d"
	default:
		verb += "ed"
	}
	return verb + " " + rest
}

// table is a tabwriter as tpm's tables use it: columns two spaces apart.
func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }
