// Command install times `tpm --offline install` against `tar -xzf` of the
// same archive and `dpkg --unpack` of an equivalent .deb, for a package of
// many small files and one of a few large files, and prints the medians as
// ratios from the same run (issue 2, "Tests and figures").
//
//	go run ./test/bench/install -tpm bin/tpm [-runs 5] [-out test/bench/results] [-quick]
//
// Every measurement writes into a fresh, empty directory under one temporary
// folder, after an untimed sync so that no tool pays for another's dirty
// pages. tpm syncs what it installs, and dpkg fsyncs each file (this program
// passes --refuse-unsafe-io, because Docker images often force unsafe-io in
// /etc/dpkg/dpkg.cfg.d), so the fair baseline for them is `tar -xzf` followed
// by `sync -f`; plain `tar -xzf` is shown as the floor. dpkg runs with
// --root set to a private folder with its own admin directory and log, so it
// never reads or writes the host's /var/lib/dpkg. Each tool runs once as a
// warm-up, then the tools take turns in a rotating order within each run.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const dpkgHint = "apt-get install dpkg-dev"

func main() {
	tpmBin := flag.String("tpm", "bin/tpm", "the built tpm binary")
	runs := flag.Int("runs", 5, "timed runs per tool (the median is reported)")
	out := flag.String("out", "test/bench/results", "folder to write install.md to")
	quick := flag.Bool("quick", false, "small packages and one run: a smoke test")
	gen := flag.String("gen", "", "only generate the packages (folders, .tpkg, .deb) into this new folder and keep them, for profiling")
	flag.Parse()
	runsSet := false
	flag.Visit(func(f *flag.Flag) { runsSet = runsSet || f.Name == "runs" })
	if *quick && !runsSet {
		*runs = 1
	}
	if *runs < 1 || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: install [-tpm PATH] [-runs N] [-out DIR] [-quick] [-gen DIR]")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	err := run(ctx, config{tpm: *tpmBin, runs: *runs, out: *out, quick: *quick, gen: *gen})
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench install:", err)
		if ctx.Err() != nil {
			os.Exit(130)
		}
		os.Exit(1)
	}
}

type config struct {
	tpm   string
	runs  int
	out   string
	quick bool
	gen   string // generate into this folder and stop
}

// pkgSpec is one benchmark package before it is generated.
type pkgSpec struct {
	name  string
	title string
	gen   func(data string, rng *rand.Rand) error
}

// bundle is one generated package: its tree and both archives.
type bundle struct {
	spec   pkgSpec
	files  int   // regular files under data/
	dirs   int   // directories under data/
	bytes  int64 // their total size
	tpkg   string
	deb    string // "" when dpkg-deb is missing
	tpkgSz int64
	debSz  int64
}

// tool is one way of installing a bundle; run times it into a fresh slot
// folder and returns where the data/ tree landed.
type tool struct {
	name    string
	durable string
	skip    string // why the row is skipped, "" when it runs
	run     func(ctx context.Context, b *bundle, slot string) (landed string, m measure, err error)
}

type measure struct {
	wall time.Duration
	cpu  time.Duration // user+sys of the process and the children it waited for
}

