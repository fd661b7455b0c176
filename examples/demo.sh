#!/usr/bin/env bash
# The demo: pack the example packages and install hello, with the packages
# it depends on, into a scratch prefix; run it; remove it. Everything happens
# in a temporary directory that is deleted at the end.
set -euo pipefail
bin=$(cd "${1:-bin}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
scratch=$(mktemp -d "${TMPDIR:-/tmp}/tpm-demo.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

tpm() { echo "+ tpm $*" >&2; "$bin/tpm" "$@"; }
cd "$scratch"
for pkg in greet-data libgreet hello; do
	tpm pack "$here/$pkg" -o "$scratch"
done
tpm --offline --state-dir "$scratch/state" --prefix "$scratch/root" -y \
	install hello-*.tpkg libgreet-*.tpkg greet-data-*.tpkg
echo "+ $scratch/root/usr/bin/hello demo" >&2
"$scratch/root/usr/bin/hello" demo
tpm --offline --state-dir "$scratch/state" --prefix "$scratch/root" list
tpm --offline --state-dir "$scratch/state" --prefix "$scratch/root" verify
tpm --offline --state-dir "$scratch/state" --prefix "$scratch/root" -y remove --cascade greet-data
echo "demo finished; $scratch is removed"
