# Sourced by the benchmarks whose driver builds its own netns lab (handover.sh, proxy.sh,
# roaming.sh): run_netns_bench DRIVER PREFIX ARGS... runs python3 DRIVER --lab NAME ARGS
# as root (exit 77 otherwise; --help goes to the driver), NAME being PREFIX and this
# shell's pid (or the caller's --lab, 1-6 of [a-z0-9]). The lab (rs-NAME-*) is deleted on
# every exit path: by the driver, by the EXIT trap set here, and by a reaper process
# should the calling shell be killed outright. Exits with the driver's status.
# shellcheck shell=bash

run_netns_bench() {
    local driver=$1 prefix=$2
    shift 2
    local here root script
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    root=$(cd "$here/../.." && pwd)
    script=$(basename "$0")
    for arg in "$@"; do
        if [[ $arg == -h || $arg == --help ]]; then exec python3 "$here/$driver" --help; fi
    done
    if [[ $EUID -ne 0 ]]; then
        echo "$script: needs root (network namespaces, TUN devices, the NAT); skipped" >&2
        exit 77
    fi
    bench_lab="$prefix$(printf '%04d' $(($$ % 10000)))"
    local args=("$@") i
    for ((i = 0; i < ${#args[@]}; i++)); do
        if [[ ${args[i]} == --lab && $((i + 1)) -lt ${#args[@]} ]]; then bench_lab=${args[i + 1]}; fi
    done
    [[ $bench_lab =~ ^[a-z0-9]{1,6}$ ]] || { echo "$script: bad --lab '$bench_lab'" >&2; exit 2; }
    bench_root=$root

    # shellcheck source=tools/netns/lab.sh
    source "$root/tools/netns/lab.sh"
    trap netns_bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    start_lab_reaper "$bench_lab"

    # Not exec: the trap above must run after the driver, whatever becomes of it.
    local rc=0
    python3 "$here/$driver" --lab "$bench_lab" "$@" || rc=$?
    exit "$rc"
}

# shellcheck disable=SC2317 # run by the EXIT trap
netns_bench_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    "$bench_root/tools/netns/topology" down "$bench_lab" >/dev/null 2>&1 || true
    stop_lab_reaper
    exit "$rc"
}
