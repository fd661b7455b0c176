package publish

import (
	"bytes"
	"embed"
	"encoding/hex"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"tpm/generation"
	"tpm/human"
	"tpm/manifest"
	"tpm/version"
)

// The repository's pages: /, /?q=WORD, /p/NAME and /rejected, rendered on
// the server from the current generation (no script: hosts and the people
// who run them often have no internet, and a search box works without one).
// Everything a package says of itself is untrusted and shown as text; the
// templates escape it by context.

//go:embed page/layout.html page/style.css
var pageFiles embed.FS

// pages are the parsed templates; parsing the embedded files cannot fail
// once the tests pass, so a failure is a build mistake.
func pages() *template.Template {
	return template.Must(template.New("").Funcs(template.FuncMap{"bytes": human.Bytes, "add": func(a, b int) int { return a + b }}).ParseFS(pageFiles, "page/layout.html"))
}

// pageData is what every page shows around its content.
type pageData struct {
	Title     string
	Gen       *generation.Generation
	Key       string // the signing key's id
	PublicKey string // its one-line form, the content of repo.pub
	PublicURL string
}

type indexPage struct {
	pageData
	Query, Sort string
	Packages    []*generation.Package
}

type versionView struct {
	P                 *generation.Package
	Deps              []manifest.Dependency
	Magnet            template.URL
	Seeders, Leechers int
	Listed            bool     // the files are known
	Files             []string // the first maxFilesShown of them
	More              int      // and how many more
}

// maxFilesShown bounds the files a package page lists.
const maxFilesShown = 1000

type packagePage struct {
	pageData
	Name     string
	Versions []versionView // newest first
	NeededBy []string
}

type rejectedPage struct {
	pageData
	Rejected []generation.Rejected
}

func (p *Publisher) servePage(w http.ResponseWriter, r *http.Request, path string) {
	if path == "/style.css" {
		b, _ := pageFiles.ReadFile("page/style.css")
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Write(b)
		return
	}
	g := p.gen.Load()
	if g == nil {
		w.Header().Set("Retry-After", "5")
		http.Error(w, "no index yet: the first scan is running", http.StatusServiceUnavailable)
		return
	}
	base := pageData{Gen: g, Key: p.cfg.KeyID, PublicKey: p.cfg.PublicKey, PublicURL: p.cfg.PublicURL}
	var name string
	var data any
	status := http.StatusOK
	switch {
	case path == "/":
		name, data = "index", p.indexPage(base, r.URL.Query().Get("q"), r.URL.Query().Get("sort"))
	case path == "/rejected":
		base.Title = "Rejected files"
		name, data = "rejected", rejectedPage{pageData: base, Rejected: g.Rejected}
	case strings.HasPrefix(path, "/p/"):
		pkg := strings.TrimPrefix(path, "/p/")
		pp := p.packagePage(base, g, pkg)
		name, data = "package", pp
		if len(pp.Versions) == 0 {
			name, status = "missing", http.StatusNotFound
		}
	default:
		http.NotFound(w, r)
		return
	}
	var buf bytes.Buffer
	if err := p.pages.ExecuteTemplate(&buf, name, data); err != nil {
		p.log.Error("page", "path", path, "err", err)
		http.Error(w, "the page could not be made; see the server's log", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	// Nothing on these pages runs or loads from elsewhere.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func (p *Publisher) indexPage(base pageData, q, sort string) indexPage {
	g := base.Gen
	base.Title = "tpm repository"
	if q != "" {
		base.Title = q + " — tpm repository"
	}
	out := indexPage{pageData: base, Query: q, Sort: "new"}
	if sort == "name" {
		out.Sort = "name"
	}
	// The newest version of each name, as tpm search shows them.
	best := map[string]*generation.Package{}
	for i := range g.Packages {
		pk := &g.Packages[i]
		if !pk.Matches(q) {
			continue
		}
		if b := best[pk.Name]; b == nil || version.Compare(pk.Version, b.Version) > 0 {
			best[pk.Name] = pk
		}
	}
	for _, pk := range best {
		out.Packages = append(out.Packages, pk)
	}
	slices.SortFunc(out.Packages, func(a, b *generation.Package) int {
		if out.Sort == "new" {
			// Newest first: the files' modification times, then names.
			if c := b.MTimeNS - a.MTimeNS; c != 0 {
				if c > 0 {
					return 1
				}
				return -1
			}
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

func (p *Publisher) packagePage(base pageData, g *generation.Generation, name string) packagePage {
	base.Title = name + " — tpm repository"
	out := packagePage{pageData: base, Name: name}
	needed := map[string]bool{}
	for i := range g.Packages {
		pk := &g.Packages[i]
		if pk.Name == name {
			v := versionView{P: pk, Deps: pk.Dependencies, Magnet: magnet(pk, p.cfg.PublicURL)}
			v.Seeders, v.Leechers = p.peers.Count(pk.InfoHash)
			if p.cfg.Listing != nil {
				var total int
				v.Files, total, v.Listed = p.cfg.Listing(pk.SHA256, maxFilesShown)
				v.More = total - len(v.Files)
			}
			if p.seeder.Load() != nil {
				v.Seeders++ // the server's own seeder, which the tracker always names
			}
			out.Versions = append(out.Versions, v)
		}
		for _, d := range pk.Dependencies {
			for _, c := range d {
				if c.Name == name && pk.Name != name {
					needed[pk.Name] = true
				}
			}
		}
	}
	slices.SortFunc(out.Versions, func(a, b versionView) int { return version.Compare(b.P.Version, a.P.Version) })
	for n := range needed {
		out.NeededBy = append(out.NeededBy, n)
	}
	slices.Sort(out.NeededBy)
	return out
}

// magnet is a package's magnet link: its infohash, name, the tracker and
// the web seed.
func magnet(pk *generation.Package, publicURL string) template.URL {
	base := strings.TrimRight(publicURL, "/")
	v := url.Values{}
	v.Set("dn", pk.File)
	v.Set("tr", base+"/announce")
	v.Set("ws", base+"/packages/"+url.PathEscape(pk.File))
	// Built from escaped parts only: safe as an href.
	return template.URL("magnet:?xt=urn:btih:" + hex.EncodeToString(pk.InfoHash[:]) + "&" + v.Encode())
}
