#!/usr/bin/env bash
# Control channel costs and a flood of forged ACMs beside a transfer, same run.
#
#   tools/bench/run acm [--seconds N] [--handshakes N] [--flood-rate PPS]
#
# Unprivileged: UDP links on loopback. Env ROAM_SERVER ROAM_CLIENT ACM_BENCH ACM_FLOOD (set
# by tools/bench/run). See tools/bench/README.md; the driver is acm_bench.py.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec python3 "$here/acm_bench.py" "$@"
