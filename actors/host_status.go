package actors

import (
	"os"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"tpm/index"
	"tpm/messages"
	"tpm/messages/wire"
)

// status answers at once from what the installer holds, with the swarm's
// figures when the swarm answers within a second.
func (a *installerActor) status(ctx actor.Context, to *actor.PID) {
	now := time.Now()
	st := wire.Status{
		PID: os.Getpid(), UptimeSeconds: now.Sub(a.started).Seconds(), Server: a.cfg.Servers[0], Servers: serverStatus(a.cfg.Servers, a.idx.Servers),
		IndexGeneration: a.idx.Generation, IndexPackages: a.idx.Len(), Installing: a.installing, Queued: len(a.jobs),
	}
	if !a.idx.Updated.IsZero() {
		st.IndexAgeSeconds = now.Sub(a.idx.Updated).Seconds()
	}
	if !a.idx.ValidUntil.IsZero() {
		st.IndexValidUntil = a.idx.ValidUntil.UTC()
		st.IndexExpired = a.idx.Expired(now)
	}
	if !a.idx.Fetched.IsZero() {
		st.IndexFetchedSecs = now.Sub(a.idx.Fetched).Seconds()
	}
	f := ctx.RequestFuture(a.swarm, &messages.SwarmStatusRequest{}, time.Second)
	ctx.ReenterAfter(f, func(res any, err error) {
		if sw, ok := res.(*messages.SwarmStatus); ok && err == nil {
			st.TorrentPort, st.Seeding, st.Peers, st.BytesUp, st.BytesDown = sw.Port, sw.Seeding, sw.Peers, sw.BytesUp, sw.BytesDown
			st.Downloading, st.DownloadsWaiting = sw.Downloading, sw.DownloadsWaiting
		}
		reply, err := wire.Result(st)
		if err != nil {
			reply = wire.Failure(err.Error())
		}
		ctx.Send(to, reply)
	})
}

// serverStatus is each server's state as the last fetch found it.
func serverStatus(servers []string, states []index.ServerState) []wire.ServerStatus {
	out := make([]wire.ServerStatus, len(servers))
	for i, url := range servers {
		out[i] = wire.ServerStatus{URL: url, State: "unknown"}
	}
	for i, st := range states {
		if i >= len(out) {
			break
		}
		out[i].Generation = st.Generation
		switch {
		case st.Behind:
			out[i].State = "behind"
		case st.Err == "":
			out[i].State = "ok"
		default:
			out[i].State, out[i].Error = "down", st.Err
		}
	}
	return out
}
