#!/usr/bin/env bash
# Proactive roaming (seed 002 Fig. 2(b)): response time of a request/response service
# through a pool of three members that roams every few seconds, against the same pool
# with one member active all along, same run, behind a strict NAT; then the same under a
# flood of the members' shaped links (one member, roaming per discovery delay,
# replication; roaming_attack.py) and a member killed.
#
#   tools/bench/run roaming [--seconds S] [--epoch S] [--reps N] [--no-attack]
#                           [--delays 0,15,30,45,60] [--no-dead-server]
#
# Needs root (network namespaces, TUN devices and the NAT of tools/netns/nat); exits 77
# otherwise. Env ROAM_SERVER ROAM_CLIENT ROAMCTL (set by tools/bench/run). See
# tools/bench/README.md; the driver is roaming_bench.py (--help lists its options).
# The lab (rs-rbNNNN-*) is deleted on every exit path (tools/bench/netns_bench.sh).
set -euo pipefail
# shellcheck source=tools/bench/netns_bench.sh
source "$(dirname "${BASH_SOURCE[0]}")/netns_bench.sh"
run_netns_bench roaming_bench.py rb "$@"
