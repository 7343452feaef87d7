#!/usr/bin/env bash
# Carrier throughput against the kernel TCP reference, all measured in the same run.
#
#   tools/bench/run throughput [OPTIONS]        (builds build-bench/ first; see README.md)
#   tools/bench/throughput.sh [OPTIONS]         (uses ROAM_SERVER / ROAM_CLIENT / TCP_BLAST)
#
# Needs root (network namespaces and TUN devices, made by tools/netns/topology). Every
# figure is one kernel `tcp_blast send` of BYTES through one TCP connection, timed from
# connection established to the peer's EOF; each is repeated REPS times (round-robin
# across the modes) and the median is reported:
#   carrier_udp      roam-client -> roam-server (discard), UDP links on the loopback of the
#                    lab's client namespace, MTU 1500; sent through the client's -L forward
#   carrier_tun      roam-client on TUN in c -> kernel routing via r -> roam-server
#                    (discard) on TUN in s, MTU 1500; sent through the forward inside c
#   lwip_direct_tun  kernel TCP in c straight to the lwIP server 198.18.12.2:7000 (no
#                    roam-client): isolates the server side
#   kernel_veth      kernel TCP c -> r -> s (198.18.2.1), the reference
#   carrier_udp_jumbo  carrier_udp at MTU 9000 (information only)
# Then profiles roam-server and roam-client during one more carrier_tun transfer (perf
# record -g; valgrind callgrind on a 16 MiB transfer when perf cannot sample) and reports
# each process's CPU use during the transfers.
#
# Options: --bytes N          bytes per transfer (default 268435456 = 256 MiB)
#          --reps N           repetitions per mode (default 3)
#          --no-profile       skip the profile
#          --profile-bytes N  bytes of the perf-profiled transfer (default: --bytes)
#          --out DIR          keep logs and profiles here (default: a new directory under
#                             build-bench/bench-results/, or /tmp)
#          --name NAME        lab name (default tp + 4 digits of the pid)
# Env: ROAM_SERVER ROAM_CLIENT TCP_BLAST (default: build-bench/, else build/)
#      PROFILER=perf|callgrind  force the profiler
# Output: human-readable lines, then ONE JSON object as the last line of stdout.
# Progress goes to stderr. The lab and every process started are removed on any exit.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
topology="$root/tools/netns/topology"
source "$root/tools/netns/lab.sh"
prog=throughput.sh

bytes=268435456
reps=3
profile=1
profile_bytes=
out=
name="tp$(printf '%04d' $(($$ % 10000)))"