func run(ctx context.Context, cfg config) error {
	tpmPath, err := filepath.Abs(cfg.tpm)
	if err == nil {
		_, err = os.Stat(tpmPath)
	}
	if err != nil {
		return fmt.Errorf("tpm binary: %w (run make build first)", err)
	}
	for _, prog := range []string{"tar", "gzip", "sync"} {
		if _, err := exec.LookPath(prog); err != nil {
			return fmt.Errorf("%s is needed for the baseline: %w", prog, err)
		}
	}
	dpkgMissing := ""
	for _, prog := range []string{"dpkg-deb", "dpkg"} {
		if _, err := exec.LookPath(prog); err != nil {
			dpkgMissing = fmt.Sprintf("skipped: %s is not installed (%s)", prog, dpkgHint)
			break
		}
	}
	if dpkgMissing != "" {
		fmt.Printf("dpkg --unpack row %s\n", dpkgMissing)
	}

	if cfg.gen != "" {
		return generateOnly(ctx, cfg, tpmPath, dpkgMissing == "")
	}
	work, err := os.MkdirTemp("", "tpm-bench-install-")
	if err != nil {
		return err
	}
	defer func() {
		if err := os.RemoveAll(work); err != nil {
			fmt.Fprintln(os.Stderr, "bench install: cleanup:", err)
		}
	}()
	fsNote, err := filesystemNote(work)
	if err != nil {
		return err
	}

	specs := []pkgSpec{smallSpec(cfg.quick), largeSpec(cfg.quick)}
	var bundles []*bundle
	for i, spec := range specs {
		fmt.Printf("generating %s ...\n", spec.name)
		b, err := build(ctx, work, tpmPath, spec, uint64(i+1), dpkgMissing == "")
		if err != nil {
			return fmt.Errorf("%s: %w", spec.name, err)
		}
		bundles = append(bundles, b)
	}

	tools := []tool{
		{name: "`tpm --offline install`", durable: "yes (syncfs)", run: tpmTool(tpmPath)},
		{name: "`tar -xzf`", durable: "no", run: tarTool(false)},
		{name: "`tar -xzf && sync -f`", durable: "yes (syncfs)", run: tarTool(true)},
		{name: "`dpkg --unpack`", durable: "yes (fsync per file)", skip: dpkgMissing, run: dpkgTool},
	}

	var report strings.Builder
	writeHeader(&report, cfg, fsNote)
	for _, b := range bundles {
		table, err := measureBundle(ctx, work, b, tools, cfg.runs)
		if err != nil {
			return fmt.Errorf("%s: %w", b.spec.name, err)
		}
		fmt.Print("\n" + table)
		report.WriteString("\n" + table)
	}
	writeFooter(&report)

	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return err
	}
	dest := filepath.Join(cfg.out, "install.md")
	if err := os.WriteFile(dest, []byte(report.String()), 0o644); err != nil {
		return err
	}
	fmt.Printf("\nwritten to %s\n", dest)
	return nil
}

// generateOnly builds the packages into cfg.gen, a folder that must not
// exist yet, and keeps them (removing them only on failure).
func generateOnly(ctx context.Context, cfg config, tpm string, withDeb bool) (err error) {
	if err := os.Mkdir(cfg.gen, 0o755); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(cfg.gen)
		}
	}()
	dir, err := filepath.Abs(cfg.gen)
	if err != nil {
		return err
	}
	for i, spec := range []pkgSpec{smallSpec(cfg.quick), largeSpec(cfg.quick)} {
		b, err := build(ctx, dir, tpm, spec, uint64(i+1), withDeb)
		if err != nil {
			return fmt.Errorf("%s: %w", spec.name, err)
		}
		fmt.Printf("%s: %d files, %s\n  %s\n", spec.name, b.files, mib(b.bytes), b.tpkg)
		if b.deb != "" {
			fmt.Printf("  %s\n", b.deb)
		}
	}
	return nil
}

