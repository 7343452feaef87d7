#!/usr/bin/env bash
# Proactive roaming (seed 002 Fig. 2(b)): response time of a request/response service
# through a pool of three members that roams every few seconds, against the same pool
# with one member active all along, same run, behind a strict NAT.
#
#   tools/bench/run roaming [--seconds S] [--epoch S] [--reps N]
#
# Needs root (network namespaces, TUN devices and the NAT of tools/netns/nat); exits 77
# otherwise. Env ROAM_SERVER ROAM_CLIENT ROAMCTL (set by tools/bench/run). See
# tools/bench/README.md; the driver is roaming_bench.py (--help lists its options).
# The lab (rs-rbNNNN-*) is deleted on every exit path: by the driver, by this script's
# EXIT trap, and by a reaper process should this shell be killed outright.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

for arg in "$@"; do
    if [[ $arg == -h || $arg == --help ]]; then exec python3 "$here/roaming_bench.py" --help; fi
done
if [[ $EUID -ne 0 ]]; then
    echo "roaming.sh: needs root (network namespaces, TUN devices, the NAT); skipped" >&2
    exit 77
fi

name="rb$(printf '%04d' $(($$ % 10000)))"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    if [[ ${args[i]} == --lab && $((i + 1)) -lt ${#args[@]} ]]; then name=${args[i + 1]}; fi
done
[[ $name =~ ^[a-z0-9]{1,6}$ ]] || { echo "roaming.sh: bad --lab '$name'" >&2; exit 2; }

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
python3 "$here/roaming_bench.py" --lab "$name" "$@" || rc=$?
exit "$rc"
