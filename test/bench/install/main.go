// Command install times `tpm --offline install` against `tar -xzf` of the
// same archive and `dpkg --unpack` of an equivalent .deb, for a package of
// many small files, one shaped like Debian's linux-headers-*-common (a
// kernel-headers tree: deep folders, uneven fan-out, log-normal sizes, some
// symlinks) and one of a few large files, and prints the medians as ratios
// from the same run (issue 2, "Tests and figures"). With -before, an older
// tpm binary is timed in the same run as an extra row, to compare two builds
// under the same conditions.
//
//	go run ./test/bench/install -tpm bin/tpm [-before old/tpm] [-runs 5] [-out test/bench/results] [-quick]
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
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path"
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
	before := flag.String("before", "", "an older tpm binary to time in the same run, as an extra row")
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
		fmt.Fprintln(os.Stderr, "usage: install [-tpm PATH] [-before PATH] [-runs N] [-out DIR] [-quick] [-gen DIR]")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	err := run(ctx, config{tpm: *tpmBin, before: *before, runs: *runs, out: *out, quick: *quick, gen: *gen})
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
	tpm    string
	before string // an older tpm binary timed as an extra row, "" for none
	runs   int
	out    string
	quick  bool
	gen    string // generate into this folder and stop
}

// pkgSpec is one benchmark package before it is generated.
type pkgSpec struct {
	name  string
	title string
	seed  uint64 // of the generator's rng
	gen   func(data string, rng *rand.Rand) error
}

// benchSpecs lists the packages in the order they are measured.
func benchSpecs(quick bool) []pkgSpec {
	return []pkgSpec{smallSpec(quick), headersSpec(quick), largeSpec(quick)}
}