// measureBundle warms every tool up once, then times runs rounds in which
// the tools take turns in a rotating order, and returns the Markdown table.
func measureBundle(ctx context.Context, work string, b *bundle, tools []tool, runs int) (string, error) {
	results := make([][]measure, len(tools))
	failed := make([]string, len(tools))
	slotN := 0
	// Deleting thousands of files right before creating thousands more
	// distorts the figures: ext4 without a journal (this machine's root)
	// skips inodes freed in the last 60 s (360 s while their table block is
	// dirty) and scans past each of them on every create, which made file
	// creation ~5x slower for every tool and hid the differences between
	// them. So the slots stay until the whole package is measured, unless
	// they would take more than 2 GiB (the large package, whose few files
	// cost nothing to free and are removed as soon as they are measured).
	keepSlots := int64(runs+1)*int64(len(tools))*b.bytes <= 2<<30
	slotsDir := filepath.Join(work, "slots-"+b.spec.name)
	if err := os.Mkdir(slotsDir, 0o755); err != nil {
		return "", err
	}
	defer os.RemoveAll(slotsDir)
	once := func(i int) error {
		t := tools[i]
		if t.skip != "" || failed[i] != "" {
			return nil
		}
		slotN++
		slot := filepath.Join(slotsDir, fmt.Sprint(slotN))
		if err := os.Mkdir(slot, 0o755); err != nil {
			return err
		}
		if !keepSlots {
			defer os.RemoveAll(slot)
		}
		// Start from a clean page cache writeback state: the previous
		// slot's files and their removal must not be flushed by this tool.
		if err := syncfs(work); err != nil {
			return err
		}
		landed, m, err := t.run(ctx, b, slot)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil {
			err = checkLanded(landed, b)
		}
		if err != nil {
			if t.skip == "" && strings.Contains(t.name, "dpkg") {
				// dpkg is a comparison, not the subject: report and go on.
				failed[i] = "failed: " + firstLine(err.Error())
				fmt.Printf("  %s %s\n", t.name, failed[i])
				return nil
			}
			return fmt.Errorf("%s: %w", t.name, err)
		}
		results[i] = append(results[i], m)
		return nil
	}

	fmt.Printf("%s: warm-up\n", b.spec.name)
	for i := range tools {
		if err := once(i); err != nil {
			return "", err
		}
	}
	for i := range results {
		results[i] = nil // the warm-up is not counted
	}
	for r := 0; r < runs; r++ {
		fmt.Printf("%s: run %d/%d\n", b.spec.name, r+1, runs)
		for k := range tools {
			if err := once((r + k) % len(tools)); err != nil {
				return "", err
			}
		}
	}

	if b.deb != "" {
		// Belt and braces: the host's dpkg database must not know the package.
		for _, f := range []string{"/var/lib/dpkg/info/" + b.spec.name + ".list", "/var/lib/dpkg/info/" + b.spec.name + ".md5sums"} {
			if _, err := os.Lstat(f); err == nil {
				return "", fmt.Errorf("%s exists: dpkg wrote to the host's database, stop and clean it up (dpkg --purge %s)", f, b.spec.name)
			}
		}
	}

	med := make([]measure, len(tools))
	for i := range tools {
		if len(results[i]) > 0 {
			med[i] = median(results[i])
		}
	}
	tar, tarSync := med[1].wall, med[2].wall

	var s strings.Builder
	fmt.Fprintf(&s, "### %s\n\n", b.spec.title)
	fmt.Fprintf(&s, "%d files in %d directories, %s; `.tpkg` %s, `.deb` %s. Median of %d timed runs.\n\n",
		b.files, b.dirs, mib(b.bytes), mib(b.tpkgSz), debSize(b), runs)
	s.WriteString("| tool | durable | median s | × `tar -xzf` | × `tar -xzf && sync` | CPU s (user+sys) | min–max s |\n")
	s.WriteString("|---|---|---:|---:|---:|---:|---:|\n")
	for i, t := range tools {
		why := t.skip
		if why == "" {
			why = failed[i]
		}
		if why != "" {
			fmt.Fprintf(&s, "| %s | %s | %s | | | | |\n", t.name, t.durable, why)
			continue
		}
		lo, hi := spread(results[i])
		fmt.Fprintf(&s, "| %s | %s | %.3f | %.2f | %.2f | %.3f | %.3f–%.3f |\n",
			t.name, t.durable, med[i].wall.Seconds(), ratio(med[i].wall, tar), ratio(med[i].wall, tarSync),
			med[i].cpu.Seconds(), lo.Seconds(), hi.Seconds())
	}
	return s.String(), nil
}

// The tools.

func tpmTool(tpm string) func(context.Context, *bundle, string) (string, measure, error) {
	return func(ctx context.Context, b *bundle, slot string) (string, measure, error) {
		prefix, state := filepath.Join(slot, "prefix"), filepath.Join(slot, "state")
		if err := os.Mkdir(prefix, 0o755); err != nil {
			return "", measure{}, err
		}
		m, err := timed(ctx, nil, command(tpm, "--offline", "--state-dir", state, "--prefix", prefix, "-y", "install", b.tpkg))
		return prefix, m, err
	}
}

