package host

import (
	"strings"
	"testing"
)

// Every tracker down (the built-in one off, the one the index names not
// running): hosts find each other through the DHT, the server's node their
// bootstrap. The server seeds nothing, and the second host has no web
// seed, so it can only install from the first.
func TestSecondClientFromFirstThroughTheDHT(t *testing.T) {
	r := newRepository(t)
	torrentAddr := freeAddr(t)
	dead := "http://" + freeAddr(t) + "/announce"
	srv := startServer(t, r, "--tracker=false", "--announce", dead, "--seed=false", "--dht", "--torrent-listen", torrentAddr)
	h1, h2 := newHost(t), newHost(t)
	dht := []string{"--dht", "--dht-bootstrap", torrentAddr}
	startClient(t, h1, srv.url, r.pubPath, dht...) // the web seed: nobody seeds yet
	waitIndex(t, h1.run, 3)
	ok(t, h1.run, "install", []string{"hello"}, nil, nil)
	waitFor(t, "first client seeding", func() bool { return getStatus(t, h1.run).Seeding == 3 })
	before := getStatus(t, h1.run).BytesUp

	startClient(t, h2, srv.url, r.pubPath, append(dht, "--web-seed=false", "--stall-timeout", "60s")...)
	waitIndex(t, h2.run, 3)
	secondInstallsFromFirst(t, h1, h2, before, " through the DHT")
}

// The same with no --dht-bootstrap anywhere: the signed index names the
// server's DHT node (its --public-url host and --torrent-listen port), so
// each host joins through it once its index is in, and the second host
// still finds the first through the DHT alone.
func TestClientsJoinTheDHTThroughTheIndex(t *testing.T) {
	r := newRepository(t)
	torrentAddr := freeAddr(t)
	dead := "http://" + freeAddr(t) + "/announce"
	srv := startServer(t, r, "--tracker=false", "--announce", dead, "--seed=false", "--dht", "--torrent-listen", torrentAddr)
	h1, h2 := newHost(t), newHost(t)
	c1 := startClient(t, h1, srv.url, r.pubPath, "--dht") // the web seed: nobody seeds yet
	waitIndex(t, h1.run, 3)
	waitJoined(t, c1)
	ok(t, h1.run, "install", []string{"hello"}, nil, nil)
	waitFor(t, "first client seeding", func() bool { return getStatus(t, h1.run).Seeding == 3 })
	before := getStatus(t, h1.run).BytesUp

	c2 := startClient(t, h2, srv.url, r.pubPath, "--dht", "--web-seed=false", "--stall-timeout", "30s")
	waitIndex(t, h2.run, 3)
	waitJoined(t, c2)
	secondInstallsFromFirst(t, h1, h2, before, " through the DHT joined through the index")
}

// waitJoined waits until the daemon says it joined the DHT through the
// nodes its index names.
func waitJoined(t *testing.T, d *daemon) {
	t.Helper()
	waitFor(t, "the client joining the DHT through the index's node", func() bool {
		return strings.Contains(d.Logs.String(), "joined the DHT through the nodes the index names")
	})
}
