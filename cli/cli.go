// Package cli is the tpm command: flags, verbs, prompts and output. The
// binary in cmd/tpm only wires it to the process.
//
// Each verb is a cmd_VERB.go file: its options and flags, and what it does
// through tpmd (package local) and with --offline (the engine, package
// query), side by side. Both paths report through the same view
// (render.go), so a verb prints the same in both modes, as text or, with
// --json, as the wire protocol's reply lines.
package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"tpm/engine"
	"tpm/local"
	"tpm/messages/wire"
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

// globalOptions are the flags every verb has.
type globalOptions struct {
	offline  bool
	stateDir string
	prefix   string
	runDir   string
	yes      bool
	json     bool
}

func (o *globalOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.offline, "offline", false, "use the install engine directly instead of the tpmd daemon (local .tpkg files)")
	fs.StringVar(&o.stateDir, "state-dir", systemStateDir, "state directory (with --offline)")
	fs.StringVar(&o.prefix, "prefix", systemPrefix, "install prefix")
	fs.StringVar(&o.runDir, "run-dir", systemRunDir, "where the daemon's FIFOs are")
	fs.BoolVarP(&o.yes, "yes", "y", false, "answer yes to every question")
	fs.BoolVar(&o.json, "json", false, "print one JSON object per line")
}

// verbOptions are a verb's own flags and what it does with them.
type verbOptions interface {
	AddFlags(fs *pflag.FlagSet)
	run(ctx context.Context, c *command, args []string) error
}

type verb struct {
	name    string
	args    string
	summary string
	options func() verbOptions
}

func verbs() []verb {
	return []verb{
		{"install", "NAME... | --offline FILE.tpkg...", "install packages with what they need (with --offline: from local files)", func() verbOptions { return &installOptions{} }},
		{"upgrade", "[NAME...] | --offline FILE.tpkg...", "upgrade installed packages (all when none is named; with --offline: to the given files)", func() verbOptions { return &upgradeOptions{} }},
		{"remove", "NAME...", "remove installed packages", func() verbOptions { return &removeOptions{} }},
		{"autoremove", "", "remove the packages installed as dependencies that nothing needs any more", func() verbOptions { return &autoremoveOptions{} }},
		{"mark", "auto|manual NAME...", "mark installed packages as installed as dependencies (auto) or explicitly (manual)", func() verbOptions { return &markOptions{verb: "mark"} }},
		{"hold", "NAME...", "keep installed packages at their versions: no upgrade, replacement or removal", func() verbOptions { return &markOptions{verb: "hold"} }},
		{"unhold", "NAME...", "let held packages change again", func() verbOptions { return &markOptions{verb: "unhold"} }},
		{"history", "[ID]", "list the transactions, newest first, or show one whole", func() verbOptions { return &historyOptions{} }},
		{"undo", "ID | --offline ID [FILE.tpkg...]", "revert one transaction: remove what it installed, put back what it removed or changed", func() verbOptions { return &undoOptions{verb: "undo"} }},
		{"rollback", "ID | --offline ID [FILE.tpkg...]", "revert every transaction after ID", func() verbOptions { return &undoOptions{verb: "rollback"} }},
		{"clean", "", "drop from tpmd's cache the versions no prefix has installed (kept for undo)", func() verbOptions { return &cleanOptions{} }},
		{"search", "WORD", "find packages in the index by name or description", func() verbOptions { return &searchOptions{} }},
		{"info", "NAME", "show a package from the index and whether it is installed", func() verbOptions { return &infoOptions{} }},
		{"list", "", "list installed packages", func() verbOptions { return &listOptions{} }},
		{"files", "NAME...", "list the files an installed package owns", func() verbOptions { return &filesOptions{} }},
		{"owns", "PATH...", "tell which package owns a file", func() verbOptions { return &ownsOptions{} }},
		{"verify", "[NAME...]", "compare installed files with the receipts", func() verbOptions { return &verifyOptions{} }},
		{"sync", "", "fetch the repository index now", func() verbOptions { return &syncOptions{} }},
		{"status", "", "show the daemon: index, seeding, peers, traffic", func() verbOptions { return &statusOptions{} }},
		{"keygen", "[-o DIR]", "write a repository key pair: repo.key (secret) and repo.pub (for clients)", func() verbOptions { return &keygenOptions{} }},
		{"pack", "DIR", "build NAME-VERSION-ARCH.tpkg from a package folder (info/ and data/)", func() verbOptions { return &packOptions{} }},
	}
}

