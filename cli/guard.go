package cli

import (
	"fmt"
	"path/filepath"
)

// GuardEnv names the environment variable every test harness sets (to 1)
// so that tpm refuses the system's own directories: a test that forgets
// --state-dir, --prefix or --run-dir then fails in one line instead of
// installing into / (CI runs as root). tpmd's roles read it too.
const GuardEnv = "TPM_TEST_GUARD"

// The system's own directories: the flags' defaults.
const (
	systemStateDir = "/var/lib/tpm"
	systemPrefix   = "/"
	systemRunDir   = "/run/tpm"
	systemKeyDir   = "/etc/tpm"
)

// guard refuses, when GuardEnv is set, a path flag whose value is the
// system's own directory, given or by default. Each verb checks before it
// touches the directory, so nothing is read or made there.
func (c *command) guard(flag, value, system string) error {
	if c.env.Getenv(GuardEnv) == "" {
		return nil
	}
	abs, err := filepath.Abs(value)
	if err != nil || abs != system {
		return nil
	}
	return fmt.Errorf("%s is set and --%s is %s, the system's own: give --%s a directory of the test's own", GuardEnv, flag, system, flag)
}

// guardOffline guards what an --offline verb opens: the state directory
// and the prefix.
func (c *command) guardOffline() error {
	if err := c.guard("state-dir", c.g.stateDir, systemStateDir); err != nil {
		return err
	}
	return c.guard("prefix", c.g.prefix, systemPrefix)
}

// guardDaemon guards the way to tpmd: its run directory, and a prefix
// named for it (without one, the daemon's own applies).
func (c *command) guardDaemon() error {
	if err := c.guard("run-dir", c.g.runDir, systemRunDir); err != nil {
		return err
	}
	if !c.prefixSet {
		return nil
	}
	return c.guard("prefix", c.g.prefix, systemPrefix)
}
