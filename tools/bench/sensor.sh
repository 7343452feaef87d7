#!/usr/bin/env bash
# The Migration Sensor (issue 13, seed 004): connect and download overhead through the
# proxy against kernel TCP (004's Tables 3 and 4), legitimate handshakes under a spoofed
# SYN flood for SYN cookies, seed 004's SYN checker and the kernel with syncookies=1/0
# (Table 5), the flood detector's latency, and the attack drill's verdict once it exists.
#
#   tools/bench/run sensor [--reps N] [--download-kib N] [--download-runs N] [--connects N]
#                          [--checker P,P,...] [--paper-pps N] [--png DIR] [--only PARTS] [--keep-logs]
#
# Needs root (network namespaces, TUN devices, the NAT, raw sockets); exits 77 otherwise.
# Env ROAM_SERVER ROAM_CLIENT ROAMCTL SYN_FLOOD (set by tools/bench/run). See
# tools/bench/README.md; the driver is sensor_bench.py (--help lists its options).
# Its two labs (rs-sbNNNN-*, rs-sfNNNN-*) are deleted on every exit path: by the driver,
# by this script's EXIT trap, and by reaper processes should this shell be killed outright.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

for arg in "$@"; do
    if [[ $arg == -h || $arg == --help ]]; then exec python3 "$here/sensor_bench.py" --help; fi
done
if [[ $EUID -ne 0 ]]; then
    echo "sensor.sh: needs root (network namespaces, TUN devices, the NAT, raw sockets); skipped" >&2
    exit 77
fi

id=$(printf '%04d' $(($$ % 10000)))
labs=("sb$id" "sf$id")

# shellcheck source=tools/netns/lab.sh
source "$root/tools/netns/lab.sh"
reapers=()
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
    local rc=$? lab pid
    trap - EXIT INT TERM
    for lab in "${labs[@]}"; do
        "$root/tools/netns/topology" down "$lab" >/dev/null 2>&1 || true
    done
    for pid in "${reapers[@]}"; do
        reaper_pid=$pid
        stop_lab_reaper
    done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
for lab in "${labs[@]}"; do
    start_lab_reaper "$lab"
    reapers+=("$reaper_pid")
done

# Not exec: the trap above must run after the driver, whatever becomes of it.
rc=0
python3 "$here/sensor_bench.py" --proxy-lab "${labs[0]}" --flood-lab "${labs[1]}" "$@" || rc=$?
exit "$rc"