func tarTool(withSync bool) func(context.Context, *bundle, string) (string, measure, error) {
	return func(ctx context.Context, b *bundle, slot string) (string, measure, error) {
		prefix := filepath.Join(slot, "prefix")
		if err := os.Mkdir(prefix, 0o755); err != nil {
			return "", measure{}, err
		}
		cmds := [][]string{{"tar", "-xzf", b.tpkg, "-C", prefix, "data/"}}
		if withSync {
			cmds = append(cmds, []string{"sync", "-f", prefix})
		}
		m, err := timed(ctx, nil, cmds...)
		return filepath.Join(prefix, "data"), m, err
	}
}

// dpkgTool unpacks the .deb into a private root: --root sets both the
// installation directory and the admin directory (root/var/lib/dpkg), and
// --log keeps the log inside it too, so the host's dpkg database is never
// touched. The .deb has no maintainer scripts, so nothing would be run
// (chrooted or not). --refuse-unsafe-io undoes a force-unsafe-io from
// /etc/dpkg/dpkg.cfg.d: dpkg must write durably like tpm.
func dpkgTool(ctx context.Context, b *bundle, slot string) (string, measure, error) {
	root := filepath.Join(slot, "root")
	admin := filepath.Join(root, "var", "lib", "dpkg")
	for _, d := range []string{filepath.Join(admin, "info"), filepath.Join(admin, "updates"), filepath.Join(root, "var", "log")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", measure{}, err
		}
	}
	for _, f := range []string{"status", "available"} {
		if err := os.WriteFile(filepath.Join(admin, f), nil, 0o644); err != nil {
			return "", measure{}, err
		}
	}
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DPKG_") {
			env = append(env, kv)
		}
	}
	m, err := timed(ctx, env, command("dpkg", "--root="+root, "--admindir="+admin,
		"--log="+filepath.Join(root, "var", "log", "dpkg.log"),
		"--force-not-root", "--refuse-unsafe-io", "--unpack", b.deb))
	return root, m, err
}

func command(args ...string) []string { return args }

// timed runs the commands one after the other, stopping at the first
// failure, and returns their total wall time and CPU time.
func timed(ctx context.Context, env []string, cmds ...[]string) (measure, error) {
	var m measure
	for _, args := range cmds {
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		if env != nil {
			cmd.Env = env
		}
		var outBuf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &outBuf, &outBuf
		// Own process group, so an interrupt also stops tar's gzip.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = 5 * time.Second
		start := time.Now()
		err := cmd.Run()
		m.wall += time.Since(start)
		if cmd.ProcessState != nil {
			if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
				m.cpu += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			}
		}
		if err != nil {
			return m, fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(outBuf.String()))
		}
	}
	return m, nil
}

// checkLanded makes sure a tool really installed the package: the same
// number of regular files and bytes as the generated data/ tree.
func checkLanded(dir string, b *bundle) error {
	files, _, size, err := countTree(filepath.Join(dir, "opt", b.spec.name))
	if err != nil {
		return fmt.Errorf("checking what was installed: %w", err)
	}
	if files != b.files || size != b.bytes {
		return fmt.Errorf("installed %d files, %d bytes under %s; want %d files, %d bytes", files, size, dir, b.files, b.bytes)
	}
	return nil
}

// The packages.

