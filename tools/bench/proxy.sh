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
# The lab (rs-pbNNNN-*) is deleted on every exit path (tools/bench/netns_bench.sh).
set -euo pipefail
# shellcheck source=tools/bench/netns_bench.sh
source "$(dirname "${BASH_SOURCE[0]}")/netns_bench.sh"
run_netns_bench proxy_bench.py pb "$@"
