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
# The lab (rs-hoNNNN-*) is deleted on every exit path (tools/bench/netns_bench.sh).
set -euo pipefail
# shellcheck source=tools/bench/netns_bench.sh
source "$(dirname "${BASH_SOURCE[0]}")/netns_bench.sh"
run_netns_bench handover_bench.py ho "$@"
