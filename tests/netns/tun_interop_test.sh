#!/usr/bin/env bash
# Tier-3 interop test: the lwIP stacks on real TUN devices against real Linux TCP, with
# kernel routing through the lab's router namespace (tools/netns/topology).
#
#   a. roam-server echo on TUN in s; a kernel TCP client in c talks straight to the lwIP
#      address 198.18.12.2:7000 (Linux TCP <-> lwIP): 32 MiB echo-check, byte-exact.
#   d. malformed packets (bad TCP checksum, raw IPv4 from c with source 198.18.1.1) reach
#      that lwIP server through the kernel routing and TUN: counted as malformed, the
#      server keeps serving, and exits 0 on SIGTERM.
#   b. roam-client on TUN in c forwards 127.0.0.1:9000 to roam-server relay on TUN in s,
#      which relays to a kernel echo backend on 127.0.0.1 in s: 32 MiB echo-check through
#      kernel -> roam-client -> lwIP -> TUN -> routing via r -> TUN -> lwIP -> relay -> kernel.
#   c. 50 concurrent 1 MiB echo-checks through the same forward, all byte-exact.
#      (a-c run with the default TUN offloads: IFF_VNET_HDR, checksum offload and TSO.)
#   f. the same forward with `--link tun:NAME,no-offload` on both ends (plain one packet
#      per read/write): 32 MiB echo-check through it, byte-exact.
#   e. every roam process exits 0 on SIGTERM with its final counters line, and no process
#      is left in the lab namespaces before teardown.
#
# Exit 0 all passed, 1 a check failed, 77 skipped (not root, or no `ip netns`).
# Env: ROAMSTACK_ROOT  repository root (default: two levels above this script)
#      ROAM_SERVER, ROAM_CLIENT, TCP_BLAST  binaries (default: under $ROAMSTACK_ROOT/build)
#      KEEP_LOGS=1     keep the per-process logs directory (its path is printed)
# Network safety (DESIGN.md section 7): everything runs in the lab's own namespaces with
# 198.18.0.0/15 addresses; the lab is torn down on every exit path.
set -euo pipefail

