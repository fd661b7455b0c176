package publish

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// TestPagesInABrowser drives headless Chromium (Debian's chromium, which
// CI installs) through the pages at phone width: the index, a search, a
// package, a dependency link, and a package whose description and
// maintainer are markup meant to run. Nothing may open a dialog (alert),
// the hostile text must read as text, and screenshots of each step are
// written to the test's output folder (TPM_SCREENSHOTS, or a temporary
// one), named in the log.
func TestPagesInABrowser(t *testing.T) {
	browser, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("no chromium on PATH: the browser test needs Debian's chromium (apt-get install chromium)")
	}
	f := newFixture(t)
	f.p.cfg.PublicURL, f.p.cfg.KeyID, f.p.cfg.PublicKey = f.url, f.pub.ID(), f.pub.String()
	packDir(t, f.dir, `{"Name":"evil","Version":"1.0","Architecture":"any","Type":"Binary","Description":"`+hostile+`","Maintainer":"`+hostile+`"}`)
	packDir(t, f.dir, `{"Name":"app","Version":"1.0","Architecture":"any","Type":"Binary","Description":"An app that needs another","Dependencies":[["evil","other"]]}`)
	f.scan(t)
	shots := os.Getenv("TPM_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true), chromedp.UserDataDir(t.TempDir()))
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	// An alert, confirm or prompt would mean something ran.
	var dialogs atomic.Int32
	opening := chromedp.Events(bctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range opening {
			if err != nil {
				return
			}
			dialogs.Add(1)
		}
	}()
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			png, err := chromedp.FullScreenshot(100)(ctx, tg) // 100: PNG, lossless
			if err != nil {
				return err
			}
			path := filepath.Join(shots, name+".png")
			t.Logf("screenshot %s", path)
			return os.WriteFile(path, png, 0o644)
		})
	}
	text := func(sel string, out *string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			v, err := chromedp.Text(sel)(ctx, tg)
			*out = v
			return err
		})
	}
	var rows, h1, deps, desc, maint string
	err = chromedp.Do(bctx,
		chromedp.EmulateViewport(390, 844),
		chromedp.Navigate(f.url+"/"),
		chromedp.WaitVisible(`input[name="q"]`),
		shot("1-index"),
		chromedp.SendKeys(`input[name="q"]`, "needs"),
		chromedp.Submit(`form.search`),
		// Elements of the next page only: the one before has links too.
		chromedp.WaitVisible(`span.matching`),
		text(`table.packages tbody`, &rows),
		shot("2-search"),
		chromedp.Click(`a[href="/p/app"]`),
		chromedp.WaitVisible(`#package-app`),
		text(`h1`, &h1),
		text(`section.version dd:nth-of-type(2)`, &deps),
		shot("3-package"),
		chromedp.Click(`section.version a[href="/p/evil"]`),
		chromedp.WaitVisible(`#package-evil`),
		text(`p.desc`, &desc),
		text(`section.version dd:nth-of-type(2)`, &maint),
		shot("4-hostile"),
	)
	if err != nil {
		t.Fatal(err)
	}
	elements, err := chromedp.Run(bctx, chromedp.Evaluate[int]("document.querySelectorAll('script, img, iframe, object').length"))
	if err != nil || elements != 0 {
		t.Errorf("the hostile page has %d script, img, iframe or object elements (%v)", elements, err)
	}
	if !strings.Contains(rows, "app") || strings.Contains(rows, "evil") {
		t.Errorf("search for \"needs\" shows %q", rows)
	}
	if h1 != "app" || !strings.Contains(deps, "evil or other") {
		t.Errorf("package page: h1 %q, depends on %q", h1, deps)
	}
	if !strings.Contains(desc, "<script>alert(1)</script>") || !strings.Contains(maint, `"><img src=x onerror=alert(2)>`) {
		t.Errorf("hostile text not shown as text: description %q, maintainer %q", desc, maint)
	}
	if n := dialogs.Load(); n != 0 {
		t.Errorf("%d dialogs opened: something ran", n)
	}
}
