// Package cli is the tpm command: flags, verbs, prompts and output. The
// binary in cmd/tpm only wires it to the process.
package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"
)

// Env is what the command may touch of its process.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// Step, when set, is called before every step of a transaction (tests
	// use it to crash the process at a chosen point).
	Step func(string)
}

// usageError makes Main exit 2 and print the verb's usage hint.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// options are every flag of every verb; each verb reads the ones it defines.
type options struct {
	offline  bool
	stateDir string
	prefix   string
	runDir   string
	yes      bool
	json     bool

	reinstall      bool
	allowDowngrade bool
	cascade        bool
	output         string
	force          bool
	maxEntries     int
	maxBytes       int64
	scriptTimeout  string
	buildDir       string
	verbose        bool
	buildTimeout   string
	linkDir        string
}

type verb struct {
	name    string
	args    string
	summary string
	flags   func(fs *pflag.FlagSet, o *options)
	run     func(ctx context.Context, c *command, args []string) error
}

// command is one run of tpm: its options, output and input.
type command struct {
	env  Env
	opts options
	in   *bufio.Reader
	// prefixSet says --prefix was given; otherwise the daemon's own applies.
	prefixSet bool
	buildStep map[string]string // the step each source build is in, for --verbose-less output
}

func globalFlags(fs *pflag.FlagSet, o *options) {
	fs.BoolVar(&o.offline, "offline", false, "use the install engine directly instead of the tpmd daemon (local .tpkg files)")
	fs.StringVar(&o.stateDir, "state-dir", "/var/lib/tpm", "state directory (with --offline)")
	fs.StringVar(&o.prefix, "prefix", "/", "install prefix")
	fs.StringVar(&o.runDir, "run-dir", "/run/tpm", "where the daemon's FIFOs are")
	fs.BoolVarP(&o.yes, "yes", "y", false, "answer yes to every question")
	fs.BoolVar(&o.json, "json", false, "print one JSON object per line")
}

func limitFlags(fs *pflag.FlagSet, o *options) {
	fs.BoolVarP(&o.verbose, "verbose", "v", false, "show every line of source package builds")
	fs.BoolVar(&o.allowDowngrade, "allow-downgrade", false, "allow replacing a package with an older version")
	fs.IntVar(&o.maxEntries, "max-entries", 0, "refuse archives with more entries (default 500000)")
	fs.Int64Var(&o.maxBytes, "max-bytes", 0, "refuse archives that decompress to more bytes (default 16 GiB)")
	fs.StringVar(&o.scriptTimeout, "script-timeout", "5m", "time limit for each package script")
	// Like mktemp -d: under $TMPDIR when it is set.
	fs.StringVar(&o.buildDir, "build-dir", filepath.Join(os.TempDir(), "tpm"), "where source packages are built (with --offline)")
	fs.StringVar(&o.buildTimeout, "build-timeout", "1h", "time limit for building one source package (with --offline)")
	fs.StringVar(&o.linkDir, "link-dir", "usr/local", "where source packages are linked, relative to the prefix (with --offline)")
}

func verbs() []verb {
	return []verb{
		{name: "install", args: "NAME... | --offline FILE.tpkg...", summary: "install packages with what they need (with --offline: from local files)",
			flags: func(fs *pflag.FlagSet, o *options) {
				limitFlags(fs, o)
				fs.BoolVar(&o.reinstall, "reinstall", false, "install again a version that is already installed")
			}, run: runInstall},
		{name: "upgrade", args: "[NAME...] | --offline FILE.tpkg...", summary: "upgrade installed packages (all when none is named; with --offline: to the given files)",
			flags: limitFlags, run: runUpgrade},
		{name: "remove", args: "NAME...", summary: "remove installed packages",
			flags: func(fs *pflag.FlagSet, o *options) {
				fs.BoolVar(&o.cascade, "cascade", false, "also remove the packages that need them")
				fs.StringVar(&o.scriptTimeout, "script-timeout", "5m", "time limit for each package script")
			}, run: runRemove},
		{name: "search", args: "WORD", summary: "find packages in the index by name or description", run: runSearch},
		{name: "info", args: "NAME", summary: "show a package from the index and whether it is installed", run: runInfo},
		{name: "list", summary: "list installed packages", run: runList},
		{name: "files", args: "NAME...", summary: "list the files an installed package owns", run: runFiles},
		{name: "owns", args: "PATH...", summary: "tell which package owns a file", run: runOwns},
		{name: "verify", args: "[NAME...]", summary: "compare installed files with the receipts", run: runVerify},
		{name: "sync", summary: "fetch the repository index now", run: runSync},
		{name: "status", summary: "show the daemon: index, seeding, peers, traffic", run: runStatus},
		{name: "keygen", args: "[-o DIR]", summary: "write a repository key pair: repo.key (secret) and repo.pub (for clients)",
			flags: func(fs *pflag.FlagSet, o *options) {
				fs.StringVarP(&o.output, "output", "o", "/etc/tpm", "folder for repo.key and repo.pub")
				fs.BoolVar(&o.force, "force", false, "replace an existing key pair")
			}, run: runKeygen},
		{name: "pack", args: "DIR", summary: "build NAME-VERSION-ARCH.tpkg from a package folder (info/ and data/)",
			flags: func(fs *pflag.FlagSet, o *options) {
				fs.StringVarP(&o.output, "output", "o", ".", "folder to write the package to")
			}, run: runPack},
	}
}

