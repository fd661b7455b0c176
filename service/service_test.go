package service

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestApplyConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.conf")
	os.WriteFile(cfg, []byte("# comment\nserver = \"http://x:1\"\nprefix = /opt\n"), 0o644)
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs.String("config", "", "")
	server := fs.String("server", "", "")
	prefix := fs.String("prefix", "/", "")
	if err := fs.Parse([]string{"--prefix", "/cli"}); err != nil {
		t.Fatal(err)
	}
	if err := ApplyConfig(fs, cfg); err != nil {
		t.Fatal(err)
	}
	if *server != "http://x:1" || *prefix != "/cli" {
		t.Fatalf("server %q prefix %q", *server, *prefix)
	}
	os.WriteFile(cfg, []byte("nope = 1\n"), 0o644)
	if err := ApplyConfig(fs, cfg); err == nil || !strings.Contains(err.Error(), "unknown setting") {
		t.Fatalf("unknown setting: %v", err)
	}
}

// A flag of several values takes every line of the file, unless the
// command line gave it.
func TestApplyConfigRepeated(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "c.conf")
	os.WriteFile(cfg, []byte("announce = http://a/announce\nannounce = udp://b:1\nserver = http://s1\n"), 0o644)
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	announce := fs.StringArray("announce", nil, "")
	server := fs.StringArray("server", nil, "")
	if err := fs.Parse([]string{"--server", "http://cli"}); err != nil {
		t.Fatal(err)
	}
	if err := ApplyConfig(fs, cfg); err != nil {
		t.Fatal(err)
	}
	if strings.Join(*announce, " ") != "http://a/announce udp://b:1" || strings.Join(*server, " ") != "http://cli" {
		t.Fatalf("announce %q server %q", *announce, *server)
	}
}

func TestLockPidFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "tpmd.pid")
	release, err := LockPidFile(path, "tpmd client")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LockPidFile(path, "tpmd client"); err == nil || !strings.Contains(err.Error(), "another tpmd client") {
		t.Fatalf("second lock: %v", err)
	}
	release()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("pid file left: %v", err)
	}
}
