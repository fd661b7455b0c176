package actors

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tpm/fifo"
	"tpm/messages"
	"tpm/repo/repotest"
	"tpm/signing"
)

// startPair runs a server (not seeding, so downloads come from its web
// seed, which starts about 5 s late) and a client in this process.
func startPair(t *testing.T) (*Client, string) {
	t.Helper()
	keyPath, pubPath, err := signing.Keygen(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := signing.LoadKey(keyPath)
	pub, _ := signing.LoadPublicKey(pubPath)
	pkgs := t.TempDir()
	repotest.Make(t, pkgs, repotest.Package{Name: "small", Version: "1", PayloadBytes: 1 << 10, Seed: 1})
	repotest.Make(t, pkgs, repotest.Package{Name: "big", Version: "1", PayloadBytes: 4 << 20, Seed: 2})
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := StartServer(ServerConfig{PackageDir: pkgs, StateDir: t.TempDir(), HTTPAddr: "127.0.0.1:0",
		TorrentAddr: "127.0.0.1:0", PublicURL: "http://127.0.0.1:1", Signer: key, Logger: log, NoSeed: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Stop(ctx)
	})
	run := t.TempDir()
	c, err := StartClient(ClientConfig{Server: "http://" + srv.HTTPAddr(), TrustedKey: pub, StateDir: t.TempDir(),
		CacheDir: t.TempDir(), RunDir: run, AdminGID: -1, Prefix: t.TempDir(), TorrentAddr: "127.0.0.1:0", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for c.Index().Generation == 0 || len(c.Index().Entries) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no index")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return c, run
}

// request sends one request and returns a function that reads its next
// reply line.
func request(t *testing.T, run, verb string, args ...string) func() messages.Reply {
	t.Helper()
	rep, err := fifo.NewReply(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rep.Close() })
	name := "query"
	if contains(messages.AdminVerbs, verb) {
		name = "admin"
	}
	line, _ := json.Marshal(messages.Request{V: messages.ProtocolVersion, ID: "t", Verb: verb, Args: args, Reply: rep.Path()})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	if err := fifo.Send(ctx, filepath.Join(run, name+".fifo"), filepath.Join(run, name+".lock"), line); err != nil {
		t.Fatal(err)
	}
	return func() messages.Reply {
		t.Helper()
		b, err := rep.ReadLine(ctx)
		if err != nil {
			t.Fatalf("%s: %v", verb, err)
		}
		var r messages.Reply
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
}

func final(t *testing.T, next func() messages.Reply) messages.Reply {
	t.Helper()
	for {
		if r := next(); r.Final() {
			return r
		}
	}
}

// A failing installer is restarted by its supervisor; the CLI that waited
// gets an error, the download it asked for stops, and the daemon keeps
// answering.
func TestClientInstallerCrashReported(t *testing.T) {
	c, run := startPair(t)
	next := request(t, run, "install", "big")
	for r := next(); r.Type != messages.ReplyProgress; r = next() {
		if r.Final() {
			t.Fatalf("install ended early: %+v", r)
		}
	}
	c.InjectCrash(Installer)
	r := final(t, next)
	if r.Type != messages.ReplyError || !strings.Contains(r.Error, "installer failed and was restarted") {
		t.Fatalf("after the crash: %+v", r)
	}
	if r := final(t, request(t, run, "status")); r.Type != messages.ReplyResult {
		t.Fatalf("status after the crash: %+v", r)
	}
	// The cancelled download leaves nothing behind, and the restarted
	// installer works.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(c.cfg.CacheDir, "big-1-any.tpkg")); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the cancelled download's file is still in the cache")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r := final(t, request(t, run, "install", "small")); r.Type != messages.ReplyResult {
		t.Fatalf("install after the restart: %+v", r)
	}
}

func TestClientGatewayAndSyncerRestart(t *testing.T) {
	c, run := startPair(t)
	c.InjectCrash(Gateway)
	c.InjectCrash(Syncer)
	time.Sleep(100 * time.Millisecond)
	if r := final(t, request(t, run, "sync")); r.Type != messages.ReplyResult {
		t.Fatalf("sync after restarts: %+v", r)
	}
	r := final(t, request(t, run, "info", "small"))
	if r.Type != messages.ReplyResult || !strings.Contains(string(r.Data), `"name":"small"`) {
		t.Fatalf("info after restarts: %+v", r)
	}
}
