#!/usr/bin/env bash
# The NAT handover: interruption a carrier sees when its server moves behind a strict NAT,
# against an application-level reconnect through the same NAT, same run.
#
#   tools/bench/run handover [--reps N] [--connections N] [--stream-mib N] [--timeout S]
#                            [--only PARTS] [--keep-logs]
#
# Needs root (network namespaces, TUN devices and the NAT of tools/netns/nat); exits 77
# otherwise. Env ROAM_SERVER ROAM_CLIENT ROAMCTL (set by tools/bench/run). See
# tools/bench/README.md; the driver is handover_bench.py (--help lists its options).
# The lab (rs-hoNNNN-*) is deleted on every exit path: by the driver, by this script's
# EXIT trap, and by a reaper process should this shell be killed outright.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

for arg in "$@"; do
    if [[ $arg == -h || $arg == --help ]]; then exec python3 "$here/handover_bench.py" --help; fi
done
if [[ $EUID -ne 0 ]]; then
    echo "handover.sh: needs root (network namespaces, TUN devices, the NAT); skipped" >&2
    exit 77
fi

name="ho$(printf '%04d' $(($$ % 10000)))"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    if [[ ${args[i]} == --lab && $((i + 1)) -lt ${#args[@]} ]]; then name=${args[i + 1]}; fi
done
[[ $name =~ ^[a-z0-9]{1,6}$ ]] || { echo "handover.sh: bad --lab '$name'" >&2; exit 2; }

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
python3 "$here/handover_bench.py" --lab "$name" "$@" || rc=$?
exit "$rc"
