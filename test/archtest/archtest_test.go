// Package archtest checks the module's import graph against the "Packages"
// table of ARCHITECTURE.md, whose last column says what each package may
// import, so that the document and the code cannot drift apart.
//
// TPM_ARCH_TABLE=path reads the table from another markdown file (a path
// relative to the module root, or else to this folder).
package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Package is what the check needs of `go list -json`.
type Package struct {
	ImportPath   string
	GoFiles      []string
	CgoFiles     []string
	TestGoFiles  []string
	XTestGoFiles []string
	Imports      []string // non-test imports only
	Error        *struct{ Err string }
}

// testOnly reports whether the package has only _test.go files: nothing can
// import it, and it needs no row.
func (p Package) testOnly() bool {
	return len(p.GoFiles)+len(p.CgoFiles) == 0 && len(p.TestGoFiles)+len(p.XTestGoFiles) > 0
}

func TestImports(t *testing.T) {
	root, modPath := module(t)
	file, name := tableFile(t, root)
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	tab, err := ParseTable(name, string(src))
	if err != nil {
		t.Fatalf("the package table of %s does not parse:\n%v", name, err)
	}
	pkgs := listPackages(t, root)
	readTree(t, root)
	for _, p := range pkgs {
		if p.Error != nil {
			t.Logf("note: go list: %s: %s (its imports are checked as listed)", p.ImportPath, p.Error.Err)
		}
	}
	for _, note := range Unused(tab, modPath, pkgs) {
		t.Logf("note: %s", note)
	}
	for _, err := range Check(tab, modPath, pkgs) {
		t.Error(err)
	}
}

// Check returns every disagreement between the table and the packages of
// the module modPath: a package that no row covers, a row's package path that
// covers no package, an allowed path of the module that is no package, and
// an import that the package's row does not allow.
func Check(tab *Table, modPath string, pkgs []Package) []error {
	var errs []error
	rel := func(importPath string) (string, bool) {
		if r, ok := strings.CutPrefix(importPath, modPath+"/"); ok {
			return r, true
		}
		return "", false
	}

	// Every path of the first cells must cover some package (a test-only
	// one counts: it exists); every allowed path of the module must cover
	// a package that can be imported.
	for _, row := range tab.Rows {
		for _, pat := range row.Packages {
			if !slices.ContainsFunc(pkgs, func(p Package) bool { r, ok := rel(p.ImportPath); return ok && pat.Match(r) }) {
				errs = append(errs, fmt.Errorf("%s:%d: row %s: `%s` is no package of %s; remove it from the table", tab.File, row.Line, row.Name, pat, modPath))
			}
		}
		for _, a := range row.Allow {
			if a.Kind != AllowModule {
				continue
			}
			if !slices.ContainsFunc(pkgs, func(p Package) bool { r, ok := rel(p.ImportPath); return ok && !p.testOnly() && a.Module.Match(r) }) {
				errs = append(errs, fmt.Errorf("%s:%d: row %s: may import %s, which is no importable package of %s (write std for the standard library)", tab.File, row.Line, row.Name, a, modPath))
			}
		}
	}

	for _, p := range pkgs {
		r, ok := rel(p.ImportPath)
		if !ok || p.testOnly() {
			continue
		}
		row, ok := rowOf(tab, r)
		if !ok {
			errs = append(errs, fmt.Errorf("%s: package %s has no row; add `%s` to the table", tab.File, p.ImportPath, r))
			continue
		}
		for _, imp := range p.Imports {
			if !allowed(row, modPath, imp) {
				errs = append(errs, fmt.Errorf("%s:%d: %s imports %s, which its row %s does not allow (may import: %s)", tab.File, row.Line, p.ImportPath, imp, row.Name, allowList(row)))
			}
		}
	}
	return errs
}

