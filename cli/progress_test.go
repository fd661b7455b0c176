package cli

import (
	"bytes"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vbauerster/mpb/v8"

	"tpm/messages/wire"
)

// terminal keeps what is written to it, from any goroutine, and replays it
// as a terminal shows it: the lines mpb draws, its cursor-up (ESC [ N A)
// and erase-below (ESC [ J) between frames, and lines written in between.
type terminal struct {
	mu  sync.Mutex
	raw bytes.Buffer
}

func (t *terminal) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.raw.Write(p)
}

func (t *terminal) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.raw.Len()
}

// screen is what the terminal shows in the end, a line a row.
func (t *terminal) screen() []string {
	t.mu.Lock()
	s := t.raw.String()
	t.mu.Unlock()
	var rows [][]rune
	row, col := 0, 0
	put := func(r rune) {
		for len(rows) <= row {
			rows = append(rows, nil)
		}
		for len(rows[row]) < col {
			rows[row] = append(rows[row], ' ')
		}
		if col < len(rows[row]) {
			rows[row][col] = r
		} else {
			rows[row] = append(rows[row], r)
		}
		col++
	}
	for i := 0; i < len(s); {
		switch {
		case strings.HasPrefix(s[i:], "\x1b["):
			j := i + 2
			for j < len(s) && s[j] >= '0' && s[j] <= '9' {
				j++
			}
			n, _ := strconv.Atoi(s[i+2 : j])
			switch s[j] {
			case 'A':
				row = max(row-n, 0)
			case 'J':
				if row < len(rows) {
					rows[row] = rows[row][:min(col, len(rows[row]))]
					rows = rows[:row+1]
				}
			}
			i = j + 1
		case s[i] == '\n':
			row, col = row+1, 0
			i++
		case s[i] == '\r':
			col = 0
			i++
		default:
			r := []rune(s[i:])[0]
			put(r)
			i += len(string(r))
		}
	}
	out := make([]string, 0, len(rows))
	for _, r := range rows {
		out = append(out, strings.TrimRight(string(r), " "))
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	return out
}

// frame asks mpb for a frame and waits until it is on the terminal.
func frame(t *testing.T, term *terminal, refresh chan<- any) {
	t.Helper()
	before := term.len()
	refresh <- time.Now()
	for deadline := time.Now().Add(10 * time.Second); term.len() == before; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no frame drawn within 10s")
		}
	}
}

// A warning that arrives while bars are drawn, on the terminal they are
// drawn on, is a whole line above them; it was written straight to stderr,
// below the bars, and their next frame erased it and left a stale bar.
func TestWarningAboveBars(t *testing.T) {
	term := &terminal{}
	refresh := make(chan any)
	v := newView(term, term, false)
	v.barsOK, v.stderrTTY = true, true
	v.progress = newProgressView(term, mpb.ForceTTY(), mpb.WithManualRefresh(refresh))
	progress := func(pkg, stage string, bytes, total int64) {
		v.reply(&wire.Reply{Type: wire.ReplyProgress, Progress: &wire.Progress{Package: pkg, Stage: stage, Bytes: bytes, Total: total}})
	}

	v.startBars()
	progress("greet-data", wire.StageDownload, 1024, 2048)
	progress("hello", wire.StageDownload, 0, 4096)
	frame(t, term, refresh)
	progress("greet-data", wire.StageInstall, 2048, 2048)
	const warning = "tpm: warning: postinstall of greet-data 1.0-1 failed (exit status 1) (the package is in place)"
	v.reply(&wire.Reply{Type: wire.ReplyDone, Done: &wire.OpResult{Action: "install", Name: "greet-data", Version: "1.0-1",
		Warnings: []string{"postinstall of greet-data 1.0-1 failed (exit status 1)"}}})
	progress("hello", wire.StageDownload, 2048, 4096)
	frame(t, term, refresh)
	progress("hello", wire.StageInstall, 4096, 4096)
	v.stopBars()

	screen := term.screen()
	text := strings.Join(screen, "\n")
	// What stays: the lines printed, then the bars as last drawn (three:
	// greet-data, hello, total), nothing else.
	if len(screen) != 5 || screen[0] != "installed greet-data 1.0-1" || screen[1] != warning {
		t.Fatalf("screen:\n%s\nraw: %q", text, term.raw.String())
	}
	for i, name := range []string{"greet-data", "hello", "total"} {
		if !strings.HasPrefix(screen[2+i], name) {
			t.Fatalf("row %d is not %s's bar; screen:\n%s", 2+i, name, text)
		}
	}
}

// Without a terminal on stderr (2>log), warnings stay on stderr while
// bars are drawn: nothing is lost from the log.
func TestWarningToRedirectedStderr(t *testing.T) {
	term, log := &terminal{}, &terminal{}
	refresh := make(chan any)
	v := newView(term, log, false)
	v.barsOK = true
	v.progress = newProgressView(term, mpb.ForceTTY(), mpb.WithManualRefresh(refresh))
	v.startBars()
	v.reply(&wire.Reply{Type: wire.ReplyProgress, Progress: &wire.Progress{Package: "hello", Stage: wire.StageDownload, Total: 4096}})
	frame(t, term, refresh)
	v.reply(&wire.Reply{Type: wire.ReplyDone, Done: &wire.OpResult{Action: "install", Name: "hello", Version: "2.0-1", Warnings: []string{"x"}}})
	v.stopBars()
	if got := log.raw.String(); got != "tpm: warning: x (the package is in place)\n" {
		t.Fatalf("stderr: %q", got)
	}
	if strings.Contains(term.raw.String(), "warning") {
		t.Fatalf("warning on the bars' terminal: %q", term.raw.String())
	}
}
