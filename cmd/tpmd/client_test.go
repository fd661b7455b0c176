package main

import (
	"strings"
	"testing"
)

// --admin-group takes a group of /etc/group by name, or any group by
// number (tpmd is built without cgo: a directory service's groups have no
// name it can look up); a name it cannot find says how to give the number.
func TestAdminGID(t *testing.T) {
	if gid, err := adminGID(""); err != nil || gid != -1 {
		t.Fatalf(`"": %d, %v; want -1 (no group)`, gid, err)
	}
	if gid, err := adminGID("root"); err != nil || gid != 0 {
		t.Fatalf("root: %d, %v; want 0", gid, err)
	}
	if gid, err := adminGID("4242"); err != nil || gid != 4242 {
		t.Fatalf("4242: %d, %v", gid, err)
	}
	_, err := adminGID("no-such-group-tpm")
	if err == nil || !strings.Contains(err.Error(), "by its number") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("an unknown group: %v", err)
	}
}
