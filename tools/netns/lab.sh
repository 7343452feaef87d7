# Sourced by scripts that bring up a lab with tools/netns/topology.
#
# start_lab_reaper NAME: starts a detached process that deletes lab NAME once the calling
# shell is gone, even when that shell dies without running its EXIT trap (SIGKILL, or a
# ctest timeout). Sets reaper_pid; stop_lab_reaper ends it after a normal teardown.
start_lab_reaper() {
    local lab=$1 owner=$$ topology_tool
    topology_tool="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/topology"
    (
        trap '' INT TERM HUP
        while kill -0 "$owner" 2>/dev/null; do sleep 1; done
        "$topology_tool" down "$lab" >/dev/null 2>&1
    ) </dev/null >/dev/null 2>&1 &
    reaper_pid=$!
}

stop_lab_reaper() {
    if [[ -n ${reaper_pid-} ]]; then
        kill -KILL "$reaper_pid" 2>/dev/null || true
        wait "$reaper_pid" 2>/dev/null || true
        reaper_pid=
    fi
}