// command is one run of tpm: its global options, input and output.
type command struct {
	env  Env
	g    globalOptions
	in   *bufio.Reader
	view *view
	// prefixSet says --prefix was given; otherwise the daemon's own applies.
	prefixSet bool
}

// Main runs tpm with args (without the program name) and returns the exit
// code: 0 on success, 1 when the operation failed, 2 for a usage error.
func Main(ctx context.Context, args []string, env Env) int {
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	v, rest, code := chooseVerb(args, env)
	if v == nil {
		return code
	}
	c := &command{env: env, in: bufio.NewReader(env.Stdin)}
	opts := v.options()
	fs := pflag.NewFlagSet("tpm "+v.name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.g.AddFlags(fs)
	opts.AddFlags(fs)
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Fprint(env.Stdout, verbUsage(v, fs))
			return 0
		}
		fmt.Fprintf(env.Stderr, "tpm %s: %v; run tpm %s --help\n", v.name, err, v.name)
		return 2
	}
	c.prefixSet = fs.Changed("prefix")
	c.view = newView(env.Stdout, env.Stderr, c.g.json)
	err := opts.run(ctx, c, fs.Args())
	if err == nil {
		return 0
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(env.Stderr, "tpm %s: %v; run tpm %s --help\n", v.name, err, v.name)
		return 2
	}
	msg := wire.OneLine(err.Error())
	c.view.failure(msg)
	fmt.Fprintf(env.Stderr, "tpm: %s\n", msg)
	return 1
}

// chooseVerb finds the verb args name and the arguments left for it. With
// none (help asked for, or a mistake said on stderr) it returns the exit
// code instead.
func chooseVerb(args []string, env Env) (*verb, []string, int) {
	vs := verbs()
	name, rest := findVerb(args, vs)
	if name == "help" {
		// "tpm help VERB" is "tpm VERB --help".
		name, rest = findVerb(rest, vs)
		if name == "" {
			fmt.Fprint(env.Stdout, mainUsage(vs))
			return nil, nil, 0
		}
		rest = append(rest, "--help")
	}
	if name == "" {
		if wantsHelp(args) {
			fmt.Fprint(env.Stdout, mainUsage(vs))
			return nil, nil, 0
		}
		fmt.Fprintf(env.Stderr, "tpm: no command given; run tpm --help to see them\n")
		return nil, nil, 2
	}
	for i := range vs {
		if vs[i].name == name {
			return &vs[i], rest, 0
		}
	}
	fmt.Fprintf(env.Stderr, "tpm: unknown command %q; run tpm --help to see them\n", name)
	return nil, nil, 2
}

// findVerb returns the first argument that is neither a flag nor a flag's
// value, so flags may come before or after the verb.
func findVerb(args []string, vs []verb) (string, []string) {
	all := pflag.NewFlagSet("all", pflag.ContinueOnError)
	var g globalOptions
	g.AddFlags(all)
	for _, v := range vs {
		one := pflag.NewFlagSet(v.name, pflag.ContinueOnError)
		v.options().AddFlags(one)
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
		fmt.Fprintf(&b, "  %-10s %s\n", v.name, v.summary)
	}
	fs := pflag.NewFlagSet("tpm", pflag.ContinueOnError)
	new(globalOptions).AddFlags(fs)
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

// prefix is --prefix in the absolute, clean form receipts are keyed by.
func (c *command) prefix() (string, error) { return engine.CleanPrefix(c.g.prefix) }

// client is the way to tpmd for this run. The prefix goes with the
// requests only when --prefix was given; otherwise the daemon's applies.
func (c *command) client() (*local.Client, error) {
	if err := c.guardDaemon(); err != nil {
		return nil, err
	}
	cl := &local.Client{RunDir: c.g.runDir}
	if c.prefixSet {
		p, err := c.prefix()
		if err != nil {
			return nil, err
		}
		cl.Prefix = p
	}
	return cl, nil
}

// daemonQuery asks tpmd a read-only question.
func daemonQuery[T any](c *command, ask func(cl *local.Client) (T, error)) (T, error) {
	cl, err := c.client()
	if err != nil {
		var zero T
		return zero, err
	}
	return ask(cl)
}

// needDaemon refuses --offline for verbs only the daemon can answer.
func (c *command) needDaemon(verb string) error {
	if c.g.offline {
		return fmt.Errorf("%s needs the repository index, which only tpmd has: run it without --offline", verb)
	}
	return nil
}