func smallSpec(quick bool) pkgSpec {
	files, dirs := 5000, 100
	if quick {
		files, dirs = 500, 10
	}
	return pkgSpec{
		name:  "bench-small",
		title: fmt.Sprintf("small: %d small files", files),
		gen: func(data string, rng *rand.Rand) error {
			root := filepath.Join(data, "opt", "bench-small")
			buf := make([]byte, 8<<10)
			for i := 0; i < files; i++ {
				d := i % dirs
				dir := filepath.Join(root, fmt.Sprintf("g%02d", d/10), fmt.Sprintf("d%03d", d))
				if i < dirs {
					if err := os.MkdirAll(dir, 0o755); err != nil {
						return err
					}
				}
				size := 1<<10 + rng.IntN(7<<10+1)
				name, mode := fmt.Sprintf("f%04d.bin", i), fs.FileMode(0o644)
				if rng.IntN(2) == 0 {
					name = fmt.Sprintf("f%04d.txt", i)
					fillText(buf[:size], rng)
				} else {
					fillRandom(buf[:size], rng)
				}
				if i%10 == 0 {
					mode = 0o755
				}
				if err := os.WriteFile(filepath.Join(dir, name), buf[:size], mode); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func largeSpec(quick bool) pkgSpec {
	size := 64 << 20
	if quick {
		size = 4 << 20
	}
	return pkgSpec{
		name:  "bench-large",
		title: fmt.Sprintf("large: 4 files of %d MiB", size>>20),
		gen: func(data string, rng *rand.Rand) error {
			root := filepath.Join(data, "opt", "bench-large")
			for _, d := range []string{"lib", "share"} {
				if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
					return err
				}
			}
			buf := make([]byte, 1<<20)
			for i := 0; i < 4; i++ {
				f, err := os.Create(filepath.Join(root, "lib", fmt.Sprintf("blob%d.bin", i)))
				if err != nil {
					return err
				}
				for n := 0; n < size; n += len(buf) {
					fillRandom(buf, rng)
					if _, err := f.Write(buf); err != nil {
						f.Close()
						return err
					}
				}
				if err := f.Close(); err != nil {
					return err
				}
			}
			small := make([]byte, 4<<10)
			for i, name := range []string{"README", "NOTES", "share/defaults.conf", "share/messages.txt"} {
				fillText(small[:1<<10+i*700], rng)
				if err := os.WriteFile(filepath.Join(root, name), small[:1<<10+i*700], 0o644); err != nil {
					return err
				}
			}
			return os.WriteFile(filepath.Join(root, "run.sh"), []byte("#!/bin/sh\necho bench-large\n"), 0o755)
		},
	}
}

var words = strings.Fields(`the package manager installs files into a prefix
durable atomic install staged renamed synced receipt journal torrent swarm
peer seed index signature version release architecture dependency`)

func fillText(b []byte, rng *rand.Rand) {
	n := 0
	for n < len(b) {
		w := words[rng.IntN(len(words))]
		sep := byte(' ')
		if rng.IntN(12) == 0 {
			sep = '\n'
		}
		n += copy(b[n:], w)
		if n < len(b) {
			b[n] = sep
			n++
		}
	}
}

func fillRandom(b []byte, rng *rand.Rand) {
	for i := 0; i+8 <= len(b); i += 8 {
		v := rng.Uint64()
		for k := 0; k < 8; k++ {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	for i := len(b) &^ 7; i < len(b); i++ {
		b[i] = byte(rng.Uint32())
	}
}

// build generates the package folder, packs it with tpm pack and, when
// dpkg-deb is there, builds the .deb from the same data tree.
func build(ctx context.Context, work, tpm string, spec pkgSpec, seed uint64, withDeb bool) (*bundle, error) {
	b := &bundle{spec: spec}
	src := filepath.Join(work, "src", spec.name)
	data := filepath.Join(src, "data")
	if err := os.MkdirAll(filepath.Join(src, "info"), 0o755); err != nil {
		return nil, err
	}
	manifest, err := json.MarshalIndent(map[string]string{
		"Name":         spec.name,
		"Version":      "1.0-1",
		"Architecture": "any",
		"Type":         "Binary",
		"Maintainer":   "tpm benchmarks <bench@example.invalid>",
		"Description":  "Benchmark payload: " + spec.title,
	}, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(src, "info", "package.json"), manifest, 0o644); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(seed, 0x7470_6d62_656e_6368))
	if err := spec.gen(data, rng); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var files int
	files, b.dirs, b.bytes, err = countTree(filepath.Join(data, "opt", spec.name))
	if err != nil {
		return nil, err
	}
	b.files = files

	outDir := filepath.Join(work, "pkg", spec.name)
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, err
	}
	if _, err := timed(ctx, nil, command(tpm, "pack", src, "-o", outDir)); err != nil {
		return nil, err
	}
	matches, _ := filepath.Glob(filepath.Join(outDir, "*.tpkg"))
	if len(matches) != 1 {
		return nil, fmt.Errorf("tpm pack wrote %d .tpkg files in %s", len(matches), outDir)
	}
	b.tpkg = matches[0]
	if b.tpkgSz, err = fileSize(b.tpkg); err != nil {
		return nil, err
	}
	if !withDeb {
		return b, nil
	}

	// The .deb: the same data tree (hard links, no copy) plus DEBIAN/control,
	// gzip like the .tpkg so both decompress the same way.
	tree := filepath.Join(work, "deb", spec.name)
	if err := linkTree(data, tree); err != nil {
		return nil, err
	}
	if err := os.Mkdir(filepath.Join(tree, "DEBIAN"), 0o755); err != nil {
		return nil, err
	}
	if err := os.Chmod(filepath.Join(tree, "DEBIAN"), 0o755); err != nil { // whatever the umask
		return nil, err
	}
	control := fmt.Sprintf("Package: %s\nVersion: 1.0-1\nArchitecture: all\nMaintainer: tpm benchmarks <bench@example.invalid>\n"+
		"Installed-Size: %d\nDescription: benchmark payload\n %s, the same files as %s.\n",
		spec.name, (b.bytes+1023)/1024, spec.title, filepath.Base(b.tpkg))
	if err := os.WriteFile(filepath.Join(tree, "DEBIAN", "control"), []byte(control), 0o644); err != nil {
		return nil, err
	}
	b.deb = filepath.Join(outDir, spec.name+"_1.0-1_all.deb")
	if _, err := timed(ctx, nil, command("dpkg-deb", "--root-owner-group", "-Zgzip", "-z6", "--build", tree, b.deb)); err != nil {
		return nil, err
	}
	if b.debSz, err = fileSize(b.deb); err != nil {
		return nil, err
	}
	return b, os.RemoveAll(tree)
}

// linkTree recreates src's directories under dst and hard-links its files.
func linkTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
			return os.Chmod(target, info.Mode().Perm())
		}
		return os.Link(p, target)
	})
}

