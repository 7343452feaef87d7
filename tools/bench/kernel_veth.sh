#!/usr/bin/env bash
# Kernel TCP reference throughput over the lab path the carrier will take:
# client namespace -> veth -> router namespace -> veth -> server namespace.
#
#   tools/bench/kernel_veth.sh [NAME]      (run as root; NAME defaults to bkv)
#
# Env: TCP_BLAST  path of the tcp_blast binary (default build/tools/bench/tcp_blast,
#                 relative to the repository root)
#      BYTES      bytes to send (default 268435456 = 256 MiB)
#      MTU        MTU of the lab links (default 1500)
# Prints the sender's JSON line ({"bytes":N,"seconds":S,"gbps":G}) on stdout.
# The topology is always torn down on exit, success or not.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
topology="$root/tools/netns/topology"
name=${1:-bkv}
tcp_blast=${TCP_BLAST:-build/tools/bench/tcp_blast}
[[ $tcp_blast == /* ]] || tcp_blast="$root/$tcp_blast"
bytes=${BYTES:-268435456}
mtu=${MTU:-1500}
port=5201

[[ $EUID -eq 0 ]] || { echo "kernel_veth.sh: must run as root" >&2; exit 2; }
[[ -x $tcp_blast ]] || { echo "kernel_veth.sh: tcp_blast not found at $tcp_blast (set TCP_BLAST)" >&2; exit 2; }

sink_pid=
cleanup() {
    local rc=$?
    if [[ -n $sink_pid ]]; then kill "$sink_pid" 2>/dev/null || true; wait "$sink_pid" 2>/dev/null || true; fi
    "$topology" down "$name" || true
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$topology" up "$name" --mtu "$mtu"
eval "$("$topology" env "$name")"

"$topology" exec "$name" s "$tcp_blast" sink --listen "$SERVER_KERNEL_IP:$port" --timeout 120 >/dev/null &
sink_pid=$!
# send retries while the sink is not listening yet.
"$topology" exec "$name" c "$tcp_blast" send --connect "$SERVER_KERNEL_IP:$port" --bytes "$bytes" --timeout 120
wait "$sink_pid"
sink_pid=
