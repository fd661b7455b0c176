package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"tpm/store"
)

// The crash test runs each transaction in a child process (this test binary
// again) that exits abruptly just before step N, for every N until the
// transaction completes, and checks after each crash that the next Open
// brings receipts and disk back into agreement.

const crashEnv = "TPM_ENGINE_CRASH_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(crashEnv) != "" {
		os.Exit(crashChild())
	}
	os.Exit(m.Run())
}

// crashChild applies one transaction described by the environment and exits
// with 77 before step CRASH_AT, or 0 if it finishes first.
func crashChild() int {
	at, _ := strconv.Atoi(os.Getenv("CRASH_AT"))
	steps := 0
	opts := Options{
		StateDir:  os.Getenv("CRASH_STATE"),
		BuildRoot: buildRootFor(os.Getenv("CRASH_STATE")),
		Step: func(desc string) {
			steps++
			if steps == at {
				os.Exit(77)
			}
		},
	}
	ctx := context.Background()
	e, _, err := Open(ctx, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	prefix := os.Getenv("CRASH_PREFIX")
	var changeset *Changeset
	archives, names := os.Getenv("CRASH_ARCHIVES"), os.Getenv("CRASH_REMOVE")
	if names != "" && archives == "" {
		changeset, err = e.PrepareRemove(ctx, prefix, strings.Fields(names), true)
	} else {
		// Both: what an undo does, in one changeset.
		req := InstallRequest{Prefix: prefix, Remove: strings.Fields(names), Intent: Intent{AllowDowngrade: names != ""}}
		for _, a := range strings.Fields(os.Getenv("CRASH_ARCHIVES")) {
			req.Archives = append(req.Archives, Archive{Path: a})
		}
		changeset, _, err = e.PrepareInstall(ctx, req)
	}
	if err == nil {
		_, err = e.Apply(ctx, changeset, Hooks{})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	return 0
}

type crashCase struct {
	name    string
	setup   []string // archives installed before the crashing transaction
	then    []string // and in a second transaction, if any
	archive []string // the transaction: archives to install ...
	remove  []string // ... or names to remove (with cascade); both: an undo
	// the states the prefix may be in after recovery: name → version
	before, after map[string]string
}

func TestCrashAtEveryStep(t *testing.T) {
	pkgs := t.TempDir()
	a1 := writePackage(t, pkgs, pkgSpec{name: "a", version: "1.0", files: map[string]string{
		"usr/bin/a":              "#!/bin/sh\necho a1\n",
		"usr/share/a/one":        "one",
		"usr/share/a/two":        "two",
		"usr/share/a/old/x":      "x",
		"usr/share/doc/a/README": "a",
	}, links: map[string]string{"usr/lib/a.so": "a.so.1"},
		scripts: map[string]string{"postinstall": "#!/bin/sh\necho installed $1\n", "preremove": "#!/bin/sh\ntrue\n"}})
	a2 := writePackage(t, pkgs, pkgSpec{name: "a", version: "2.0", files: map[string]string{
		"usr/bin/a":              "#!/bin/sh\necho a2\n",
		"usr/share/a/one":        "one",
		"usr/share/a/three":      "three",
		"usr/share/a/new/y":      "y",
		"usr/share/doc/a/README": "a2",
	}, scripts: map[string]string{"preupgrade": "#!/bin/sh\ntrue\n", "postupgrade": "#!/bin/sh\necho upgraded $1 $2\n"}})
	b1 := writePackage(t, pkgs, pkgSpec{name: "b", version: "1.0", deps: []string{"a"}, files: map[string]string{
		"usr/bin/b":              "b",
		"usr/share/doc/b/README": "b",
	}})

	// A source package whose make install writes a program and a data file.
	srcPkg := func(version string) string {
		configure := "#!/bin/sh\nprefix=${1#--prefix=}\n" +
			"printf 'all:\\n\\ttrue\\ninstall:\\n\\tmkdir -p $(DESTDIR)%s/bin $(DESTDIR)%s/share\\n\\techo " + version + " > $(DESTDIR)%s/bin/s\\n\\techo data > $(DESTDIR)%s/share/s-" + version + "\\n' \"$prefix\" \"$prefix\" \"$prefix\" \"$prefix\" > Makefile\n"
		return writePackage(t, pkgs, pkgSpec{name: "s", version: version, source: true, files: map[string]string{"configure": configure}})
	}
	cases := []crashCase{
		{name: "install", archive: []string{b1, a1},
			before: map[string]string{}, after: map[string]string{"a": "1.0", "b": "1.0"}},
		{name: "upgrade", setup: []string{a1, b1}, archive: []string{a2},
			before: map[string]string{"a": "1.0", "b": "1.0"}, after: map[string]string{"a": "2.0", "b": "1.0"}},
		{name: "remove", setup: []string{a1, b1}, remove: []string{"a"},
			before: map[string]string{"a": "1.0", "b": "1.0"}, after: map[string]string{}},
	}
	mta, postfix, exim := relationPackages(t, pkgs)
	cases = append(cases,
		crashCase{name: "conflicting install replaces", setup: []string{exim, mta["mutt"]}, archive: []string{postfix},
			before: map[string]string{"exim4": "4.96", "mutt": "2.2"}, after: map[string]string{"postfix": "3.8", "mutt": "2.2"}},
		crashCase{name: "library split", setup: []string{mta["libfoo1"]}, archive: []string{mta["libfoo2"]},
			before: map[string]string{"libfoo1": "1.0"}, after: map[string]string{"libfoo1": "1.0", "libfoo2": "2.0"}},
		// Undos: the old versions back and what was installed away, in one
		// changeset.
		crashCase{name: "undo of a replacing install", setup: []string{exim, mta["mutt"]}, then: []string{postfix},
			archive: []string{exim}, remove: []string{"postfix"},
			before: map[string]string{"postfix": "3.8", "mutt": "2.2"}, after: map[string]string{"exim4": "4.96", "mutt": "2.2"}},
		crashCase{name: "undo of an upgrade and an install", setup: []string{a1}, then: []string{a2, b1},
			archive: []string{a1}, remove: []string{"b"},
			before: map[string]string{"a": "2.0", "b": "1.0"}, after: map[string]string{"a": "1.0"}})
	if _, err := exec.LookPath("make"); err == nil {
		s1, s2 := srcPkg("1"), srcPkg("2")
		cases = append(cases,
			crashCase{name: "source install", archive: []string{s1},
				before: map[string]string{}, after: map[string]string{"s": "1"}},
			crashCase{name: "source upgrade", setup: []string{s1}, archive: []string{s2},
				before: map[string]string{"s": "1"}, after: map[string]string{"s": "2"}},
			crashCase{name: "source remove", setup: []string{s1}, remove: []string{"s"},
				before: map[string]string{"s": "1"}, after: map[string]string{}})
	} else {
		t.Log("make is not installed: source package crash cases skipped")
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for n := 1; ; n++ {
				if n > 500 {
					t.Fatal("the transaction never finished")
				}
				dir := t.TempDir()
				state, prefix := filepath.Join(dir, "state"), filepath.Join(dir, "root")
				setups := 0
				for _, archives := range [][]string{tc.setup, tc.then} {
					if len(archives) > 0 {
						installAll(t, state, prefix, archives)
						setups++
					}
				}
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(), crashEnv+"=1", "CRASH_AT="+strconv.Itoa(n),
					"CRASH_STATE="+state, "CRASH_PREFIX="+prefix,
					"CRASH_ARCHIVES="+strings.Join(tc.archive, " "), "CRASH_REMOVE="+strings.Join(tc.remove, " "))
				out, err := cmd.CombinedOutput()
				var exit *exec.ExitError
				crashed := errors.As(err, &exit) && exit.ExitCode() == 77
				if err != nil && !crashed {
					t.Fatalf("step %d: child failed: %v\n%s", n, err, out)
				}
				got := checkConsistent(t, state, prefix)
				if entries := historyEntries(t, state); entries > setups+1 {
					// Recovery adds to the entry the crashed transaction started.
					t.Fatalf("crash before step %d: %d history entries for %d set-ups and one transaction", n, entries, setups)
				}
				if !crashed {
					if !sameVersions(got, tc.after) {
						t.Fatalf("completed run left %v, want %v", got, tc.after)
					}
					t.Logf("checked a crash before each of %d steps", n-1)
					return
				}
				if !sameVersions(got, tc.before) && !sameVersions(got, tc.after) {
					// A multi-package transaction may stop between packages:
					// each package must still be whole, which checkConsistent saw.
					if !partialOf(got, tc.before, tc.after) {
						t.Fatalf("crash before step %d left %v: neither %v nor %v", n, got, tc.before, tc.after)
					}
				}
			}
		})
	}
}