root=${ROAMSTACK_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
topology="$root/tools/netns/topology"
source "$root/tools/netns/lab.sh"
roam_server=${ROAM_SERVER:-$root/build/apps/roam-server}
roam_client=${ROAM_CLIENT:-$root/build/apps/roam-client}
tcp_blast=${TCP_BLAST:-$root/build/tools/bench/tcp_blast}

if [[ $EUID -ne 0 ]]; then echo "SKIP: needs root"; exit 77; fi
if ! command -v ip >/dev/null || ! ip netns list >/dev/null 2>&1; then
    echo "SKIP: 'ip netns' unavailable"
    exit 77
fi
for bin in "$roam_server" "$roam_client" "$tcp_blast"; do
    [[ -x $bin ]] || { echo "FAIL - binary not found: $bin (set ROAM_SERVER/ROAM_CLIENT/TCP_BLAST)"; exit 1; }
done
command -v python3 >/dev/null || { echo "FAIL - python3 not found (needed for raw packet injection)"; exit 1; }

name="ti$(printf '%04d' $(($$ % 10000)))"
logdir=$(mktemp -d "${TMPDIR:-/tmp}/roam-tun-interop.XXXXXX")
failures=0
declare -A proc_pid=()   # label -> pid of a background process we started
declare -A proc_log=()   # label -> its log file

# ------------------------------------------------------------------------------ plumbing

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local label pid
    for label in "${!proc_pid[@]}"; do
        pid=${proc_pid[$label]}
        kill -TERM "$pid" 2>/dev/null || true
    done
    for label in "${!proc_pid[@]}"; do
        pid=${proc_pid[$label]}
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    "$topology" down "$name" >/dev/null 2>&1 || true
    stop_lab_reaper
    if [[ $rc -ne 0 || ${KEEP_LOGS:-0} == 1 ]]; then
        echo "# logs kept in $logdir"
    else
        rm -rf "$logdir"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pass() { echo "ok   - $*"; }
fail() { echo "FAIL - $*"; failures=$((failures + 1)); }

# Prints a process log indented, for failure messages.
show_log() { [[ -f $1 ]] && sed 's/^/#   | /' "$1" | tail -n "${2:-15}"; return 0; }

# start LABEL ROLE CMD...: runs CMD in namespace ROLE (c|r|s) in the background, output
# to $logdir/LABEL.log. `ip netns exec` execs CMD, so the pid is CMD's own.
start() {
    local label=$1 role=$2
    shift 2
    local log="$logdir/$label.log"
    "$topology" exec "$name" "$role" "$@" >"$log" 2>&1 &
    proc_pid[$label]=$!
    proc_log[$label]=$log
}

# wait_log LABEL REGEX [SECONDS]: waits until LABEL's log matches REGEX (extended), or
# fails when the process exits or the time runs out.
wait_log() {
    local label=$1 re=$2 secs=${3:-15} i
    for ((i = 0; i < secs * 10; i++)); do
        grep -Eq -- "$re" "${proc_log[$label]}" 2>/dev/null && return 0
        kill -0 "${proc_pid[$label]}" 2>/dev/null || break
        sleep 0.1
    done
    grep -Eq -- "$re" "${proc_log[$label]}" 2>/dev/null
}

# stop LABEL: SIGTERM, wait up to 15 s (SIGKILL after), sets STOP_RC to the exit status
# (137 = needed SIGKILL). Returns 0 when the process exited 0 by itself.
# STOP_EARLY=1 when it had already exited before the SIGTERM.
STOP_RC=0
STOP_EARLY=0
stop() {
    local label=$1 pid=${proc_pid[$1]} i killed=0
    STOP_EARLY=0
    kill -0 "$pid" 2>/dev/null || STOP_EARLY=1
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        killed=1
        kill -KILL "$pid" 2>/dev/null || true
    fi
    STOP_RC=0
    wait "$pid" 2>/dev/null || STOP_RC=$?
    unset "proc_pid[$label]"
    ((killed == 0 && STOP_RC == 0 && STOP_EARLY == 0))
}

# stop_roam LABEL: stops a roam process and checks (e) it exited 0 on SIGTERM with the
# final counters line. Sets MALFORMED from that line (-1 when missing).
MALFORMED=-1
stop_roam() {
    local label=$1 line
    MALFORMED=-1
    if stop "$label"; then
        pass "$label exited 0 on SIGTERM"
    elif ((STOP_EARLY)); then
        fail "$label had already exited (status $STOP_RC) before SIGTERM"
        show_log "${proc_log[$label]}"
    else
        fail "$label did not exit 0 on SIGTERM (status $STOP_RC; 137 = needed SIGKILL)"
        show_log "${proc_log[$label]}"
    fi
    line=$(grep -E '\[node\] packets in [0-9]+ \(malformed [0-9]+' "${proc_log[$label]}" | tail -n 1 || true)
    if [[ -n $line ]]; then
        MALFORMED=$(sed -E 's/.*\(malformed ([0-9]+).*/\1/' <<<"$line")
        pass "$label final counters: ${line#*\[node\] }"
    else
        fail "$label printed no final '[node] packets in N (malformed M, ...)' line"
        show_log "${proc_log[$label]}"
    fi
    if grep -Eq 'AddressSanitizer|LeakSanitizer|runtime error:|terminate called|Segmentation fault' \
        "${proc_log[$label]}"; then
        fail "$label log reports a crash or sanitizer error"
        show_log "${proc_log[$label]}" 30
    fi
}

# echo_check LABEL ADDR BYTES: one tcp_blast echo-check from namespace c.
echo_check() {
    local label=$1 addr=$2 bytes=$3 out
    if out=$("$topology" exec "$name" c "$tcp_blast" echo-check --connect "$addr" \
        --bytes "$bytes" --timeout 120 2>&1) && [[ $out == *"\"bytes\":$bytes,"*'"ok":true'* ]]; then
        pass "$label: $out"
    else
        fail "$label: echo-check of $bytes bytes to $addr failed: $out"
        return 1
    fi
}

# Kernel echo backend on 127.0.0.1:PORT in namespace s: socat when installed, else python3.
start_echo_backend() {
    local label=$1 port=$2
    if command -v socat >/dev/null; then
        start "$label" s socat "TCP-LISTEN:$port,bind=127.0.0.1,fork,reuseaddr,backlog=128" EXEC:cat
    else
        start "$label" s python3 -c '
import socket, sys, threading
srv = socket.create_server(("127.0.0.1", int(sys.argv[1])), backlog=128)
def serve(c):
    with c:
        while (b := c.recv(262144)):
            c.sendall(b)
    print("closed", flush=True)
print("listening", flush=True)
while True:
    threading.Thread(target=serve, args=(srv.accept()[0],), daemon=True).start()
' "$port"
    fi
}

# Waits until a kernel TCP listener on IP:PORT exists in namespace ROLE.
wait_listen() {
    local role=$1 addr=$2 i
    for ((i = 0; i < 100; i++)); do
        "$topology" exec "$name" "$role" ss -Hltn src "$addr" 2>/dev/null | grep -q . && return 0
        sleep 0.1
    done
    return 1
}

# ------------------------------------------------------------------------------ lab

echo "# tun_interop_test: lab '$name', logs in $logdir"
start_lab_reaper "$name"
if ! "$topology" up "$name" >"$logdir/topology.log" 2>&1; then
    echo "FAIL - topology up $name"
    show_log "$logdir/topology.log"
    exit 1
fi
eval "$("$topology" env "$name")"
pass "topology up $name"

mib32=$((32 << 20))
carrier_port=7000

# ------------------------------------------------------------------------------ a
# Linux TCP (kernel client in c) <-> lwIP (roam-server echo on the TUN in s).

start server_echo s "$roam_server" --link "tun:$TUN_NAME" --addr "$SERVER_LWIP_IP" echo
if wait_log server_echo 'serving echo on port' 15; then
    pass "a: roam-server echo up on tun:$TUN_NAME $SERVER_LWIP_IP"
    echo_check "a: kernel TCP in c -> lwIP $SERVER_LWIP_IP:$carrier_port, 32 MiB" \
        "$SERVER_LWIP_IP:$carrier_port" "$mib32" || show_log "${proc_log[server_echo]}"
else
    fail "a: roam-server echo did not start"
    show_log "${proc_log[server_echo]}"
fi

# ------------------------------------------------------------------------------ d
# Malformed packets injected from the kernel side: raw IPv4 with IP_HDRINCL from c, source
# 198.18.1.1, TCP to 198.18.12.2:7000 with a deliberately wrong TCP checksum. The kernel
# routes them c -> r -> s -> rtun0 -> lwIP server, whose checker must count and drop them.

inject_malformed() {
    "$topology" exec "$name" c python3 - "$CLIENT_KERNEL_IP" "$SERVER_LWIP_IP" "$carrier_port" "$1" <<'EOF'
import socket, struct, sys
src, dst, dport, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF); s += s >> 16
    return ~s & 0xFFFF
payload = b"roamstack tun_interop_test: bad TCP checksum"
# SYN with payload, checksum field zero while computing.
tcp = struct.pack("!HHIIBBHHH", 40000, dport, 1, 0, 5 << 4, 0x02, 65535, 0, 0) + payload
pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(tcp))
good = csum(pseudo + tcp)
bad = (good ^ 0x5A5A) or 1
tcp = tcp[:16] + struct.pack("!H", bad) + tcp[18:]
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0x5253, 0, 64, 6, 0,
                 socket.inet_aton(src), socket.inet_aton(dst))
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
for _ in range(count):
    s.sendto(ip + tcp, (dst, 0))
