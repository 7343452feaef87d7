#!/usr/bin/env bash
# Scale: thousands of idle carriers through roam-client (open time, memory per connection,
# moving them between servers, how many the client holds) against the kernel, same run.
#
#   tools/bench/run scale [--connections N] [--quick] [--reps N] [--window N]
#                         [--carriers-cap N] [--carriers-time S] [--keep-logs] ...
#
# Unprivileged (UDP links on loopback, addresses from 198.18.0.0/15); as root the driver
# raises RLIMIT_NOFILE's hard limit, otherwise N is capped to what fits (said in the
# JSON). Env ROAM_SERVER ROAM_CLIENT (set by tools/bench/run). See tools/bench/README.md;
# the driver is scale_bench.py (--help lists its options). Every process it starts is
# stopped on exit (finally blocks, and PR_SET_PDEATHSIG should the driver be killed).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

pid=
# shellcheck disable=SC2317 # run by the traps
forward() {
    [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    exit "$1"
}
trap 'forward 130' INT
trap 'forward 143' TERM
python3 "$here/scale_bench.py" "$@" &
pid=$!
rc=0
wait "$pid" || rc=$?
exit "$rc"
