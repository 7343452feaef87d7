#!/usr/bin/env bash
# Tier-3 test of tools/netns/topology: brings a lab up, checks kernel reachability and a
# kernel TCP transfer through the router, checks that the TUN devices live only in the
# lab namespaces, and checks that `down` removes every namespace.
#
# Exit 77 (skipped) when not root or when `ip netns` is unavailable.
# Env: ROAMSTACK_ROOT  repository root (default: two levels above this script)
#      TCP_BLAST       tcp_blast binary (default $ROAMSTACK_ROOT/build/tools/bench/tcp_blast)
set -euo pipefail

root=${ROAMSTACK_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
topology="$root/tools/netns/topology"
tcp_blast=${TCP_BLAST:-$root/build/tools/bench/tcp_blast}

if [[ $EUID -ne 0 ]]; then echo "SKIP: needs root"; exit 77; fi
if ! command -v ip >/dev/null || ! ip netns list >/dev/null 2>&1; then
    echo "SKIP: 'ip netns' unavailable"
    exit 77
fi
[[ -x $tcp_blast ]] || { echo "FAIL: tcp_blast not found at $tcp_blast (set TCP_BLAST)"; exit 1; }

name="t$(printf '%05d' $(($$ % 100000)))"
failures=0
sink_pid=

cleanup() {
    local rc=$?
    if [[ -n $sink_pid ]]; then kill "$sink_pid" 2>/dev/null || true; wait "$sink_pid" 2>/dev/null || true; fi
    "$topology" down "$name" >/dev/null 2>&1 || true
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pass() { echo "ok   - $*"; }
fail() { echo "FAIL - $*"; failures=$((failures + 1)); }

ns_listed() { ip netns list | awk '{print $1}' | grep -qxF -- "$1"; }

# Kernel ICMP echo from inside a namespace: ping(8) when installed, else a raw-socket
# echo request from python3 (iputils-ping is not among tools/setup's packages).
kernel_ping() {
    local ns=$1 dst=$2
    if command -v ping >/dev/null; then
        ip netns exec "$ns" ping -c 2 -W 2 "$dst" >/dev/null
        return
    fi
    ip netns exec "$ns" python3 - "$dst" <<'EOF'
import os, select, socket, struct, sys, time
dst = sys.argv[1]
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF); s += s >> 16
    return ~s & 0xFFFF
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
ident, payload = os.getpid() & 0xFFFF, b"roamstack-topology-test"
for seq in range(1, 4):
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    sock.sendto(struct.pack("!BBHHH", 8, 0, csum(hdr + payload), ident, seq) + payload, (dst, 0))
    deadline = time.monotonic() + 2
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([sock], [], [], left)[0]: break
        pkt, addr = sock.recvfrom(2048)
        ihl = (pkt[0] & 0x0F) * 4
        typ, _, _, rid, rseq = struct.unpack("!BBHHH", pkt[ihl:ihl + 8])
        if addr[0] == dst and typ == 0 and rid == ident and rseq == seq:
            sys.exit(0)
sys.exit(1)
EOF
}

echo "# topology_test: lab '$name'"
root_links_before=$(ip -o link show | awk -F': ' '{print $2}' | sort)

if ! "$topology" up "$name"; then
    echo "FAIL - topology up $name"
    exit 1
fi
eval "$("$topology" env "$name")"
pass "topology up $name"

for ns in "$CLIENT_NS" "$ROUTER_NS" "$SERVER_NS"; do
    if ns_listed "$ns"; then pass "namespace $ns exists"; else fail "namespace $ns missing"; fi
done

if kernel_ping "$CLIENT_NS" "$SERVER_KERNEL_IP"; then
    pass "kernel ping $CLIENT_NS -> $SERVER_KERNEL_IP"
else
    fail "kernel ping $CLIENT_NS -> $SERVER_KERNEL_IP"
fi

# Kernel TCP c -> s through the router, 8 MiB.
bytes=$((8 << 20))
sink_out=$(mktemp)
"$topology" exec "$name" s "$tcp_blast" sink --listen "$SERVER_KERNEL_IP:5201" --timeout 30 >"$sink_out" &
sink_pid=$!
if send_out=$("$topology" exec "$name" c "$tcp_blast" send --connect "$SERVER_KERNEL_IP:5201" \
    --bytes "$bytes" --timeout 30) && wait "$sink_pid"; then
    sink_pid=
    if [[ $send_out == *"\"bytes\":$bytes,"* ]] && grep -q "\"bytes\":$bytes," "$sink_out"; then
        pass "kernel TCP $CLIENT_NS -> $SERVER_KERNEL_IP: $send_out"
    else
        fail "kernel TCP byte count: send '$send_out', sink '$(cat "$sink_out")'"
    fi
else
    fail "kernel TCP $CLIENT_NS -> $SERVER_KERNEL_IP (send: '${send_out-}')"
fi
if [[ -n $sink_pid ]]; then kill "$sink_pid" 2>/dev/null || true; wait "$sink_pid" 2>/dev/null || true; sink_pid=; fi
rm -f "$sink_out"

# TUN devices: in c and s, never in the root namespace.
for ns in "$CLIENT_NS" "$SERVER_NS"; do
    if ip -n "$ns" -d link show dev "$TUN_NAME" 2>/dev/null | grep -q 'tun type tun'; then
        pass "TUN $TUN_NAME exists in $ns"
    else
        fail "TUN $TUN_NAME missing in $ns"
    fi
done
if ip link show dev "$TUN_NAME" >/dev/null 2>&1; then
    fail "TUN $TUN_NAME present in the root namespace"
else
    pass "no $TUN_NAME in the root namespace"
fi
root_links_up=$(ip -o link show | awk -F': ' '{print $2}' | sort)
if [[ $root_links_up == "$root_links_before" ]]; then
    pass "root namespace links unchanged while the lab is up"
else
    fail "root namespace links changed: $(diff <(echo "$root_links_before") <(echo "$root_links_up") | tr '\n' ' ')"
fi

# down removes all three namespaces, and a second down still succeeds.
if "$topology" down "$name"; then pass "topology down $name"; else fail "topology down $name"; fi
left=
for ns in "$CLIENT_NS" "$ROUTER_NS" "$SERVER_NS"; do
    if ns_listed "$ns"; then left+=" $ns"; fi
done
if [[ -z $left ]]; then pass "all namespaces removed"; else fail "namespaces left behind:$left"; fi
if "$topology" down "$name"; then pass "second down is a no-op"; else fail "second down failed"; fi

if ((failures)); then
    echo "# $failures check(s) failed"
    exit 1
fi
echo "# all checks passed"