EOF
}

if [[ -n ${proc_pid[server_echo]-} ]]; then
    injected=3
    if inject_malformed "$injected"; then
        pass "d: injected $injected raw IPv4/TCP packets with a bad TCP checksum from $CLIENT_KERNEL_IP"
    else
        fail "d: raw packet injection from $CLIENT_NS failed"
    fi
    sleep 0.5
    if kill -0 "${proc_pid[server_echo]}" 2>/dev/null; then
        pass "d: roam-server still running after the malformed packets"
        echo_check "d: lwIP server still serves after the malformed packets, 1 MiB" \
            "$SERVER_LWIP_IP:$carrier_port" $((1 << 20)) || true
    else
        fail "d: roam-server died after the malformed packets"
        show_log "${proc_log[server_echo]}"
    fi
    stop_roam server_echo
    if ((MALFORMED >= 1)); then
        pass "d: roam-server counted $MALFORMED malformed packet(s) (injected $injected)"
    else
        fail "d: roam-server malformed counter is $MALFORMED, want >= 1 (injected $injected)"
        show_log "${proc_log[server_echo]}"
    fi
fi

# ------------------------------------------------------------------------------ b
# kernel client in c -> roam-client (TUN in c) -> routed via r -> roam-server relay (TUN in
# s) -> kernel echo backend on 127.0.0.1 in s.

backend_port=5300
fwd="127.0.0.1:9000"
start_echo_backend backend "$backend_port"
if wait_listen s "127.0.0.1:$backend_port"; then
    pass "b: kernel echo backend listening on 127.0.0.1:$backend_port in $SERVER_NS"
else
    fail "b: kernel echo backend did not start"
    show_log "${proc_log[backend]}"
fi
start server_relay s "$roam_server" --link "tun:$TUN_NAME" --addr "$SERVER_LWIP_IP" \
    relay --backend "127.0.0.1:$backend_port"
