package publish

import (
	"html"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tpm/tarball"
)

// packDir packs a package whose package.json is manifest into dir.
func packDir(t *testing.T, dir, manifest string) {
	t.Helper()
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "info"), 0o755)
	os.MkdirAll(filepath.Join(src, "data", "usr", "share"), 0o755)
	os.WriteFile(filepath.Join(src, "info", "package.json"), []byte(manifest), 0o644)
	os.WriteFile(filepath.Join(src, "data", "usr", "share", "x"), []byte("x"), 0o644)
	if _, _, err := tarball.PackFile(src, dir, tarball.PackOptions{}); err != nil {
		t.Fatal(err)
	}
}

const hostile = `<script>alert(1)</script> \"><img src=x onerror=alert(2)>`

// TestPages: the index, a search, a package with its dependencies (links,
// alternatives), the packages that need it, the rejected files; every
// field a package gives is shown as text, and nothing on a page runs.
func TestPages(t *testing.T) {
	f := newFixture(t)
	f.p.cfg.PublicURL, f.p.cfg.KeyID, f.p.cfg.PublicKey = f.url, f.pub.ID(), f.pub.String()
	f.p.cfg.Listing = func(_ string, max int) ([]string, int, bool) {
		return []string{"usr/share/x", "usr/bin/<b>"}[:min(2, max)], 3002, true
	}
	packDir(t, f.dir, `{"Name":"evil","Version":"1.0","Architecture":"any","Type":"Binary","Description":"`+hostile+`","Maintainer":"`+hostile+`"}`)
	packDir(t, f.dir, `{"Name":"evil","Version":"2.0","Architecture":"any","Type":"Binary","Description":"second"}`)
	packDir(t, f.dir, `{"Name":"app","Version":"1.0","Architecture":"any","Type":"Binary","Description":"An app","Dependencies":[["evil","other"],"lib>=1"]}`)
	os.WriteFile(filepath.Join(f.dir, "bad.tpkg"), []byte("not a package"), 0o644)
	f.scan(t)

	resp, index := get(t, f.url+"/")
	page := string(index)
	if resp.StatusCode != 200 || !strings.Contains(page, `href="/p/app"`) || !strings.Contains(page, `href="/p/evil"`) {
		t.Fatalf("index: %d\n%s", resp.StatusCode, page)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Fatalf("CSP %q", csp)
	}
	if !strings.Contains(page, "second") || strings.Contains(page, "&lt;script&gt;") {
		t.Fatalf("index shows the newest version of evil only:\n%s", page)
	}
	// As a browser shows it: html/template writes "+" as "&#43;".
	if text := html.UnescapeString(page); !strings.Contains(text, "tpmd client --server "+f.url) || !strings.Contains(text, "echo "+f.pub.String()) || !strings.Contains(text, f.pub.ID()) {
		t.Fatalf("index without the way to use it:\n%s", page)
	}

	_, found := get(t, f.url+"/?q=APP")
	if s := string(found); !strings.Contains(s, `href="/p/app"`) || strings.Contains(s, `href="/p/evil"`) {
		t.Fatalf("search APP:\n%s", s)
	}
	_, reflected := get(t, f.url+"/?q=%3Cscript%3E")
	if s := string(reflected); strings.Contains(s, "<script>") || !strings.Contains(s, "&lt;script&gt;") {
		t.Fatalf("search for <script> is not shown as text:\n%s", s)
	}

	_, app := get(t, f.url+"/p/app")
	s := string(app)
	for _, want := range []string{`<a href="/p/evil">evil</a> <em>or</em> <a href="/p/other">other</a>`, `<a href="/p/lib">lib &gt;= 1</a>`,
		`href="magnet:?xt=urn:btih:`, "<code>/usr/share/x</code>", "<code>/usr/bin/&lt;b&gt;</code>", "Files (2 of 3002)", "and 3000 more.", "&amp;dn=app-1.0-any.tpkg", `href="/torrents/app-1.0-any.tpkg.torrent"`, "tpm install app=1.0", "1 seeder(s)"} {
		if !strings.Contains(s, want) {
			t.Errorf("/p/app lacks %q\n%s", want, s)
		}
	}
	_, evil := get(t, f.url+"/p/evil")
	s = string(evil)
	if strings.Contains(s, "<script>") || strings.Contains(s, "<img") || !strings.Contains(s, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Fatalf("/p/evil runs what the package says:\n%s", s)
	}
	if !strings.Contains(s, `href="/p/app"`) || strings.Index(s, "evil 2.0") > strings.Index(s, "evil 1.0") {
		t.Fatalf("/p/evil: needed by app, newest first:\n%s", s)
	}
	if resp, b := get(t, f.url+"/p/nope"); resp.StatusCode != 404 || !strings.Contains(string(b), "No package named nope") {
		t.Fatalf("/p/nope: %d", resp.StatusCode)
	}
	if _, b := get(t, f.url+"/rejected"); !strings.Contains(string(b), "bad.tpkg") {
		t.Fatalf("/rejected:\n%s", b)
	}
	if resp, _ := get(t, f.url+"/style.css"); resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") {
		t.Fatalf("style.css: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}