func countTree(dir string) (files, dirs int, size int64, err error) {
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			dirs++
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			files++
			size += info.Size()
		}
		return nil
	})
	return files, dirs, size, err
}

// Helpers.

func syncfs(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

func median(ms []measure) measure {
	walls := make([]time.Duration, len(ms))
	cpus := make([]time.Duration, len(ms))
	for i, m := range ms {
		walls[i], cpus[i] = m.wall, m.cpu
	}
	return measure{wall: medianOf(walls), cpu: medianOf(cpus)}
}

func medianOf(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	n := len(ds)
	if n%2 == 1 {
		return ds[n/2]
	}
	return (ds[n/2-1] + ds[n/2]) / 2
}

func spread(ms []measure) (lo, hi time.Duration) {
	lo, hi = ms[0].wall, ms[0].wall
	for _, m := range ms[1:] {
		lo, hi = min(lo, m.wall), max(hi, m.wall)
	}
	return lo, hi
}

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func debSize(b *bundle) string {
	if b.deb == "" {
		return "not built"
	}
	return mib(b.debSz)
}

func fileSize(p string) (int64, error) {
	info, err := os.Stat(p)
	if err != nil {
		return 0, err
	}
	return info.Size(), nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return strings.ReplaceAll(s, "|", "\\|")
}

// filesystemNote names the filesystem the benchmark writes to: syncs on a
// tmpfs cost nothing, which would make every durable row meaningless.
func filesystemNote(dir string) (string, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return "", err
	}
	kind := map[int64]string{0xEF53: "ext4", 0x58465342: "xfs", 0x9123683E: "btrfs", 0x01021994: "tmpfs", 0x794C7630: "overlayfs"}[int64(st.Type)]
	if kind == "" {
		kind = fmt.Sprintf("type 0x%x", st.Type)
	}
	note := fmt.Sprintf("%s on %s", filepath.Dir(dir), kind)
	dev, opts := mountOf(dir)
	if kind == "ext4" && strings.HasPrefix(dev, "/dev/") {
		task, err := os.ReadFile(filepath.Join("/sys/fs/ext4", filepath.Base(dev), "journal_task"))
		if err == nil && strings.TrimSpace(string(task)) == "<none>" {
			note += " without a journal"
		}
	}
	if dev != "" {
		note += fmt.Sprintf(" (%s %s)", dev, opts)
	}
	if kind == "tmpfs" {
		fmt.Println("warning: the temporary folder is on tmpfs, so syncs cost nothing; set TMPDIR to a disk")
		note += " — warning: syncs are free on tmpfs"
	}
	return note, nil
}