start client c "$roam_client" --link "tun:$TUN_NAME" --addr "$CLIENT_LWIP_IP" \
    -L "$fwd:$SERVER_LWIP_IP:$carrier_port"
relay_up=1
if wait_log server_relay 'serving relay on port' 15; then
    pass "b: roam-server relay up"
else
    fail "b: roam-server relay did not start"
    show_log "${proc_log[server_relay]}"
    relay_up=0
fi
if wait_log client 'forwarding ' 15 && wait_listen c "$fwd"; then
    pass "b: roam-client forwarding $fwd -> $SERVER_LWIP_IP:$carrier_port"
else
    fail "b: roam-client did not start forwarding"
    show_log "${proc_log[client]}"
    relay_up=0
fi

if ((relay_up)); then
    echo_check "b: kernel -> roam-client -> TUN/router/TUN -> roam-server relay -> kernel backend, 32 MiB" \
        "$fwd" "$mib32" || { show_log "${proc_log[client]}"; show_log "${proc_log[server_relay]}"; }

    # -------------------------------------------------------------------------- c
    n=50
    bytes=$((1 << 20))
    pids=()
    for ((i = 0; i < n; i++)); do
        "$topology" exec "$name" c "$tcp_blast" echo-check --connect "$fwd" --bytes "$bytes" \
            --timeout 180 >"$logdir/conc.$i.out" 2>&1 &
        pids+=($!)
    done
    bad=0
    for ((i = 0; i < n; i++)); do
        if ! wait "${pids[$i]}" || ! grep -q "\"bytes\":$bytes,.*\"ok\":true" "$logdir/conc.$i.out"; then
            bad=$((bad + 1))
            ((bad > 3)) || echo "#   connection $i: $(tr '\n' ' ' <"$logdir/conc.$i.out")"
        fi
    done
    if ((bad == 0)); then
        pass "c: $n concurrent 1 MiB echo-checks through the forward, all byte-exact"
    else
        fail "c: $bad of $n concurrent 1 MiB echo-checks through the forward failed"
        show_log "${proc_log[client]}"
        show_log "${proc_log[server_relay]}"
    fi
fi

stop_roam client
stop_roam server_relay
if ((MALFORMED == 0)); then
    pass "e: roam-server relay counted no malformed packets from kernel TCP"
elif ((MALFORMED > 0)); then
    fail "e: roam-server relay counted $MALFORMED malformed packets from plain kernel TCP"
fi

# ------------------------------------------------------------------------------ f
# The path without offloads: the same forward and relay with `,no-offload` on both TUNs.

start server_plain s "$roam_server" --link "tun:$TUN_NAME,no-offload" --addr "$SERVER_LWIP_IP" \
    relay --backend "127.0.0.1:$backend_port"
start client_plain c "$roam_client" --link "tun:$TUN_NAME,no-offload" --addr "$CLIENT_LWIP_IP" \
    -L "$fwd:$SERVER_LWIP_IP:$carrier_port"
if wait_log server_plain 'offloads off' 15 && wait_log client_plain 'offloads off' 15 &&
    wait_listen c "$fwd"; then
    pass "f: roam-client and roam-server up on TUN without offloads"
    echo_check "f: kernel -> roam-client -> TUN (no offload) -> ... -> relay -> kernel backend, 32 MiB" \
        "$fwd" "$mib32" || { show_log "${proc_log[client_plain]}"; show_log "${proc_log[server_plain]}"; }
else
    fail "f: roam processes without offloads did not start"
    show_log "${proc_log[client_plain]}"
    show_log "${proc_log[server_plain]}"
fi
stop_roam client_plain
stop_roam server_plain

# ------------------------------------------------------------------------------ e
if [[ -n ${proc_pid[backend]-} ]]; then stop backend || true; fi

left=
for ns in "$CLIENT_NS" "$ROUTER_NS" "$SERVER_NS"; do
    pids_left=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
    if [[ -n ${pids_left// /} ]]; then
        left+=" $ns:[$pids_left]"
        for p in $pids_left; do left+=" $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null || true);"; done
    fi
done
if [[ -z $left ]]; then
    pass "e: no process left in the lab namespaces"
else
    fail "e: processes left in the lab namespaces:$left"
fi

if "$topology" down "$name" >>"$logdir/topology.log" 2>&1; then
    pass "topology down $name"
else
    fail "topology down $name"
fi

if ((failures)); then
    echo "# $failures check(s) failed"
    exit 1
fi
echo "# all checks passed"
