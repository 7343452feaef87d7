#!/usr/bin/env bash
# Changeover of a server move against an application-level reconnect, same run.
#
#   tools/bench/run migrate [--file-mib N] [--connections N] [--reps N]
#
# Unprivileged: UDP links on loopback. Env ROAM_SERVER ROAM_CLIENT ROAMCTL (set by
# tools/bench/run). See tools/bench/README.md; the driver is migrate_bench.py.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec python3 "$here/migrate_bench.py" "$@"