// Unused lists the allowances that no package of their row uses: not an
// error (a package may stop importing something), but worth a look.
func Unused(tab *Table, modPath string, pkgs []Package) []string {
	var notes []string
	for _, row := range tab.Rows {
		for _, a := range row.Allow {
			used := false
			for _, p := range pkgs {
				r, ok := strings.CutPrefix(p.ImportPath, modPath+"/")
				if !ok || p.testOnly() || !slices.ContainsFunc(row.Packages, func(q Pattern) bool { return q.Match(r) }) {
					continue
				}
				for _, imp := range p.Imports {
					if allowedBy(a, modPath, imp) {
						used = true
					}
				}
			}
			if !used {
				notes = append(notes, fmt.Sprintf("%s:%d: row %s allows %s, which none of its packages imports", tab.File, row.Line, row.Name, a))
			}
		}
	}
	return notes
}

// rowOf returns the row covering the module-relative path rel; ParseTable
// made sure there is at most one.
func rowOf(tab *Table, rel string) (Row, bool) {
	for _, row := range tab.Rows {
		for _, p := range row.Packages {
			if p.Match(rel) {
				return row, true
			}
		}
	}
	return Row{}, false
}

func allowed(row Row, modPath, imp string) bool {
	for _, a := range row.Allow {
		if allowedBy(a, modPath, imp) {
			return true
		}
	}
	return false
}

// allowedBy reports whether one item allows the import path imp. A path of
// the module is modPath or below it; otherwise a path whose first element
// has no dot belongs to the standard library (as the go command decides;
// "C", cgo's, counts as std); anything else is external.
func allowedBy(a Allow, modPath, imp string) bool {
	if imp == modPath || strings.HasPrefix(imp, modPath+"/") {
		r, _ := strings.CutPrefix(imp, modPath+"/")
		return a.Kind == AllowAny || a.Kind == AllowModule && imp != modPath && a.Module.Match(r)
	}
	first, _, _ := strings.Cut(imp, "/")
	if !strings.Contains(first, ".") {
		return a.Kind == AllowAny || a.Kind == AllowStd
	}
	return a.Kind == AllowAny || a.Kind == AllowExternal && (imp == a.Prefix || strings.HasPrefix(imp, a.Prefix+"/"))
}

func allowList(row Row) string {
	var s []string
	for _, a := range row.Allow {
		s = append(s, a.Written)
	}
	return strings.Join(s, ", ")
}

// module returns the module's root folder and path.
func module(t *testing.T) (root, path string) {
	t.Helper()
	out := goCmd(t, ".", "list", "-m", "-f", "{{.Dir}}\n{{.Path}}")
	dir, path, ok := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if !ok {
		t.Fatalf("go list -m: unexpected output %q", out)
	}
	return dir, path
}

// tableFile returns the markdown file to read and the name to show for it.
func tableFile(t *testing.T, root string) (file, name string) {
	t.Helper()
	env := os.Getenv("TPM_ARCH_TABLE")
	if env == "" {
		return filepath.Join(root, "ARCHITECTURE.md"), "ARCHITECTURE.md"
	}
	if filepath.IsAbs(env) {
		return env, env
	}
	if _, err := os.Stat(filepath.Join(root, env)); err == nil {
		return filepath.Join(root, env), env
	}
	if _, err := os.Stat(env); err == nil {
		return env, env
	}
	t.Fatalf("TPM_ARCH_TABLE=%s: no such file under the module root %s nor here", env, root)
	return "", ""
}

// readTree reads every folder of the module that may hold a package. go test
// caches a passing result against the files and folders the test opened, and
// a folder's entry records its files' sizes and times: so a changed import
// makes the test run again rather than pass from the cache.
func readTree(t *testing.T, root string) {
	t.Helper()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || strings.HasPrefix(d.Name(), "_") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// listPackages runs go list -e -json over every package of the module.
func listPackages(t *testing.T, root string) []Package {
	t.Helper()
	out := goCmd(t, root, "list", "-e", "-json=ImportPath,GoFiles,CgoFiles,TestGoFiles,XTestGoFiles,Imports,Error", "./...")
	var pkgs []Package
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p Package
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("go list -json: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		t.Fatal("go list found no packages")
	}
	return pkgs
}

func goCmd(t *testing.T, dir string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}