func installAll(t *testing.T, state, prefix string, archives []string) {
	t.Helper()
	if _, err := applySteps(t, state, prefix, archives...); err != nil {
		t.Fatal(err)
	}
}

// checkConsistent recovers, then demands that the disk is exactly what the
// receipts say: every recorded path verifies, every path on disk is owned,
// and no temporary or script file is left. It returns name → version.
func checkConsistent(t *testing.T, state, prefix string) map[string]string {
	t.Helper()
	e, _, err := Open(context.Background(), Options{StateDir: state, BuildRoot: buildRootFor(state)})
	if err != nil {
		t.Fatalf("recovery: %v", err)
	}
	defer e.Close()
	problems, err := e.Verify(prefix, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) > 0 {
		t.Fatalf("after recovery: %v", problems)
	}
	owned := map[string]bool{".": true}
	versions := map[string]string{}
	e.State().View(func(tx *store.StateTx) error {
		if tx.Journal() != nil {
			t.Error("journal left after recovery")
		}
		rs, _ := tx.Receipts(prefix)
		for _, r := range rs {
			versions[r.Name] = r.Version
			for _, f := range r.Files {
				owned[f.Path] = true
			}
		}
		checkHistory(t, tx, versions)
		return nil
	})
	if _, err := os.Stat(prefix); err == nil {
		filepath.WalkDir(prefix, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(prefix, p)
			if !owned[filepath.ToSlash(rel)] {
				t.Errorf("unowned path left on disk: %s", rel)
			}
			return nil
		})
	}
	if builds, _ := os.ReadDir(buildRootFor(state)); len(builds) > 0 {
		t.Errorf("build folders left: %v", builds)
	}
	leftovers, _ := filepath.Glob(filepath.Join(state, ".script-*"))
	if len(leftovers) > 0 {
		t.Errorf("script folders left: %v", leftovers)
	}
	return versions
}