// mountOf returns the device and options of the mount holding dir, from
// /proc/self/mounts (the longest mount point that is a prefix of dir).
func mountOf(dir string) (dev, opts string) {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return "", ""
	}
	defer f.Close()
	best := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 {
			continue
		}
		mp := fields[1]
		if (dir == mp || strings.HasPrefix(dir, strings.TrimSuffix(mp, "/")+"/")) && len(mp) >= len(best) {
			best, dev, opts = mp, fields[0], fields[3]
		}
	}
	return dev, opts
}

func writeHeader(w io.Writer, cfg config, fsNote string) {
	fmt.Fprintf(w, "# Install benchmark\n\n")
	fmt.Fprintf(w, "Generated by `go run ./test/bench/install` (`make bench`) on %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "- host: %s, %d CPUs, %s\n", unameLine(), runtime.NumCPU(), cpuModel())
	fmt.Fprintf(w, "- written to: %s\n", fsNote)
	fmt.Fprintf(w, "- tools: %s; %s; %s\n", versionLine("tar", "--version"), versionLine("gzip", "--version"), versionLine("dpkg", "--version"))
	mode := ""
	if cfg.quick {
		mode = " (-quick: smoke test sizes, not figures to quote)"
	}
	fmt.Fprintf(w, "- runs: warm-up once per tool, then %d timed runs, tools in rotating order%s\n", cfg.runs, mode)
}

func writeFooter(w io.Writer) {
	fmt.Fprint(w, `
Commands, each into a fresh empty folder, after an untimed sync. The small
package's folders are all kept until it is measured: deleting thousands of
files just before a run makes every create slower on ext4 without a journal
(freed inodes are skipped for 60 s), so run `+"`make bench`"+` on a quiet disk.

- tpm: `+"`tpm --offline --state-dir S --prefix P -y install X.tpkg`"+` (stages every
  file, syncfs, renames into place, syncfs, commits receipts in bbolt).
- tar: `+"`tar -xzf X.tpkg -C P data/`"+`; the durable variant adds `+"`sync -f P`"+`.
- dpkg: `+"`dpkg --root=R --admindir=R/var/lib/dpkg --log=R/var/log/dpkg.log --force-not-root --refuse-unsafe-io --unpack X.deb`"+`
  with a fresh admin directory; the .deb is built with `+"`dpkg-deb --root-owner-group -Zgzip -z6 --build`"+`
  from the same files. dpkg fsyncs each file before renaming it into place.

Ratios are of medians. CPU is user+sys of the process and its children (tar's gzip).
`)
}

func unameLine() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return runtime.GOOS
	}
	return fmt.Sprintf("%s %s %s", unix.ByteSliceToString(u.Sysname[:]), unix.ByteSliceToString(u.Release[:]), unix.ByteSliceToString(u.Machine[:]))
}

func cpuModel() string {
	raw, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func versionLine(prog string, args ...string) string {
	out, err := exec.Command(prog, args...).Output()
	if err != nil {
		var ee *exec.Error
		if errors.As(err, &ee) {
			return prog + " not installed"
		}
		return prog + " (version unknown)"
	}
	return strings.TrimSpace(firstLine(string(out)))
}
