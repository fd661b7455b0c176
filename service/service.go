// Package service holds what every role of tpmd needs to run as a system
// service: the flags and the config file that supplies them, the pid file
// whose lock keeps a second daemon of the same kind away, and the run
// itself (signals, the stop within the service manager's patience).
package service

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/pflag"
)

// ParseFlags parses a daemon's command line and then, when configFile names
// one, its config file (the command line wins). It returns the exit code to
// stop with and false when the daemon should not start: --help (0) or a
// usage error (2, already reported on stderr as one line).
func ParseFlags(fs *pflag.FlagSet, name string, args []string, configFile *string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0, false
		}
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "%s: unexpected argument %q\n", name, fs.Arg(0))
		return 2, false
	}
	if *configFile != "" {
		if err := ApplyConfig(fs, *configFile); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			return 2, false
		}
	}
	return 0, true
}

// ApplyConfig sets every flag the file at path names that the command line
// did not: one "name = value" per line, names as the long flags without
// "--", "#" starts a comment, values may be Go-quoted. A flag that takes
// several values (--announce) may have several lines.
func ApplyConfig(fs *pflag.FlagSet, path string) error {
	onCommandLine := map[string]bool{}
	fs.Visit(func(f *pflag.Flag) { onCommandLine[f.Name] = true })
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !ok || name == "" {
			return fmt.Errorf("config %s:%d: want name = value", path, n)
		}
		fl := fs.Lookup(name)
		if fl == nil || name == "config" {
			return fmt.Errorf("config %s:%d: unknown setting %q", path, n, name)
		}
		if onCommandLine[name] {
			continue
		}
		if unq, err := strconv.Unquote(value); err == nil {
			value = unq
		}
		if err := fs.Set(name, value); err != nil {
			return fmt.Errorf("config %s:%d: %s: %v", path, n, name, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// LockPidFile writes our pid into path under an exclusive flock held until
// release; a second daemon on the same file is refused with the first's
// pid. what names the daemon in that message ("tpmd server").
func LockPidFile(path, what string) (release func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("pid file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("pid file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b := make([]byte, 32)
		n, _ := f.ReadAt(b, 0)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another %s (pid %s) holds %s; stop it first", what, strings.TrimSpace(string(b[:n])), path)
		}
		return nil, fmt.Errorf("pid file %s: %w", path, err)
	}
	if err = f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("pid file %s: %w", path, err)
	}
	return func() {
		os.Remove(path) // while still locked, so no second daemon can take it in between
		f.Close()
	}, nil
}
