#!/usr/bin/env bash
# The proxy topology (issue 12): changeover of a proxy move (both legs) and of a client
# move (against a kernel reconnect from the new address), throughput and
# connect + first byte through the proxy against kernel TCP on the same path, same run, and
# how long an application waits for a reset when its proxy dies.
#
#   tools/bench/run proxy [--mib N] [--reps N] [--client-moves N] [--dead-bound S] [--keep-logs]
#
# Needs root (network namespaces, TUN devices and the NAT of tools/netns/nat); exits 77
# otherwise. Env ROAM_SERVER ROAM_CLIENT ROAMCTL (set by tools/bench/run). See
# tools/bench/README.md; the driver is proxy_bench.py (--help lists its options).
# The lab (rs-pbNNNN-*) is deleted on every exit path: by the driver, by this script's
# EXIT trap, and by a reaper process should this shell be killed outright.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

for arg in "$@"; do
    if [[ $arg == -h || $arg == --help ]]; then exec python3 "$here/proxy_bench.py" --help; fi
done
if [[ $EUID -ne 0 ]]; then
    echo "proxy.sh: needs root (network namespaces, TUN devices, the NAT); skipped" >&2
    exit 77
fi

name="pb$(printf '%04d' $(($$ % 10000)))"

# shellcheck source=tools/netns/lab.sh
source "$root/tools/netns/lab.sh"
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    "$root/tools/netns/topology" down "$name" >/dev/null 2>&1 || true
    stop_lab_reaper
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
start_lab_reaper "$name"

# Not exec: the trap above must run after the driver, whatever becomes of it.
rc=0
python3 "$here/proxy_bench.py" --lab "$name" "$@" || rc=$?
exit "$rc"
