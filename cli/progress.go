package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"tpm/messages"
)

// progressView shows the daemon's progress lines: bars per package and for
// the whole transaction on a terminal, plain lines at each stage otherwise
// (logs and CI keep every line), nothing extra with --json.
type progressView struct {
	c       *command
	bars    *mpb.Progress // nil unless stdout is a terminal
	overall *mpb.Bar
	byPkg   map[string]*mpb.Bar
	done    map[string]int64 // bytes each package reported, for the overall bar
	total   map[string]int64
	stage   map[string]string
	closed  bool
}

func newProgressView(c *command) *progressView {
	v := &progressView{c: c, byPkg: map[string]*mpb.Bar{}, done: map[string]int64{}, total: map[string]int64{}, stage: map[string]string{}}
	if !c.opts.json && isTerminal(c.env.Stdout) {
		v.bars = mpb.New(mpb.WithOutput(c.env.Stdout), mpb.WithWidth(40))
	}
	return v
}

// reply handles one non-final reply line.
func (v *progressView) reply(r *messages.Reply) error {
	if v.c.opts.json {
		return nil // daemonCall already printed the line
	}
	switch r.Type {
	case messages.ReplyLog:
		if line, ok := v.c.buildLine(r.Text); ok {
			if line != "" {
				v.println(line)
			}
			return nil
		}
		v.println(r.Text)
	case messages.ReplyProgress:
		if r.Progress != nil {
			v.progress(r.Progress)
		}
	}
	return nil
}

func (v *progressView) println(line string) {
	var w io.Writer = v.c.env.Stdout
	if v.bars != nil {
		w = v.bars // printed above the bars
	}
	fmt.Fprintln(w, line)
}

func (v *progressView) progress(p *messages.Progress) {
	if v.bars == nil {
		if v.stage[p.Package] != p.Stage {
			v.stage[p.Package] = p.Stage
			switch p.Stage {
			case "download":
				fmt.Fprintf(v.c.env.Stdout, "downloading %s (%s)\n", p.Package, humanBytes(p.Total))
			case "verify":
				if p.Peers > 0 {
					fmt.Fprintf(v.c.env.Stdout, "downloaded %s from %d peer(s)\n", p.Package, p.Peers)
				} else {
					fmt.Fprintf(v.c.env.Stdout, "downloaded %s\n", p.Package)
				}
			case "install":
				fmt.Fprintf(v.c.env.Stdout, "installing %s\n", p.Package)
			}
		}
		return
	}
	bar := v.byPkg[p.Package]
	if bar == nil {
		if v.overall == nil {
			v.overall = v.bars.AddBar(0, mpb.BarPriority(1<<30),
				mpb.PrependDecorators(decor.Name("total", decor.WC{W: 16, C: decor.DindentRight})),
				mpb.AppendDecorators(decor.CountersKibiByte("% .1f / % .1f")))
		}
		bar = v.bars.AddBar(p.Total,
			mpb.PrependDecorators(decor.Name(p.Package, decor.WC{W: 16, C: decor.DindentRight})),
			mpb.AppendDecorators(decor.CountersKibiByte("% .1f / % .1f"), decor.Name(" "), decor.AverageSpeed(decor.SizeB1024(0), "% .1f")))
		v.byPkg[p.Package] = bar
	}
	bar.SetTotal(p.Total, false)
	bar.SetCurrent(p.Bytes)
	if p.Stage == "done" || p.Stage == "install" {
		bar.SetTotal(p.Total, true)
	}
	v.done[p.Package], v.total[p.Package] = p.Bytes, p.Total
	var done, total int64
	for name := range v.done {
		done, total = done+v.done[name], total+v.total[name]
	}
	v.overall.SetTotal(total, false)
	v.overall.SetCurrent(done)
}

// close ends the bars (completing the overall one) so later output is not
// drawn over.
func (v *progressView) close() {
	if v.closed || v.bars == nil {
		v.closed = true
		return
	}
	v.closed = true
	for _, b := range v.byPkg {
		if !b.Completed() {
			b.Abort(false)
		}
	}
	if v.overall != nil && !v.overall.Completed() {
		v.overall.SetTotal(-1, true)
	}
	v.bars.Wait()
}

// buildSteps are the steps a source build reports its output under.
var buildSteps = map[string]bool{"unpack": true, "configure": true, "make": true, "make install": true, "cleanup": true, "done": true}

// buildLine filters a "NAME: STEP: text" line of a source build: all of
// them with --verbose; otherwise one line when a build enters a step, and
// the build's last word. ok is false for lines that are not a build's.
func (c *command) buildLine(text string) (line string, ok bool) {
	name, rest, found := strings.Cut(text, ": ")
	if !found {
		return "", false
	}
	step, out, found := strings.Cut(rest, ": ")
	if !found || !buildSteps[step] {
		return "", false
	}
	if c.opts.verbose {
		return text, true
	}
	switch {
	case step == "done":
		return name + ": " + out, true
	case c.buildStep[name] != step:
		if c.buildStep == nil {
			c.buildStep = make(map[string]string)
		}
		c.buildStep[name] = step
		return fmt.Sprintf("building %s: %s (tpm install --verbose shows its output)", name, step), true
	}
	return "", true
}
