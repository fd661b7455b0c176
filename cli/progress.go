package cli

import (
	"fmt"
	"io"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"tpm/human"
	"tpm/messages/wire"
)

// progressView shows progress replies: bars per package and for the whole
// transaction while bars are on (a daemon transaction on a terminal), plain
// lines at each stage otherwise (logs and CI keep every line).
type progressView struct {
	w       io.Writer
	opts    []mpb.ContainerOption // the bars' own, after the defaults
	bars    *mpb.Progress         // nil: plain lines
	overall *mpb.Bar
	byPkg   map[string]*mpb.Bar
	done    map[string]int64 // bytes each package reported, for the overall bar
	total   map[string]int64
	stage   map[string]string
}

// newProgressView shows progress on w; opts add to or override the bars'
// defaults (a test renders them into a buffer, refreshed when it says).
func newProgressView(w io.Writer, opts ...mpb.ContainerOption) *progressView {
	return &progressView{w: w, opts: opts, byPkg: map[string]*mpb.Bar{}, done: map[string]int64{}, total: map[string]int64{}, stage: map[string]string{}}
}

// start turns the bars on until stop.
func (v *progressView) start() {
	if v.bars == nil {
		v.bars = mpb.New(append([]mpb.ContainerOption{mpb.WithOutput(v.w), mpb.WithWidth(40)}, v.opts...)...)
	}
}

// on says whether the bars are drawn.
func (v *progressView) on() bool { return v.bars != nil }

// writer is where other lines go meanwhile: above the bars when they are
// on (mpb prints what is written to it before its next frame, so a line
// is never drawn over), w otherwise.
func (v *progressView) writer() io.Writer {
	if v.bars != nil {
		return v.bars
	}
	return v.w
}

func (v *progressView) progress(p *wire.Progress) {
	if v.bars == nil {
		if v.stage[p.Package] != p.Stage {
			v.stage[p.Package] = p.Stage
			switch p.Stage {
			case wire.StageDownload:
				fmt.Fprintf(v.w, "downloading %s (%s)\n", p.Package, human.Bytes(p.Total))
			case wire.StageVerify:
				if p.Peers > 0 {
					fmt.Fprintf(v.w, "downloaded %s from %d peer(s)\n", p.Package, p.Peers)
				} else {
					fmt.Fprintf(v.w, "downloaded %s\n", p.Package)
				}
			case wire.StageInstall:
				fmt.Fprintf(v.w, "installing %s\n", p.Package)
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
	if p.Stage == wire.StageDone || p.Stage == wire.StageInstall {
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

// stop ends the bars (completing the overall one) so later output is not
// drawn over.
func (v *progressView) stop() {
	if v.bars == nil {
		return
	}
	for _, b := range v.byPkg {
		if !b.Completed() {
			b.Abort(false)
		}
	}
	if v.overall != nil && !v.overall.Completed() {
		v.overall.SetTotal(-1, true)
	}
	v.bars.Wait()
	v.bars, v.overall, v.byPkg = nil, nil, map[string]*mpb.Bar{}
}