usage() { sed -n '2,33p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "$prog: $*" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
    case $1 in
        --bytes) [[ $# -ge 2 ]] || die "--bytes needs a value"; bytes=$2; shift 2 ;;
        --reps) [[ $# -ge 2 ]] || die "--reps needs a value"; reps=$2; shift 2 ;;
        --no-profile) profile=0; shift ;;
        --profile-bytes) [[ $# -ge 2 ]] || die "--profile-bytes needs a value"; profile_bytes=$2; shift 2 ;;
        --out) [[ $# -ge 2 ]] || die "--out needs a value"; out=$2; shift 2 ;;
        --name) [[ $# -ge 2 ]] || die "--name needs a value"; name=$2; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument '$1' (try --help)" ;;
    esac
done
[[ $bytes =~ ^[1-9][0-9]*$ ]] || die "bad --bytes '$bytes'"
[[ $reps =~ ^[1-9][0-9]?$ ]] || die "bad --reps '$reps'"
profile_bytes=${profile_bytes:-$bytes}
[[ $profile_bytes =~ ^[1-9][0-9]*$ ]] || die "bad --profile-bytes '$profile_bytes'"
[[ $name =~ ^[a-z0-9]{1,6}$ ]] || die "bad --name '$name': 1-6 characters of [a-z0-9]"
((bytes >= 268435456)) || echo "$prog: warning: --bytes $bytes is below the 256 MiB the figures are defined for" >&2

[[ $EUID -eq 0 ]] || die "must run as root (network namespaces and TUN devices)"

pick_bin() {  # pick_bin ENV_VALUE RELATIVE_PATH
    if [[ -n $1 ]]; then echo "$1"; return; fi
    if [[ -x $root/build-bench/$2 ]]; then echo "$root/build-bench/$2"; else echo "$root/build/$2"; fi
}
roam_server=$(pick_bin "${ROAM_SERVER-}" apps/roam-server)
roam_client=$(pick_bin "${ROAM_CLIENT-}" apps/roam-client)
tcp_blast=$(pick_bin "${TCP_BLAST-}" tools/bench/tcp_blast)
for bin in "$roam_server" "$roam_client" "$tcp_blast"; do
    [[ -x $bin ]] || die "binary not found: $bin (set ROAM_SERVER/ROAM_CLIENT/TCP_BLAST or use tools/bench/run)"
done

if [[ -z $out ]]; then
    if [[ -d $root/build-bench ]]; then
        out="$root/build-bench/bench-results/throughput-$(date +%Y%m%d-%H%M%S)-$$"
    else
        out=$(mktemp -d "${TMPDIR:-/tmp}/roam-throughput.XXXXXX")
    fi
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)

note() { echo "[$prog] $*" >&2; }

# ------------------------------------------------------------------------------ processes

declare -A proc_pid=()   # label -> pid
declare -A proc_log=()   # label -> log file
extra_pids=()            # profilers etc.

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local label pid _
    for pid in "${extra_pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
    for label in "${!proc_pid[@]}"; do kill -TERM "${proc_pid[$label]}" 2>/dev/null || true; done
    for pid in "${proc_pid[@]}" "${extra_pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    "$topology" down "$name" >/dev/null 2>&1 || true
    stop_lab_reaper
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start LABEL ROLE CMD...: CMD in namespace ROLE in the background (ip netns exec execs
# CMD, so the recorded pid is CMD's own).
start() {
    local label=$1 role=$2
    shift 2
    proc_log[$label]="$out/$label.log"
    "$topology" exec "$name" "$role" "$@" >"${proc_log[$label]}" 2>&1 &
    proc_pid[$label]=$!
}

wait_log() {  # wait_log LABEL REGEX
    local i
    for ((i = 0; i < 150; i++)); do
        grep -Eq -- "$2" "${proc_log[$1]}" 2>/dev/null && return 0
        kill -0 "${proc_pid[$1]}" 2>/dev/null || break
        sleep 0.1
    done
    echo "$prog: $1 did not become ready; its log:" >&2
    sed 's/^/  | /' "${proc_log[$1]}" >&2
    return 1
}

stop() {  # stop LABEL: SIGTERM, SIGKILL after 15 s; returns the exit status
    local pid=${proc_pid[$1]} i rc=0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || rc=$?
    unset "proc_pid[$1]"
    ((rc == 0)) || note "$1 exited with status $rc"
    return "$rc"
}

# CPU time (utime + stime, in clock ticks) of PID; 0 when it is gone.
clk_tck=$(getconf CLK_TCK)
cpu_ticks() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    stat=${stat##*) }  # fields after "pid (comm) "; utime and stime are fields 14, 15
    awk '{print $12 + $13}' <<<"$stat"
}
now_ns() { date +%s%N; }
# "TOTAL IDLE" jiffies of all CPUs (idle includes iowait), from /proc/stat.
# (user nice system idle iowait irq softirq steal; guest time is already inside user.)
system_ticks() { awk '/^cpu / { t = 0; for (i = 2; i <= 9 && i <= NF; i++) t += $i; print t, $5 + $6; exit }' /proc/stat; }

# ------------------------------------------------------------------------------ measuring

declare -A samples=()    # mode -> space-separated gbps samples
declare -A cpu_samples=() # mode:label -> space-separated CPU% samples
failures=0

# measure MODE ADDR [LABEL...]: one tcp_blast send of $bytes from namespace c to ADDR;
# records gbps and the CPU% of each LABEL'd process over the send's wall time.
measure() {
    local mode=$1 addr=$2
    shift 2
    local label t0 t1 result gbps
    local -A c0=()
    for label in "$@"; do c0[$label]=$(cpu_ticks "${proc_pid[$label]}"); done
    local sys0
    sys0=$(system_ticks)
    t0=$(now_ns)
    if ! result=$("$topology" exec "$name" c "$tcp_blast" send --connect "$addr" --bytes "$bytes" --timeout 300 2>&1); then
        t1=$(now_ns)
        note "$mode: send to $addr failed: $result"
        failures=$((failures + 1))
        return 0
    fi
    t1=$(now_ns)
    gbps=$(sed -nE 's/.*"gbps":([0-9.]+).*/\1/p' <<<"$result")
    if [[ -z $gbps ]]; then
        note "$mode: unexpected tcp_blast output: $result"
        failures=$((failures + 1))
        return 0
    fi
    samples[$mode]+="$gbps "
    local busy
    busy=$(awk -v a="$sys0" -v b="$(system_ticks)" 'BEGIN { split(a, x, " "); split(b, y, " ");
        t = y[1] - x[1]; v = 0; if (t > 0) v = (t - (y[2] - x[2])) / t * 100; printf "%.0f", v }')
    cpu_samples[$mode:system]+="$busy "
    local line="  $mode: $gbps Gbit/s, system busy $busy%"
    for label in "$@"; do
        local pct
        pct=$(awk -v a="${c0[$label]}" -v b="$(cpu_ticks "${proc_pid[$label]}")" -v hz="$clk_tck" \
            -v ns=$((t1 - t0)) 'BEGIN { printf "%.0f", (b - a) / hz / (ns / 1e9) * 100 }')
        cpu_samples[$mode:$label]+="$pct "
        line+=", $label CPU $pct%"
    done
    note "$line"
}

median() {  # median of the numbers in $1 (space-separated); "null" when empty
    tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{a[NR] = $1}
        END { if (NR == 0) print "null"; else if (NR % 2) print a[(NR + 1) / 2];
              else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
json_array() { local s; s=$(tr -s ' ' <<<"$1" | sed 's/^ //; s/ $//; s/ /,/g'); echo "[$s]"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "null" || b == "null" || b == 0) print "null"; else printf "%.3f", a / b }'; }

# ------------------------------------------------------------------------------ lab

note "lab $name; logs and profiles in $out"
start_lab_reaper "$name"
note "binaries: $roam_server $roam_client $tcp_blast"
"$topology" up "$name" --mtu 1500 2>"$out/topology.log" || { cat "$out/topology.log" >&2; exit 1; }
eval "$("$topology" env "$name")"

carrier_port=7000
udp_s=127.0.0.1:17001 udp_c=127.0.0.1:17002 fwd_udp=127.0.0.1:9001
udpj_s=127.0.0.1:17011 udpj_c=127.0.0.1:17012 fwd_udpj=127.0.0.1:9002
fwd_tun=127.0.0.1:9000
kernel_port=5201

# carrier_udp: both ends on UDP links on the client namespace's loopback.
start udp_server c "$roam_server" --link "udp:$udp_s" --addr "$SERVER_LWIP_IP" \
    --route "198.18.11.0/24=$udp_c" --mtu 1500 --listen "$carrier_port" discard
start udp_client c "$roam_client" --link "udp:$udp_c" --addr "$CLIENT_LWIP_IP" \
    --route "198.18.12.0/24=$udp_s" --mtu 1500 -L "$fwd_udp:$SERVER_LWIP_IP:$carrier_port"
# carrier_tun and lwip_direct_tun: both ends on the lab's TUN devices.
start tun_server s "$roam_server" --link "tun:$TUN_NAME" --addr "$SERVER_LWIP_IP" \
    --listen "$carrier_port" discard
start tun_client c "$roam_client" --link "tun:$TUN_NAME" --addr "$CLIENT_LWIP_IP" \
    -L "$fwd_tun:$SERVER_LWIP_IP:$carrier_port"
wait_log udp_server 'serving discard'
wait_log udp_client 'forwarding '
wait_log tun_server 'serving discard'
wait_log tun_client 'forwarding '

# Background load: how busy the machine is with our processes idle. Other work on the
# machine (builds, tests) takes CPU from the transfers and makes the figures noisy.
bg0=$(system_ticks)
sleep 2
background_busy=$(awk -v a="$bg0" -v b="$(system_ticks)" 'BEGIN { split(a, x, " "); split(b, y, " ");
    t = y[1] - x[1]; v = 0; if (t > 0) v = (t - (y[2] - x[2])) / t * 100; printf "%.0f", v }')
loadavg=$(cut -d' ' -f1 /proc/loadavg)
note "background: system busy $background_busy% of $(nproc) CPUs over 2 s with the lab idle; loadavg $loadavg"
((background_busy < 15)) || note "warning: the machine is busy with other work: the figures will be noisy"

mib=$(awk -v b="$bytes" 'BEGIN { printf "%g", b / 1048576 }')
note "measuring: $reps x $mib MiB per mode, round-robin"
for ((rep = 1; rep <= reps; rep++)); do
    note "round $rep/$reps"
    measure carrier_udp "$fwd_udp" udp_client udp_server
    measure carrier_tun "$fwd_tun" tun_client tun_server
    measure lwip_direct_tun "$SERVER_LWIP_IP:$carrier_port" tun_server
    start kernel_sink s "$tcp_blast" sink --listen "$SERVER_KERNEL_IP:$kernel_port" --timeout 300
    measure kernel_veth "$SERVER_KERNEL_IP:$kernel_port"
    stop kernel_sink || failures=$((failures + 1))
done

# Jumbo UDP carrier (information only): its own pair, after the main figures.
stop udp_client || failures=$((failures + 1))
stop udp_server || failures=$((failures + 1))
start udpj_server c "$roam_server" --link "udp:$udpj_s" --addr "$SERVER_LWIP_IP" \
    --route "198.18.11.0/24=$udpj_c" --mtu 9000 --listen "$carrier_port" discard
start udpj_client c "$roam_client" --link "udp:$udpj_c" --addr "$CLIENT_LWIP_IP" \
    --route "198.18.12.0/24=$udpj_s" --mtu 9000 -L "$fwd_udpj:$SERVER_LWIP_IP:$carrier_port"
wait_log udpj_server 'serving discard'
wait_log udpj_client 'forwarding '
for ((rep = 1; rep <= reps; rep++)); do
    measure carrier_udp_jumbo "$fwd_udpj" udpj_client udpj_server
done
stop udpj_client || failures=$((failures + 1))
stop udpj_server || failures=$((failures + 1))

# ------------------------------------------------------------------------------ profile

profile_lines=()
profiler=none
if ((profile)); then
    profiler=${PROFILER:-}
    if [[ -z $profiler ]]; then
        if ! command -v perf >/dev/null; then
            note "perf missing: apt-get install -y linux-perf"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q linux-perf >"$out/apt.log" 2>&1 ||
                note "could not install linux-perf (see $out/apt.log)"
        fi
        if command -v perf >/dev/null && perf record -q -g -o "$out/perf-probe.data" -- true >/dev/null 2>&1; then
            profiler=perf
        elif command -v valgrind >/dev/null; then
            profiler=callgrind
        else
            profiler=none
            note "neither perf nor valgrind can profile here: profile skipped"
        fi
        rm -f "$out/perf-probe.data"
    fi
fi

# top_perf FILE: top 10 symbols by self time.
top_perf() {
    perf report -i "$1" --no-children -g none --sort dso,symbol --stdio --percent-limit 0.5 2>/dev/null |
        grep -E '^ +[0-9.]+%' | head -n 10 |
        awk '{ pct = $1; dso = $2; kind = $3; $1 = ""; $2 = ""; $3 = ""; sub(/^ +/, ""); sub(/( +-)+ *$/, "");
               printf "    %7s  %s %-44s  %s\n", pct, kind, $0, dso }'
}
# split_perf FILE: share of the samples by object (kernel, libc, the binary...), one line.
split_perf() {
    perf report -i "$1" --no-children -g none --sort dso --stdio 2>/dev/null |
        awk '/^ +[0-9.]+%/ { if (n++ < 5) { s = s sep $2 " " $1; sep = ", " } } END { print "    by object: " s }'
}
# top_callgrind FILE: top 10 functions by self instruction count.
top_callgrind() {
    callgrind_annotate --threshold=100 "$1" 2>/dev/null |
        awk '/^-+$/ { sep++; next } sep >= 2 && /^ *[0-9,]+ / && !/PROGRAM TOTALS/ { print; if (++n == 10) exit }' |
        sed -E 's/^ *//; s/\)  [^ :]*:/)  /; s/ \[([^]]*\/)?([^]/]*)\]$/  \2/; s/^/    /'
}

if [[ $profiler == perf ]]; then
    note "profiling one carrier_tun transfer of $profile_bytes bytes with perf record -g"
    perf record -q -g -o "$out/perf-roam-server.data" -p "${proc_pid[tun_server]}" >"$out/perf-server.log" 2>&1 &
    perf_s=$!
    extra_pids+=("$perf_s")
    perf record -q -g -o "$out/perf-roam-client.data" -p "${proc_pid[tun_client]}" >"$out/perf-client.log" 2>&1 &
    perf_c=$!
    extra_pids+=("$perf_c")
    sleep 1
    saved_bytes=$bytes
    bytes=$profile_bytes
    measure profile_tun "$fwd_tun" tun_client tun_server
    bytes=$saved_bytes
    kill -INT "$perf_s" "$perf_c" 2>/dev/null || true
    wait "$perf_s" 2>/dev/null || true
    wait "$perf_c" 2>/dev/null || true
    extra_pids=()
    profile_lines+=("roam-server (perf, self time, top 10; $out/perf-roam-server.data):")
    profile_lines+=("$(split_perf "$out/perf-roam-server.data")")
    while IFS= read -r l; do profile_lines+=("$l"); done < <(top_perf "$out/perf-roam-server.data")
    profile_lines+=("roam-client (perf, self time, top 10; $out/perf-roam-client.data):")
    profile_lines+=("$(split_perf "$out/perf-roam-client.data")")
    while IFS= read -r l; do profile_lines+=("$l"); done < <(top_perf "$out/perf-roam-client.data")
elif [[ $profiler == callgrind ]]; then
    # The TUN devices take one reader each: swap the pair for one run under callgrind.
    stop tun_client || failures=$((failures + 1))
    stop tun_server || failures=$((failures + 1))
    profile_bytes=$((16 << 20))
    note "profiling one carrier_tun transfer of $profile_bytes bytes with valgrind callgrind"
    start tun_server s valgrind --tool=callgrind --callgrind-out-file="$out/callgrind-roam-server.out" \
        "$roam_server" --link "tun:$TUN_NAME" --addr "$SERVER_LWIP_IP" --listen "$carrier_port" discard
    start tun_client c valgrind --tool=callgrind --callgrind-out-file="$out/callgrind-roam-client.out" \
        "$roam_client" --link "tun:$TUN_NAME" --addr "$CLIENT_LWIP_IP" -L "$fwd_tun:$SERVER_LWIP_IP:$carrier_port"
    wait_log tun_server 'serving discard'
    wait_log tun_client 'forwarding '
    saved_bytes=$bytes
    bytes=$profile_bytes
    measure profile_tun "$fwd_tun" tun_client tun_server
    bytes=$saved_bytes
    stop tun_client || true
    stop tun_server || true
    profile_lines+=("roam-server (callgrind, self instructions, top 10; $out/callgrind-roam-server.out):")
    while IFS= read -r l; do profile_lines+=("$l"); done < <(top_callgrind "$out/callgrind-roam-server.out")
    profile_lines+=("roam-client (callgrind, self instructions, top 10; $out/callgrind-roam-client.out):")
    while IFS= read -r l; do profile_lines+=("$l"); done < <(top_callgrind "$out/callgrind-roam-client.out")
fi

# Stop the remaining carrier processes: each must exit 0 on SIGTERM.
for label in tun_client tun_server; do
    if [[ -n ${proc_pid[$label]-} ]]; then stop "$label" || failures=$((failures + 1)); fi
done
"$topology" down "$name" >/dev/null 2>&1 || true

# ------------------------------------------------------------------------------ report

udp=$(median "${samples[carrier_udp]-}")
tun=$(median "${samples[carrier_tun]-}")
direct=$(median "${samples[lwip_direct_tun]-}")
kernel=$(median "${samples[kernel_veth]-}")
jumbo=$(median "${samples[carrier_udp_jumbo]-}")
cpu() { median "${cpu_samples[$1]-}"; }

verdict() {  # verdict PCT: a one-word reading of a single-threaded process's CPU use
    awk -v p="$1" 'BEGIN { if (p == "null") print "n/a"; else if (p >= 90) print "CPU-bound"; else if (p >= 60) print "busy"; else print "not CPU-bound" }'
}

echo "throughput: $reps x $mib MiB per mode, median Gbit/s (samples); CPU% = process CPU time / transfer wall time"
echo "  machine: $(nproc) CPUs; busy $background_busy% before the run with the lab idle (loadavg $loadavg)$( ((background_busy < 15)) || echo ': OTHER LOAD, figures noisy')"
printf '  %-18s %8s  (%s)  client CPU %s%%, server CPU %s%%, system %s%%\n' carrier_udp "$udp" "${samples[carrier_udp]-}" \
    "$(cpu carrier_udp:udp_client)" "$(cpu carrier_udp:udp_server)" "$(cpu carrier_udp:system)"
printf '  %-18s %8s  (%s)  client CPU %s%%, server CPU %s%%, system %s%%\n' carrier_tun "$tun" "${samples[carrier_tun]-}" \
    "$(cpu carrier_tun:tun_client)" "$(cpu carrier_tun:tun_server)" "$(cpu carrier_tun:system)"
printf '  %-18s %8s  (%s)  server CPU %s%%, system %s%%\n' lwip_direct_tun "$direct" "${samples[lwip_direct_tun]-}" \
    "$(cpu lwip_direct_tun:tun_server)" "$(cpu lwip_direct_tun:system)"
printf '  %-18s %8s  (%s)  system %s%%  (reference)\n' kernel_veth "$kernel" "${samples[kernel_veth]-}" \
    "$(cpu kernel_veth:system)"
printf '  %-18s %8s  (%s)  client CPU %s%%, server CPU %s%%  (MTU 9000, information only)\n' carrier_udp_jumbo \
    "$jumbo" "${samples[carrier_udp_jumbo]-}" "$(cpu carrier_udp_jumbo:udpj_client)" "$(cpu carrier_udp_jumbo:udpj_server)"
echo "  ratio carrier_tun / kernel_veth = $(ratio "$tun" "$kernel"); carrier_udp / kernel_veth = $(ratio "$udp" "$kernel"); lwip_direct_tun / kernel_veth = $(ratio "$direct" "$kernel")"
if [[ $profiler != none ]]; then
    pc=$(cpu profile_tun:tun_client)
    ps=$(cpu profile_tun:tun_server)
    echo "profile ($profiler) of one carrier_tun transfer: $(median "${samples[profile_tun]-}") Gbit/s;" \
        "roam-client CPU $pc% ($(verdict "$pc")), roam-server CPU $ps% ($(verdict "$ps")), system busy $(cpu profile_tun:system)%"
    printf '%s\n' "${profile_lines[@]}"
fi
echo "logs: $out"
((failures == 0)) || echo "errors: $failures (see the messages above and the logs)"

printf '{"bench":"throughput","bytes":%s,"reps":%s,"mtu":1500,"cpus":%s' "$bytes" "$reps" "$(nproc)"
printf ',"carrier_udp_gbps":%s,"carrier_tun_gbps":%s,"kernel_veth_gbps":%s' "$udp" "$tun" "$kernel"
printf ',"ratio_tun_vs_kernel":%s,"ratio_udp_vs_kernel":%s' "$(ratio "$tun" "$kernel")" "$(ratio "$udp" "$kernel")"
printf ',"lwip_direct_tun_gbps":%s,"ratio_direct_vs_kernel":%s,"carrier_udp_jumbo_gbps":%s' \
    "$direct" "$(ratio "$direct" "$kernel")" "$jumbo"
printf ',"samples":{"carrier_udp":%s,"carrier_tun":%s,"lwip_direct_tun":%s,"kernel_veth":%s,"carrier_udp_jumbo":%s}' \
    "$(json_array "${samples[carrier_udp]-}")" "$(json_array "${samples[carrier_tun]-}")" \
    "$(json_array "${samples[lwip_direct_tun]-}")" "$(json_array "${samples[kernel_veth]-}")" \
    "$(json_array "${samples[carrier_udp_jumbo]-}")"
printf ',"cpu_pct":{"carrier_udp":{"client":%s,"server":%s,"system":%s},"carrier_tun":{"client":%s,"server":%s,"system":%s}' \
    "$(cpu carrier_udp:udp_client)" "$(cpu carrier_udp:udp_server)" "$(cpu carrier_udp:system)" \
    "$(cpu carrier_tun:tun_client)" "$(cpu carrier_tun:tun_server)" "$(cpu carrier_tun:system)"
printf ',"lwip_direct_tun":{"server":%s,"system":%s},"kernel_veth":{"system":%s}' \
    "$(cpu lwip_direct_tun:tun_server)" "$(cpu lwip_direct_tun:system)" "$(cpu kernel_veth:system)"
printf ',"profile_tun":{"client":%s,"server":%s,"system":%s}}' \
    "$(cpu profile_tun:tun_client)" "$(cpu profile_tun:tun_server)" "$(cpu profile_tun:system)"
printf ',"background_busy_pct":%s,"loadavg":%s' "$background_busy" "$loadavg"
printf ',"profiler":"%s","profile_bytes":%s,"profile_tun_gbps":%s,"errors":%s}\n' "$profiler" \
    "$([[ $profiler == none ]] && echo null || echo "$profile_bytes")" "$(median "${samples[profile_tun]-}")" "$failures"
((failures == 0))
