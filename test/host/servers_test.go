package host

import (
	"testing"
)

// Several servers (tpmd client --server, repeated): the index from the one
// with the newest valid generation, packages from the web seeds of all, a
// server that is down named as such in tpm status and skipped.
func TestSeveralServersOneDown(t *testing.T) {
	r := newRepository(t)
	srv := startServer(t, r, "--seed=false") // the web seeds are the only source
	down := "http://" + freeAddr(t)
	h := newHost(t)
	startClient(t, h, down, r.pubPath, "--server", srv.url)
	waitIndex(t, h.run, 3)
	st := getStatus(t, h.run)
	if len(st.Servers) != 2 || st.Servers[0].URL != down || st.Servers[0].State != "down" || st.Servers[0].Error == "" ||
		st.Servers[1].URL != srv.url || st.Servers[1].State != "ok" || st.Servers[1].Generation != st.IndexGeneration {
		t.Fatalf("servers: %+v", st.Servers)
	}
	var results []result
	ok(t, h.run, "install", []string{"hello"}, nil, &results)
	if len(results) != 3 {
		t.Fatalf("install: %+v", results)
	}

	// The only server with the index goes: the host keeps its index and
	// says both are down.
	srv.Stop(t)
	if e := fails(t, h.run, "sync", nil, nil); e == "" {
		t.Fatal("sync with every server down succeeded")
	}
	waitFor(t, "status naming both servers down", func() bool {
		st = getStatus(t, h.run)
		return st.Servers[0].State == "down" && st.Servers[1].State == "down"
	})
	if st.IndexPackages != 3 || st.IndexGeneration == 0 {
		t.Fatalf("index lost with every server down: %+v", st)
	}
}
