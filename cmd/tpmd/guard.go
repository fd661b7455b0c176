package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"
)

// guardEnv is tpm's cli.GuardEnv: every test harness sets it, so a role
// started by a test without its own directories refuses in one line
// instead of writing to the system's (CI runs as root).
const guardEnv = "TPM_TEST_GUARD"

// guarded says whether role may run: with guardEnv set, none of the path
// flags named may be left at (or given as) its default, the system's
// directory; the refusal is written on stderr.
func guarded(fs *pflag.FlagSet, role string, flags ...string) bool {
	if os.Getenv(guardEnv) == "" {
		return true
	}
	for _, name := range flags {
		f := fs.Lookup(name)
		value, err := filepath.Abs(f.Value.String())
		if err == nil && value == filepath.Clean(f.DefValue) {
			fmt.Fprintf(os.Stderr, "%s: %s is set and --%s is %s, the system's own: give --%s a directory of the test's own\n", role, guardEnv, name, f.DefValue, name)
			return false
		}
	}
	return true
}