// Main runs tpm with args (without the program name) and returns the exit
// code: 0 on success, 1 when the operation failed, 2 for a usage error.
func Main(ctx context.Context, args []string, env Env) int {
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	c := &command{env: env, in: bufio.NewReader(env.Stdin)}
	vs := verbs()
	name, rest := findVerb(args, vs)
	if name == "help" {
		// "tpm help VERB" is "tpm VERB --help".
		name, rest = findVerb(rest, vs)
		if name == "" {
			fmt.Fprint(env.Stdout, mainUsage(vs))
			return 0
		}
		rest = append(rest, "--help")
	}
	if name == "" {
		if wantsHelp(args) {
			fmt.Fprint(env.Stdout, mainUsage(vs))
			return 0
		}
		fmt.Fprintf(env.Stderr, "tpm: no command given; run tpm --help to see them\n")
		return 2
	}
	var v *verb
	for i := range vs {
		if vs[i].name == name {
			v = &vs[i]
		}
	}
	if v == nil {
		fmt.Fprintf(env.Stderr, "tpm: unknown command %q; run tpm --help to see them\n", name)
		return 2
	}
	fs := pflag.NewFlagSet("tpm "+v.name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	globalFlags(fs, &c.opts)
	if v.flags != nil {
		v.flags(fs, &c.opts)
	}
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Fprint(env.Stdout, verbUsage(v, fs))
			return 0
		}
		fmt.Fprintf(env.Stderr, "tpm %s: %v; run tpm %s --help\n", v.name, err, v.name)
		return 2
	}
	c.prefixSet = fs.Changed("prefix")
	err := v.run(ctx, c, fs.Args())
	if err == nil {
		return 0
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(env.Stderr, "tpm %s: %v; run tpm %s --help\n", v.name, err, v.name)
		return 2
	}
	msg := oneLine(err.Error())
	if c.opts.json {
		c.emit(map[string]any{"event": "error", "error": msg})
	}
	fmt.Fprintf(env.Stderr, "tpm: %s\n", msg)
	return 1
}

// findVerb returns the first argument that is neither a flag nor a flag's
// value, so flags may come before or after the verb.
func findVerb(args []string, vs []verb) (string, []string) {
	all := pflag.NewFlagSet("all", pflag.ContinueOnError)
	var o options
	globalFlags(all, &o)
	for _, v := range vs {
		if v.flags == nil {
			continue
		}
		one := pflag.NewFlagSet(v.name, pflag.ContinueOnError)
		v.flags(one, &o)
		one.VisitAll(func(f *pflag.Flag) {
			if all.Lookup(f.Name) == nil {
				all.AddFlag(f)
			}
		})
	}
	takesValue := func(f *pflag.Flag) bool { return f != nil && f.NoOptDefVal == "" }
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return "", nil
		case strings.HasPrefix(a, "--"):
			if !strings.Contains(a, "=") && takesValue(all.Lookup(a[2:])) {
				i++
			}
		case strings.HasPrefix(a, "-") && len(a) > 1:
			// Only the last of a group of shorthands (-yo DIR) can take a value.
			if len(a) == 2 && takesValue(all.ShorthandLookup(a[1:])) {
				i++
			}
		default:
			rest := append(append([]string{}, args[:i]...), args[i+1:]...)
			return a, rest
		}
	}
	return "", nil
}

func wantsHelp(args []string) bool {
	for _, a := range args {
		if a == "-h" || a == "--help" {
			return true
		}
	}
	return false
}

func mainUsage(vs []verb) string {
	var b strings.Builder
	b.WriteString("tpm, the Torrent Package Manager\n\nUsage: tpm [flags] COMMAND [flags] [ARGS]\n\nCommands:\n")
	for _, v := range vs {
		fmt.Fprintf(&b, "  %-8s %s\n", v.name, v.summary)
	}
	fs := pflag.NewFlagSet("tpm", pflag.ContinueOnError)
	globalFlags(fs, &options{})
	b.WriteString("\nFlags for every command:\n")
	b.WriteString(fs.FlagUsages())
	b.WriteString("\nRun tpm COMMAND --help for a command's own flags.\n")
	return b.String()
}

func verbUsage(v *verb, fs *pflag.FlagSet) string {
	return fmt.Sprintf("Usage: tpm %s [flags] %s\n\n%s.\n\nFlags:\n%s", v.name, v.args, capitalize(v.summary), fs.FlagUsages())
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// emit prints one JSON object as a line.
func (c *command) emit(v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintf(c.env.Stdout, "%s\n", b)
}

func (c *command) printf(format string, args ...any) {
	if !c.opts.json {
		fmt.Fprintf(c.env.Stdout, format, args...)
	}
}

// proceed asks whether to go on with a plan that does more than was asked,
// and says how to avoid the question when the answer is no.
func (c *command) proceed() error {
	ok, err := c.confirm("Proceed?")
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("nothing done: not confirmed (answer y, or run with -y)")
	}
	return nil
}

// confirm asks a yes/no question unless --yes; the default is yes, and the
// end of input means no, so a script without -y never proceeds by accident.
func (c *command) confirm(question string) (bool, error) {
	if c.opts.yes {
		return true, nil
	}
	fmt.Fprintf(c.env.Stderr, "%s [Y/n] ", question)
	line, err := c.in.ReadString('\n')
	if !isTerminal(c.env.Stdin) {
		// Nobody typed a newline: end the prompt's line so the log reads well.
		fmt.Fprintln(c.env.Stderr, strings.TrimSpace(line))
	}
	if err != nil && line == "" {
		return false, nil
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "", "y", "yes":
		return true, nil
	}
	return false, nil
}

func isTerminal(r any) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