// bundle is one generated package: its tree and both archives.
type bundle struct {
	spec   pkgSpec
	files  int   // regular files under data/
	dirs   int   // directories under data/
	links  int   // symlinks under data/
	bytes  int64 // their total size
	tpkg   string
	deb    string // "" when dpkg-deb is missing
	tpkgSz int64
	debSz  int64

	tpkgBefore   string // packed by the -before binary, "" without one
	tpkgBeforeSz int64
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
	beforePath := ""
	if cfg.before != "" {
		beforePath, err = filepath.Abs(cfg.before)
		if err == nil {
			_, err = os.Stat(beforePath)
		}
		if err != nil {
			return fmt.Errorf("-before binary: %w", err)
		}
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

	var bundles []*bundle
	for _, spec := range benchSpecs(cfg.quick) {
		fmt.Printf("generating %s ...\n", spec.name)
		b, err := build(ctx, work, tpmPath, beforePath, spec, dpkgMissing == "")
		if err != nil {
			return fmt.Errorf("%s: %w", spec.name, err)
		}
		bundles = append(bundles, b)
	}

	tools := []tool{{name: "`tpm --offline install`", durable: "yes (syncfs)", run: tpmTool(tpmPath, false)}}
	if beforePath != "" {
		tools = append(tools, tool{name: "`tpm --offline install` (before)", durable: "yes (syncfs)", run: tpmTool(beforePath, true)})
	}
	tools = append(tools,
		tool{name: tarName, durable: "no", run: tarTool(false)},
		tool{name: tarSyncName, durable: "yes (syncfs)", run: tarTool(true)},
		tool{name: "`dpkg --unpack`", durable: "yes (fsync per file)", skip: dpkgMissing, run: dpkgTool},
	)

	var report strings.Builder
	writeHeader(&report, cfg, fsNote, tpmPath, beforePath, bundles)
	for _, b := range bundles {
		table, err := measureBundle(ctx, work, b, tools, cfg.runs)
		if err != nil {
			return fmt.Errorf("%s: %w", b.spec.name, err)
		}
		fmt.Print("\n" + table)
		report.WriteString("\n" + table)
	}
	writeFooter(&report, beforePath != "")

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
	for _, spec := range benchSpecs(cfg.quick) {
		b, err := build(ctx, dir, tpm, "", spec, withDeb)
		if err != nil {
			return fmt.Errorf("%s: %w", spec.name, err)
		}
		fmt.Printf("%s: %d files, %d symlinks, %d directories, %s\n  %s\n", spec.name, b.files, b.links, b.dirs, mib(b.bytes), b.tpkg)
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
	// The baselines, looked up by name: rows may be added before them.
	baseline := func(name string) time.Duration {
		if i := slices.IndexFunc(tools, func(t tool) bool { return t.name == name }); i >= 0 {
			return med[i].wall
		}
		return 0
	}
	tar, tarSync := baseline(tarName), baseline(tarSyncName)

	var s strings.Builder
	fmt.Fprintf(&s, "### %s\n\n", b.spec.title)
	links := ""
	if b.links > 0 {
		links = fmt.Sprintf(" and %d symlinks", b.links)
	}
	tpkgSz := mib(b.tpkgSz)
	if b.tpkgBefore != "" {
		tpkgSz += fmt.Sprintf(" (before's own: %s)", mib(b.tpkgBeforeSz))
	}
	fmt.Fprintf(&s, "%d files%s in %d directories, %s; `.tpkg` %s, `.deb` %s. Median of %d timed runs.\n\n",
		b.files, links, b.dirs, mib(b.bytes), tpkgSz, debSize(b), runs)
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

// tpmTool installs with the binary tpm: the bundle's .tpkg, or the one the
// -before binary packed when before is set.
func tpmTool(tpm string, before bool) func(context.Context, *bundle, string) (string, measure, error) {
	return func(ctx context.Context, b *bundle, slot string) (string, measure, error) {
		pkg := b.tpkg
		if before {
			pkg = b.tpkgBefore
		}
		prefix, state := filepath.Join(slot, "prefix"), filepath.Join(slot, "state")
		if err := os.Mkdir(prefix, 0o755); err != nil {
			return "", measure{}, err
		}
		m, err := timed(ctx, nil, command(tpm, "--offline", "--state-dir", state, "--prefix", prefix, "-y", "install", pkg))
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

const (
	tarName     = "`tar -xzf`"
	tarSyncName = "`tar -xzf && sync -f`"
)

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
// number of regular files, bytes and symlinks as the generated data/ tree.
func checkLanded(dir string, b *bundle) error {
	files, _, links, size, err := countTree(filepath.Join(dir, "opt", b.spec.name))
	if err != nil {
		return fmt.Errorf("checking what was installed: %w", err)
	}
	if files != b.files || size != b.bytes || links != b.links {
		return fmt.Errorf("installed %d files, %d bytes, %d symlinks under %s; want %d files, %d bytes, %d symlinks",
			files, size, links, dir, b.files, b.bytes, b.links)
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
		seed:  1,
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

// headersSpec is shaped like Debian's linux-headers-*-common: a kernel
// headers tree of ~10,000 C headers in ~900 folders 2 to 7 levels deep
// (include/linux, include/uapi/linux, arch/*/include/asm, scripts, tools),
// with uneven fan-out (a few folders of hundreds of files, most of 1–10),
// log-normal sizes (median ~3 KiB), ~1 % relative symlinks to other headers
// and a few executable scripts.
func headersSpec(quick bool) pkgSpec {
	files, dirs, arches := 10000, 900, len(archNames)
	if quick {
		files, dirs, arches = 1000, 120, 6
	}
	return pkgSpec{
		name:  "bench-headers",
		title: fmt.Sprintf("headers: %d files shaped like linux-headers-*-common", files),
		seed:  3,
		gen: func(data string, rng *rand.Rand) error {
			return genHeaders(filepath.Join(data, "opt", "bench-headers"), files, dirs, arches, rng)
		},
	}
}

// Architectures under arch/ in a Linux tree, current and retired.
var archNames = strings.Fields(`x86 arm64 arm powerpc mips s390 riscv sparc
loongarch m68k alpha parisc sh xtensa arc csky hexagon ia64 microblaze nios2
openrisc um h8300 nds32 c6x cris frv score tile unicore32`)

// Folder names below the fixed skeleton.
var subsysNames = strings.Fields(`usb net mfd iio gpio pinctrl clk regulator
power phy mlx5 mlx4 netfilter sunrpc bpf crypto dma fsl qcom mtd spi i2c input
hid sched mm fs nfs rdma media drm sound soc platform_data can wireless
bluetooth ceph lockd firmware misc tty serial pci acpi xen virtio scsi block
raid mmc nvme thermal watchdog hwmon leds rtc sunxi tegra imx omap samsung
rockchip mediatek amlogic renesas broadcom intel amd ti st nxp marvell ipv4
ipv6 sctp tc_act tc_ematch netlink caif nfc phonet`)

// Identifier parts and comment words for the header text.
var (
	cIdents = strings.Fields(`dev device net skb buf page mem lock spin mutex
irq dma map queue list head node entry ops cfg ctrl reg regs port pci usb bus
clk timer time sched task cpu mask bit bits flag flags state stat info data
ptr addr len size count max min id type mode fd file inode sb path name attr
key val value hash table ring desc tx rx phy link msg hdr req resp cmd ctx
priv init exit probe remove suspend resume read write open close alloc free
get put set clear enable disable start stop reset event notify hw fw ver`)
	cTypes = strings.Fields(`u8 u16 u32 u64 __u8 __u16 __u32 __u64 __le16
__le32 __be32 int long bool size_t loff_t atomic_t spinlock_t`)
	cComment = strings.Fields(`the of to is for this must be called with
lock held returns zero on success negative error code if a an and or not
when caller device driver buffer may should only used by in from it each
all see below above note that value field set bit register`)
)

// hdir is one folder of the headers tree while it is planned.
type hdir struct {
	path      string // relative to the package root, slash-separated
	depth     int    // path components
	grow      float64
	container bool // holds only folders (arch, include/uapi, ...)
	children  int
	files     int
}

func genHeaders(root string, nFiles, nDirs, nArches int, rng *rand.Rand) error {
	// The skeleton: the folders every kernel headers package has.
	var dirs []*hdir
	index := map[string]*hdir{}
	var add func(p string, grow float64, container bool) *hdir
	add = func(p string, grow float64, container bool) *hdir {
		if d := index[p]; d != nil {
			return d
		}
		if parent := path.Dir(p); parent != "." {
			pd := index[parent]
			if pd == nil {
				pd = add(parent, grow, false)
			}
			pd.children++
		}
		d := &hdir{path: p, depth: strings.Count(p, "/") + 1, grow: grow, container: container}
		dirs = append(dirs, d)
		index[p] = d
		return d
	}
	for _, p := range []string{"include", "include/uapi", "arch", "tools", "tools/include", "tools/testing", "scripts"} {
		add(p, 0, p != "scripts")
	}
	for _, p := range strings.Fields(`linux uapi/linux uapi/asm-generic asm-generic net
sound drm media trace trace/events dt-bindings soc crypto keys scsi video xen
rdma acpi clocksource kvm misc ras target vdso pcmcia math-emu uapi/drm
uapi/sound uapi/rdma uapi/scsi uapi/misc uapi/xen linux/mfd linux/usb
linux/netfilter linux/platform_data linux/mlx5 linux/sched net/netfilter
dt-bindings/clock dt-bindings/gpio dt-bindings/interrupt-controller`) {
		add("include/"+p, 3, false)
	}
	for _, a := range archNames[:nArches] {
		add("arch/"+a, 0.3, false)
		add("arch/"+a+"/include", 0, true)
		add("arch/"+a+"/include/uapi", 0, true)
		add("arch/"+a+"/include/asm", 1, false)
		add("arch/"+a+"/include/uapi/asm", 0.5, false)
	}
	for _, p := range strings.Fields(`kconfig mod basic gcc-plugins dtc dtc/libfdt
genksyms package atomic gdb gdb/linux`) {
		add("scripts/"+p, 1, false)
	}
	for _, p := range strings.Fields(`include/linux include/uapi/linux
include/asm-generic include/tools objtool lib lib/bpf build build/feature
scripts arch arch/x86 arch/x86/include arch/x86/include/asm testing/selftests`) {
		add("tools/"+p, 2, false)
	}
	for _, p := range []string{"tools/arch", "tools/arch/x86", "tools/arch/x86/include", "tools/lib", "tools/build", "tools/testing"} {
		index[p].container = true
	}

	// Then random folders below it, up to 7 levels, where kernels grow them.
	for len(dirs) < nDirs {
		parent := pickWeighted(rng, dirs, func(d *hdir) float64 {
			if d.depth >= 7 || d.grow == 0 {
				return 0
			}
			return d.grow
		})
		name := subsysNames[rng.IntN(len(subsysNames))]
		for try := 0; index[parent.path+"/"+name] != nil; try++ {
			name = subsysNames[rng.IntN(len(subsysNames))]
			if try > 3 {
				name += "_" + cIdents[rng.IntN(len(cIdents))]
			}
		}
		add(parent.path+"/"+name, parent.grow, false)
	}

	// Files: a fixed share for the big folders, one for every other leaf,
	// the rest spread by log-normal weights (most folders get 1–10).
	big := map[string]float64{
		"include/linux": 0.09, "include/uapi/linux": 0.05, "arch/x86/include/asm": 0.025,
		"include/net": 0.025, "include/asm-generic": 0.012, "include/trace/events": 0.012,
		"tools/include/linux": 0.01,
	}
	nExec := max(3, nFiles/500)
	left := nFiles - nExec
	weights := make([]float64, len(dirs))
	for i, d := range dirs {
		if f, ok := big[d.path]; ok {
			d.files = int(f*float64(nFiles) + 0.5)
			left -= d.files
			continue
		}
		if d.container {
			continue
		}
		if d.children == 0 {
			d.files = 1
			left--
		}
		// Deep folders hold fewer files, as in a kernel tree.
		weights[i] = math.Exp(1.4*rng.NormFloat64()) * math.Pow(0.6, float64(max(0, d.depth-3)))
	}
	if left < 0 {
		return fmt.Errorf("%d files are too few for %d folders", nFiles, nDirs)
	}
	for ; left > 0; left-- {
		dirs[pickIndex(rng, weights)].files++
	}
	index["scripts"].files += nExec

	// Write them, folder by folder, then the symlinks.
	var headers []string // regular .h files, for the symlinks to point to
	taken := map[string]bool{}
	text := make([]byte, 0, 256<<10)
	for _, d := range dirs {
		dir := filepath.Join(root, filepath.FromSlash(d.path))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		for k := 0; k < d.files; k++ {
			script := d.path == "scripts" && k < nExec
			name := headerName(rng, d.path, script)
			for try := 0; taken[d.path+"/"+name]; try++ {
				name = headerName(rng, d.path, script)
				if try > 3 {
					ext := path.Ext(name)
					name = fmt.Sprintf("%s%d%s", strings.TrimSuffix(name, ext), try, ext)
				}
			}
			taken[d.path+"/"+name] = true
			size := int(math.Exp(math.Log(3<<10) + 1.1*rng.NormFloat64()))
			size = min(max(size, 64), 200<<10)
			mode := fs.FileMode(0o644)
			if script {
				mode = 0o755
			}
			text = headerText(text[:0], rng, d.path, name, size, script)
			if err := os.WriteFile(filepath.Join(dir, name), text, mode); err != nil {
				return err
			}
			if strings.HasSuffix(name, ".h") {
				headers = append(headers, d.path+"/"+name)
			}
		}
	}
	for n := 0; n < nFiles/100; n++ {
		target := headers[rng.IntN(len(headers))]
		var link string
		for try := 0; ; try++ {
			d := dirs[rng.IntN(len(dirs))]
			link = d.path + "/" + path.Base(target)
			if try > 3 {
				link = d.path + "/" + fmt.Sprintf("%s_%d.h", strings.TrimSuffix(path.Base(target), ".h"), n)
			}
			if !taken[link] {
				break
			}
		}
		taken[link] = true
		rel, err := filepath.Rel(path.Dir(link), target)
		if err != nil {
			return err
		}
		if err := os.Symlink(rel, filepath.Join(root, filepath.FromSlash(link))); err != nil {
			return err
		}
	}
	return nil
}

// pickWeighted returns one of ds, each with the chance of its weight.
func pickWeighted(rng *rand.Rand, ds []*hdir, weight func(*hdir) float64) *hdir {
	ws := make([]float64, len(ds))
	for i, d := range ds {
		ws[i] = weight(d)
	}
	return ds[pickIndex(rng, ws)]
}

// pickIndex returns an index of ws with the chance of its weight; at least
// one weight must be positive.
func pickIndex(rng *rand.Rand, ws []float64) int {
	total := 0.0
	for _, w := range ws {
		total += w
	}
	r := rng.Float64() * total
	last := 0
	for i, w := range ws {
		if w <= 0 {
			continue
		}
		if r < w {
			return i
		}
		r -= w
		last = i
	}
	return last // rounding
}

// headerName names a file of the headers tree: foo_bar.h mostly, some
// Kbuild, Makefile and Kconfig, C sources under scripts and tools, and
// shell, Perl and Python for the executable scripts.
func headerName(rng *rand.Rand, dir string, script bool) string {
	stem := cIdents[rng.IntN(len(cIdents))]
	for n := rng.IntN(3); n > 0; n-- {
		stem += "_" + cIdents[rng.IntN(len(cIdents))]
	}
	switch {
	case script:
		return stem + []string{".sh", ".pl", ".py"}[rng.IntN(3)]
	case rng.IntN(50) == 0:
		return []string{"Kbuild", "Makefile", "Kconfig"}[rng.IntN(3)]
	case strings.HasPrefix(dir, "scripts") || (strings.HasPrefix(dir, "tools") && rng.IntN(4) == 0):
		return stem + []string{".c", ".h"}[rng.IntN(2)]
	}
	return stem + ".h"
}

// headerText appends size bytes of C-header-like text to b: a guard, then
// defines, structs, enums, prototypes, inline functions, includes and
// comments built from the file's own prefix and a small vocabulary, so
// that it compresses about like real headers. Scripts get a shebang and
// shell-like lines instead.
func headerText(b []byte, rng *rand.Rand, dir, name string, size int, script bool) []byte {
	start := len(b)
	stem := strings.TrimSuffix(name, path.Ext(name))
	upper := strings.ToUpper(stem)
	id := func() string { return cIdents[rng.IntN(len(cIdents))] }
	words := func(n int) {
		for i := 0; i < n; i++ {
			if i > 0 {
				b = append(b, ' ')
			}
			b = append(b, cComment[rng.IntN(len(cComment))]...)
		}
	}
	if script {
		b = append(b, "#!/bin/sh\n# SPDX-License-Identifier: GPL-2.0\n"...)
		for len(b)-start < size {
			switch rng.IntN(3) {
			case 0:
				b = append(b, "# "...)
				words(3 + rng.IntN(8))
				b = append(b, '\n')
			case 1:
				b = fmt.Appendf(b, "%s_%s=\"$%s\"\n", upper, strings.ToUpper(id()), strings.ToUpper(id()))
			default:
				b = fmt.Appendf(b, "if [ -n \"$%s\" ]; then\n\t%s_%s \"$@\" || exit 1\nfi\n", strings.ToUpper(id()), stem, id())
			}
		}
		return b[:start+size]
	}
	guard := "_" + strings.ToUpper(strings.NewReplacer("/", "_", "-", "_", ".", "_").Replace(path.Base(dir)+"_"+name))
	b = fmt.Appendf(b, "/* SPDX-License-Identifier: GPL-2.0 */\n#ifndef %s\n#define %s\n\n", guard, guard)
	for len(b)-start < size {
		switch k := rng.IntN(20); {
		case k < 6:
			b = fmt.Appendf(b, "#define %s_%s_%s", upper, strings.ToUpper(id()), strings.ToUpper(id()))
			switch rng.IntN(4) {
			case 0:
				b = fmt.Appendf(b, "\t0x%08x\n", rng.Uint32()&0xffff)
			case 1:
				b = fmt.Appendf(b, "\t(1U << %d)\n", rng.IntN(32))
			case 2:
				b = fmt.Appendf(b, "\t%d\n", rng.IntN(256))
			default:
				b = fmt.Appendf(b, "\t%s_%s\n", upper, strings.ToUpper(id()))
			}
		case k < 9:
			b = fmt.Appendf(b, "struct %s_%s {\n", stem, id())
			for n := 2 + rng.IntN(9); n > 0; n-- {
				b = fmt.Appendf(b, "\t%s %s_%s;", cTypes[rng.IntN(len(cTypes))], id(), id())
				if rng.IntN(4) == 0 {
					b = append(b, "\t/* "...)
					words(2 + rng.IntN(5))
					b = append(b, " */"...)
				}
				b = append(b, '\n')
			}
			b = append(b, "};\n\n"...)
		case k < 11:
			b = fmt.Appendf(b, "enum %s_%s {\n", stem, id())
			for n := 2 + rng.IntN(8); n > 0; n-- {
				b = fmt.Appendf(b, "\t%s_%s_%s,\n", upper, strings.ToUpper(id()), strings.ToUpper(id()))
			}
			b = append(b, "};\n\n"...)
		case k < 14:
			b = fmt.Appendf(b, "extern %s %s_%s_%s(struct %s_%s *%s, %s %s);\n",
				[]string{"int", "void", "long", "bool"}[rng.IntN(4)], stem, id(), id(), stem, id(), id(), cTypes[rng.IntN(len(cTypes))], id())
		case k < 15:
			b = fmt.Appendf(b, "\nstatic inline %s %s_%s(const struct %s_%s *%s)\n{\n\treturn %s->%s & %s_%s;\n}\n\n",
				cTypes[rng.IntN(len(cTypes))], stem, id(), stem, id(), "p", "p", id(), upper, strings.ToUpper(id()))
		case k < 16:
			b = fmt.Appendf(b, "#include <linux/%s.h>\n", id())
		default:
			b = append(b, "/*\n"...)
			for n := 1 + rng.IntN(5); n > 0; n-- {
				b = append(b, " * "...)
				words(4 + rng.IntN(9))
				b = append(b, '\n')
			}
			b = append(b, " */\n"...)
		}
	}
	b = fmt.Appendf(b, "\n#endif /* %s */\n", guard)
	return b[:start+size]
}

func largeSpec(quick bool) pkgSpec {
	size := 64 << 20
	if quick {
		size = 4 << 20
	}
	return pkgSpec{
		name:  "bench-large",
		title: fmt.Sprintf("large: 4 files of %d MiB", size>>20),
		seed:  2,
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
func build(ctx context.Context, work, tpm, before string, spec pkgSpec, withDeb bool) (*bundle, error) {
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
	rng := rand.New(rand.NewPCG(spec.seed, 0x7470_6d62_656e_6368))
	if err := spec.gen(data, rng); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.files, b.dirs, b.links, b.bytes, err = countTree(filepath.Join(data, "opt", spec.name))
	if err != nil {
		return nil, err
	}

	outDir := filepath.Join(work, "pkg", spec.name)
	if b.tpkg, b.tpkgSz, err = pack(ctx, tpm, src, outDir); err != nil {
		return nil, err
	}
	if before != "" {
		// The older binary packs its own: it may not read the current
		// format (and the current binary may pack what it installs faster).
		if b.tpkgBefore, b.tpkgBeforeSz, err = pack(ctx, before, src, filepath.Join(outDir, "before")); err != nil {
			return nil, fmt.Errorf("-before: %w", err)
		}
	}
	if !withDeb {
		return b, nil
	}

	// The .deb: the same data tree (hard links and the same symlinks, no
	// copy) plus DEBIAN/control,
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

// pack runs tpm pack on src into the new folder outDir and returns the
// .tpkg it wrote and its size.
func pack(ctx context.Context, tpm, src, outDir string) (string, int64, error) {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", 0, err
	}
	if _, err := timed(ctx, nil, command(tpm, "pack", src, "-o", outDir)); err != nil {
		return "", 0, err
	}
	matches, _ := filepath.Glob(filepath.Join(outDir, "*.tpkg"))
	if len(matches) != 1 {
		return "", 0, fmt.Errorf("tpm pack wrote %d .tpkg files in %s", len(matches), outDir)
	}
	size, err := fileSize(matches[0])
	return matches[0], size, err
}

// linkTree recreates src's directories and symlinks under dst and
// hard-links its files.
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
		if d.Type()&fs.ModeSymlink != 0 {
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		}
		return os.Link(p, target)
	})
}

// countTree counts the directories, regular files (and their bytes) and
// symlinks under dir, which WalkDir does not follow.
func countTree(dir string) (files, dirs, links int, size int64, err error) {
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
		case d.Type()&fs.ModeSymlink != 0:
			links++
		}
		return nil
	})
	return files, dirs, links, size, err
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

// binaryNote names a tpm binary by its path and the start of its SHA-256,
// so that a report says which build it measured.
// binaryNote names a binary as given on the command line, with the start
// of the sha256 of the file at abs.
func binaryNote(given, abs string) string {
	f, err := os.Open(abs)
	if err != nil {
		return "`" + given + "`"
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "`" + given + "`"
	}
	return fmt.Sprintf("`%s` (sha256 %x)", given, h.Sum(nil)[:6])
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

func writeHeader(w io.Writer, cfg config, fsNote, tpm, before string, bundles []*bundle) {
	fmt.Fprintf(w, "# Install benchmark\n\n")
	fmt.Fprintf(w, "Generated by `go run ./test/bench/install` (`make bench`) on %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "- host: %s, %d CPUs, %s\n", unameLine(), runtime.NumCPU(), cpuModel())
	fmt.Fprintf(w, "- written to: %s\n", fsNote)
	fmt.Fprintf(w, "- tools: %s; %s; %s\n", versionLine("tar", "--version"), versionLine("gzip", "--version"), versionLine("dpkg", "--version"))
	fmt.Fprintf(w, "- tpm: %s\n", binaryNote(cfg.tpm, tpm))
	if before != "" {
		fmt.Fprintf(w, "- before: %s, timed in the same run as the row \"(before)\"\n", binaryNote(cfg.before, before))
	}
	var pkgs []string
	for _, b := range bundles {
		links := ""
		if b.links > 0 {
			links = fmt.Sprintf(", %d symlinks", b.links)
		}
		pkgs = append(pkgs, fmt.Sprintf("%s (%d files%s, %d directories, %s)", b.spec.name, b.files, links, b.dirs, mib(b.bytes)))
	}
	fmt.Fprintf(w, "- packages: %s\n", strings.Join(pkgs, "; "))
	mode := ""
	if cfg.quick {
		mode = " (-quick: smoke test sizes, not figures to quote)"
	}
	fmt.Fprintf(w, "- runs: warm-up once per tool, then %d timed runs, tools in rotating order%s\n", cfg.runs, mode)
}

func writeFooter(w io.Writer, before bool) {
	fmt.Fprint(w, `
Packages: bench-small is files of 1–8 KiB, half text and half random bytes,
in two levels of folders; bench-headers is shaped like Debian's
linux-headers-*-common (a kernel-headers tree): C-header-like text files
with log-normal sizes (median ~3 KiB, most between 300 B and 30 KiB, at
most 200 KiB) in folders 2 to 7 levels deep with uneven fan-out
(include/linux holds hundreds, most folders 1–10), arch/*/include/asm for
many architectures, ~1 % relative symlinks to other headers and a few
executable scripts; bench-large is 4 files of random bytes. All are
generated from a fixed seed, so every run installs the same files.

Commands, each into a fresh empty folder, after an untimed sync. The
folders of the small-file packages are all kept until the package is
measured: deleting thousands of files just before a run makes every create
slower on ext4 without a journal (freed inodes are skipped for 60 s), so run
`+"`make bench`"+` on a quiet disk.

- tpm: `+"`tpm --offline --state-dir S --prefix P -y install X.tpkg`"+` (plans from
  the listing ahead of the data, stages every file while it decompresses, a
  new folder whole, syncfs, renames into place, syncfs, commits receipts in
  bbolt).
`)
	if before {
		fmt.Fprint(w, `- tpm (before): the same command with the older binary given by `+"`-before`"+`,
  in the same rotation, so both builds are measured under the same conditions;
  it installs the .tpkg it packed itself from the same folder (`+"`tpm pack`"+`), as it
  may not read the current format.
`)
	}
	fmt.Fprint(w, `- tar: `+"`tar -xzf X.tpkg -C P data/`"+`; the durable variant adds `+"`sync -f P`"+`.
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
