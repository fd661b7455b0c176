#!/usr/bin/env bash
# The demo: the whole mission on loopback, in a scratch folder that is
# deleted at the end.
#
#  1. pack the example packages into a repository and make a key pair;
#  2. start tpmd server (index, signature, torrents, tracker, HTTP web seed),
#     with its BitTorrent seeding off, so that peers must carry the packages;
#  3. start two tpmd clients, each with its own state, cache, FIFOs and
#     install prefix;
#  4. on client 1, tpm install hello: resolved with its dependencies,
#     downloaded from the server (its web seed), installed, run;
#  5. on client 2, whose web seed is off, tpm install hello: the tracker
#     names client 1, the only source, which seeds what it installed;
#  6. run it, show where the bytes came from, stop everything.
set -euo pipefail
bin=$(cd "${1:-bin}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
scratch=$(mktemp -d "${TMPDIR:-/tmp}/tpm-demo.XXXXXX")
pids=()
cleanup() {
	local status=$?
	if [ "$status" != 0 ]; then
		for log in "$scratch"/*.log; do
			[ -f "$log" ] && { echo "--- last lines of $(basename "$log")" >&2; tail -n 20 "$log" >&2; }
		done
	fi
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$scratch"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }
run() { echo "+ $*" >&2; "$@"; }
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port() { # a loopback port nobody listens on
	local p
	while :; do
		p=$((20000 + RANDOM % 40000))
		listening "$p" || { echo "$p"; return; }
	done
}
waitfor() { # waitfor CMD...: retry for 20 seconds
	for _ in $(seq 200); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
	echo "demo: gave up waiting for: $*" >&2; return 1
}

cd "$scratch"
mkdir -p repo/packages
say "1. pack the example packages and make the repository's key pair"
for pkg in greet-data libgreet hello hello-src; do
	run "$bin/tpm" pack "$here/$pkg" -o repo/packages
done
run "$bin/tpm" keygen -o keys

say "2. start the repository server on loopback"
http=$(port)
url=http://127.0.0.1:$http
start_server() { # start_server [extra flags]
	"$bin/tpmd" server --packages repo/packages --state-dir repo/state --http "127.0.0.1:$http" \
		--public-url "$url" --torrent-listen 127.0.0.1:0 --key keys/repo.key "$@" >>server.log 2>&1 &
	server=$!
	pids+=($server)
	waitfor listening "$http"
}
start_server --seed=false
echo "serving $url" >&2

start_client() { # start_client N [extra flags]
	local n=$1
	shift
	"$bin/tpmd" client --server "$url" --trusted-key keys/repo.pub --state-dir "c$n/state" \
		--cache-dir "c$n/cache" --run-dir "c$n/run" --prefix "$scratch/c$n/root" \
		--torrent-listen 127.0.0.1:0 "$@" >"client$n.log" 2>&1 &
	pids+=($!)
	waitfor "$bin/tpm" --run-dir "c$n/run" status
}

say "3. start two clients"
start_client 1
start_client 2 --web-seed=false
run "$bin/tpm" --run-dir c1/run status

say "4. client 1: tpm install hello (dependencies resolved, downloaded from the server)"
run "$bin/tpm" --run-dir c1/run install -y hello
run "$scratch/c1/root/usr/bin/hello" demo
run "$bin/tpm" --run-dir c1/run list

say "5. client 2 (no web seed, the server does not seed) installs from client 1"
run "$bin/tpm" --run-dir c2/run install -y hello
run "$scratch/c2/root/usr/bin/hello" "from a peer"
run "$bin/tpm" --run-dir c1/run status

say "6. done; stopping the daemons and removing $scratch"