// buildRootFor keeps source builds inside the test's folder.
func buildRootFor(state string) string {
	return filepath.Join(filepath.Dir(state), "build")
}

func sameVersions(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// partialOf says whether got has, for every package, either its before or
// its after version (or neither where it is absent in one of them).
func partialOf(got, before, after map[string]string) bool {
	names := map[string]bool{}
	for _, m := range []map[string]string{got, before, after} {
		for k := range m {
			names[k] = true
		}
	}
	for n := range names {
		if got[n] != before[n] && got[n] != after[n] {
			return false
		}
	}
	return true
}

type pkgSpec struct {
	name, version string
	source        bool // files are the source tree; configure must be among them
	deps          []string
	files         map[string]string
	links         map[string]string
	scripts       map[string]string
	relations     string // JSON members added to package.json: "Provides":[...], ...
}

// writePackage packs a package folder built from spec into dir.
func writePackage(t testing.TB, dir string, spec pkgSpec) string {
	t.Helper()
	src := t.TempDir()
	var deps []string
	for _, d := range spec.deps {
		deps = append(deps, strconv.Quote(d))
	}
	typ := "Binary"
	if spec.source {
		typ = "Source"
	}
	manifest := fmt.Sprintf(`{"Name":%q,"Version":%q,"Architecture":"any","Type":%q,"Dependencies":[%s]}`,
		spec.name, spec.version, typ, strings.Join(deps, ","))
	if spec.relations != "" {
		manifest = strings.TrimSuffix(manifest, "}") + "," + spec.relations + "}"
	}
	must(t, os.MkdirAll(filepath.Join(src, "info"), 0o755))
	must(t, os.MkdirAll(filepath.Join(src, "data"), 0o755))
	must(t, os.WriteFile(filepath.Join(src, "info", "package.json"), []byte(manifest), 0o644))
	for name, body := range spec.scripts {
		must(t, os.WriteFile(filepath.Join(src, "info", name), []byte(body), 0o755))
	}
	paths := make([]string, 0, len(spec.files))
	for p := range spec.files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		full := filepath.Join(src, "data", p)
		must(t, os.MkdirAll(filepath.Dir(full), 0o755))
		mode := os.FileMode(0o644)
		if p == "configure" {
			mode = 0o755
		}
		must(t, os.WriteFile(full, []byte(spec.files[p]), mode))
	}
	for p, target := range spec.links {
		full := filepath.Join(src, "data", p)
		must(t, os.MkdirAll(filepath.Dir(full), 0o755))
		must(t, os.Symlink(target, full))
	}
	out, _, err := packFile(src, dir)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// checkHistory demands that the history, replayed from nothing, gives the
// receipts' versions: each change commits with its receipt.
func checkHistory(t *testing.T, tx *store.StateTx, versions map[string]string) {
	t.Helper()
	hist, err := tx.History(0, 1000, -1)
	if err != nil {
		t.Fatal(err)
	}
	replay := map[string]string{}
	for i := len(hist) - 1; i >= 0; i-- {
		for _, c := range hist[i].Changes {
			if c.Action == string(Remove) {
				delete(replay, c.Name)
			} else {
				replay[c.Name] = c.Version
			}
		}
	}
	if !sameVersions(replay, versions) {
		t.Errorf("the history replays to %v; the receipts say %v", replay, versions)
	}
}

// historyEntries counts the transactions of the history in state.
func historyEntries(t *testing.T, state string) int {
	t.Helper()
	e, _, err := Open(context.Background(), Options{StateDir: state, BuildRoot: buildRootFor(state)})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	var n int
	e.State().View(func(tx *store.StateTx) error {
		hist, err := tx.History(0, 1000, 0)
		n = len(hist)
		return err
	})
	return n
}
