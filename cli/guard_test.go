package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Under GuardEnv (runTPM sets it) tpm refuses the system's own directories
// in one line, before it opens anything. Each case is made so that, were
// the guard gone, it would still touch nothing of the system: a bad
// --script-timeout stops an --offline verb before the state directory is
// opened, and the daemon verbs only look for a FIFO.
func TestGuardRefusesSystemDirectories(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	for _, tc := range []struct {
		args      []string
		flag, dir string
	}{
		{[]string{"--offline", "--script-timeout", "never", "remove", "hello"}, "state-dir", "/var/lib/tpm"},
		{[]string{"--offline", "--state-dir", state, "--script-timeout", "never", "remove", "hello"}, "prefix", "/"},
		{[]string{"--offline", "--state-dir", state, "--prefix", "/usr/..", "--script-timeout", "never", "remove", "hello"}, "prefix", "/"},
		{[]string{"--offline", "--state-dir", "/var/lib/./tpm", "--prefix", dir, "--script-timeout", "never", "remove", "hello"}, "state-dir", "/var/lib/tpm"},
		{[]string{"list"}, "run-dir", "/run/tpm"},
		{[]string{"--run-dir", filepath.Join(dir, "run"), "--prefix", "/", "list"}, "prefix", "/"},
	} {
		code, out, errOut := runTPM(t, tc.args...)
		want := fmt.Sprintf("tpm: TPM_TEST_GUARD is set and --%s is %s, the system's own: give --%s a directory of the test's own\n", tc.flag, tc.dir, tc.flag)
		if code != 1 || errOut != want || out != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q, want %q", tc.args, code, out, errOut, want)
		}
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("the state directory was made: %v", err)
	}
	// The test's own directories pass.
	if code, _, errOut := runTPM(t, "--offline", "--state-dir", state, "--prefix", filepath.Join(dir, "root"), "list"); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}
