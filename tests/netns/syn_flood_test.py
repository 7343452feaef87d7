#!/usr/bin/env python3
"""Legitimate connects under a spoofed SYN flood (issue 13), paced at 100 kSYN/s (FLOOD_RATE).

The lab (tools/netns/topology): roam-server echo on rtun0 in s (198.18.12.2:7000, default
--syn-cookies auto, flood detector warm-up cut to 3 s, rtun0's queue 20000 packets); a kernel echo listener in s on
198.18.2.1:8000 (the comparison); syn_flood in r sends SYNs from random 198.19.0.0/16
sources (inside 198.18.0.0/15) at FLOOD_RATE (an AF_PACKET socket on rs0 with
PACKET_QDISC_BYPASS), bounded by a count and a duration, and is stopped as soon as the
round's clients are done; a kernel client in c makes CONNECTS connects (20 at a time,
each with a generous bound of 10 s: four SYNs) and echoes a byte on each.

Asserted (success ratios only; no timing): every connect succeeds without a flood; under
the flood roam-server's listener (7000) and its channel port (7001, handshakes)
each let at least 99 % through, and 7000 no fewer than the kernel with
net.ipv4.tcp_syncookies=1 under the same flood in the same run; the flood detector raised
its alarm after the flood on 7000 began (its log line); the server turned cookies on.
Reported: the flood rate (the generator's own count; a note when under 100 kpps: the
machine is shared), the kernel with syncookies=1 and =0, and detect_ms (flood start to
the detector's alarm line), as a last JSON line.
Last, the retransmission check (first-SYN drop, --syn-retx-check): a second roam-server
with --syn-cookies on --syn-retx-check on answers no SYN's first copy; 20 kernel connects
under the same flood must all succeed, each thanks to its SYN retransmission (the server
counts at least 20 first copies dropped and 20 retransmissions answered). As root the
check runs in the kernel (tun/tun_syn_check.hpp): the server must say so, count at least
90 % of the flood's SYNs as dropped there, and rtun0 must have handed it fewer packets
than a tenth of the flood. The same round with --kernel-filter off (the check in
userspace) is the reference: there rtun0 hands it at least 90 % of the flood, also right
after a server with the check on was killed with SIGKILL (its program left on rtun0 is
taken off by the next server).
CONNECTS scales with ROAMSTACK_TEST_SCALE (at least 40).
Exit 0 passed, 1 failed, 77 skipped (not root, or no iproute2).
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns_lab  # noqa: E402
from netns_lab import ROAM_SERVER, Failure, log  # noqa: E402

SYN_FLOOD = os.environ.get("SYN_FLOOD", os.path.join(netns_lab.ROOT, "build", "tools", "bench", "syn_flood"))
SCALE = float(os.environ.get("ROAMSTACK_TEST_SCALE", "1.0"))
CONNECTS = int(os.environ.get("SYN_FLOOD_CONNECTS", str(max(40, int(100 * SCALE)))))
# The flood's bounds (it is stopped earlier, when the round's clients are done).
FLOOD_SECONDS = 15
FLOOD_COUNT = 5_000_000
# packet (AF_PACKET on rs0, the faster) or raw (a raw IP socket).
FLOOD_PATH = os.environ.get("SYN_FLOOD_PATH", "packet")
# Paced, the same for the kernel and roam-server: 110 kSYN/s (over the 100k floor), 30k in
# the sanitizer run (ROAMSTACK_TEST_SCALE < 1: every packet costs roam-server several times
# more there). At the generator's full rate (170-250k here) roam-server's one thread is the
# limit: 94 of 100 at 171k on this 2-core machine. That figure is the sensor bench's
# (tools/bench/run sensor, legit_success_flood at full rate), not a pass/fail of CI, whose
# machine is as shared as this one. SYN_FLOOD_RATE=0 floods as fast as the generator goes.
FLOOD_RATE = int(os.environ.get("SYN_FLOOD_RATE", "110000" if SCALE >= 1 else "30000"))
# A legitimate connect's bound: the kernel sends its SYN at 0, 1, 3 and 7 s, so 10 s is
# four tries (a machine loaded by other jobs drops SYNs at the TUN queue, flood or not);
# the kernel without syncookies, which fails them all, gets 4 s (reported only).
CONNECT_BOUND = 10
TUN_QUEUE = 20000
# off shows the test failing without the defense (development only).
COOKIES = os.environ.get("SYN_COOKIES_MODE", "auto")

# Kernel client in c: CONNECTS connects, 20 threads, each echoes one byte; prints JSON.
CLIENT = r"""
import json, socket, sys, threading
host, port, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
echo = sys.argv[4] == "echo"  # else: the handshake alone (the channel port speaks Noise)
bound = float(sys.argv[5])
ok = [0]
lock = threading.Lock()
def one():
    try:
        s = socket.create_connection((host, port), timeout=bound)
        if echo:
            s.sendall(b"x")
        if not echo or s.recv(1) == b"x":
            with lock:
                ok[0] += 1
        s.close()
    except OSError:
        pass
def worker(n):
    for _ in range(n):
        one()
threads = [threading.Thread(target=worker, args=(total // 20 + (1 if i < total % 20 else 0),)) for i in range(20)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps({"ok": ok[0], "total": total}))
"""

# Kernel echo listener in s (the comparison).
KERNEL_ECHO = r"""
import socket, threading
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("198.18.2.1", 8000))
srv.listen(128)
def serve(c):
    try:
        d = c.recv(1)
        if d: c.sendall(d)
    finally:
        c.close()
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


def connect_round(lab, host, port, total, flood=None, echo=True, bound=CONNECT_BOUND):
    """Runs the client with the flood (when given) running throughout; returns
    (ok, total, flood JSON or None, the flood's start as time.time())."""
    flood_proc = None
    started = None
    if flood:
        started = time.time()
        flood_proc = subprocess.Popen([netns_lab.TOPOLOGY, "exec", lab.name, "r", SYN_FLOOD] + flood,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)  # the flood is on before the first legitimate SYN
    try:
        out = lab.run_in("c", [sys.executable, "-c", CLIENT, host, str(port), str(total),
                               "echo" if echo else "connect", str(bound)], timeout=300)
    finally:
        flood_result = None
        if flood_proc:
            flood_proc.send_signal(signal.SIGTERM)  # ip netns exec passes it on (exec)
            text, err = flood_proc.communicate(timeout=30)
            if flood_proc.returncode != 0:
                raise Failure("syn_flood: exit %d: %s" % (flood_proc.returncode, err.strip()))
            flood_result = json.loads(text.strip().splitlines()[-1])
    if out.returncode != 0:
        raise Failure("client: exit %d: %s" % (out.returncode, out.stderr[-500:]))
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["ok"], result["total"], flood_result, started


def flood_args(dst, port):
    args = ["--dst", dst, "--port", str(port), "--sources", "198.19.0.0/16", "--duration", str(FLOOD_SECONDS),
            "--count", str(FLOOD_COUNT)]
    if FLOOD_RATE > 0:
        args += ["--rate", str(FLOOD_RATE)]
    if FLOOD_PATH == "packet":
        args += ["--ifname", "rs0"]
    return args


def counter(text, name):
    """A counter's value from the exit log's group lines ("defense: name N, ..."), 0 if absent."""
    values = re.findall(r"\b%s (\d+)" % re.escape(name), text)
    return int(values[-1]) if values else 0


def log_clock(line):
    """Seconds since midnight of a log line's HH:MM:SS.mmm stamp (local time), or None."""
    m = re.match(r"(\d\d):(\d\d):(\d\d)\.(\d\d\d) ", line)
    if not m:
        return None
    h, mi, sec, ms = (int(x) for x in m.groups())
    return h * 3600 + mi * 60 + sec + ms / 1000.0


def detector_alarm_ms(text, flood_started):
    """ms from flood_started (time.time()) to the first detector alarm line logged after it."""
    t = time.localtime(flood_started)
    start = t.tm_hour * 3600 + t.tm_min * 60 + t.tm_sec + (flood_started % 1)
    for line in text.splitlines():
        if "flood detector:" not in line or "against a baseline" not in line:
            continue
        clock = log_clock(line)
        if clock is None:
            continue
        delta = (clock - start + 43200) % 86400 - 43200  # across midnight
        if delta >= -0.001:  # log stamps are whole ms
            return max(0.0, delta * 1000.0)
    return None


def note_rate(name, flood):
    log("# %s: flood %d SYN/s (%s path, %d sent in %.1f s)" % (name, flood["pps"], flood.get("path", "raw"),
                                                              flood["sent"], flood["seconds"]))
    if flood["pps"] < 100_000:
        log("# note: under 100 kpps here (the machine is shared; the rate is reported, not asserted)")


def tun_delivered(lab):
    """Packets rtun0 (in s) has handed to its reader so far."""
    text = lab.run_in("s", ["ip", "-s", "-j", "link", "show", "rtun0"]).stdout
    return json.loads(text)[0]["stats64"]["tx"]["packets"]


def retx_round(lab, label, extra):
    """The --syn-retx-check on round; returns (ok, total, flood, first copies dropped in the
    kernel, in userspace, retransmissions answered, packets rtun0 delivered, log text)."""
    lab.start(label, "s", [ROAM_SERVER, "--link", "tun:rtun0", "--addr", "198.18.12.2", "--syn-cookies", "on",
                           "--syn-retx-check", "on"] + extra + ["echo"])
    lab.wait_log(label, "serving echo")
    before = tun_delivered(lab)
    ok, total, flood, _ = connect_round(lab, "198.18.12.2", 7000, 20, flood_args("198.18.12.2", 7000))
    delivered = tun_delivered(lab) - before
    lab.stop_cleanly([label])
    text = lab.log_text(label)
    return (ok, total, flood, counter(text, "syn_first_dropped_kernel"), counter(text, "syn_first_dropped"),
            counter(text, "syn_retx_answered"), delivered, text)


def main(lab):
    if not os.path.exists(SYN_FLOOD):
        raise Failure("no syn_flood binary at %s (build tools/bench)" % SYN_FLOOD)
    lab.start("server", "s", [ROAM_SERVER, "--link", "tun:rtun0", "--addr", "198.18.12.2", "--syn-cookies", COOKIES,
                              "--flood-detector-warmup", "3", "echo"])
    lab.wait_log("server", "serving echo")
    # The TUN's queue toward roam-server holds 500 packets by default: at tens of kSYN/s a
    # scheduling stall of a few ms on a loaded machine overflows it and drops legitimate
    # SYNs with the flood. A server sized for floods gets a longer queue (this namespace's
    # device only).
    netns_lab.run_tool([netns_lab.TOPOLOGY, "exec", lab.name, "s", "ip", "link", "set", "rtun0", "txqueuelen",
                        str(TUN_QUEUE)], "txqueuelen")
    lab.start("kernel_echo", "s", [sys.executable, "-c", KERNEL_ECHO])

    ok, total, _, _ = connect_round(lab, "198.18.12.2", 7000, 20)
    if ok != total:
        raise Failure("without a flood only %d of %d connects succeeded" % (ok, total))
    log("ok   - without a flood: %d of %d connects" % (ok, total))
    netns_lab.wait_until(lambda: lab.run_in("c", [sys.executable, "-c",
                         "import socket; socket.create_connection(('198.18.2.1', 8000), timeout=1)"]).returncode == 0,
                         10, "kernel echo listener up")

    # The kernel first (meanwhile the detector's warm-up ends on a quiet baseline).
    report = {}
    for cookies, key in ((1, "legit_success_kernel_cookies"), (0, "legit_success_kernel_nocookies")):
        netns_lab.run_tool([netns_lab.TOPOLOGY, "exec", lab.name, "s", "sysctl", "-q", "-w",
                            "net.ipv4.tcp_syncookies=%d" % cookies], "sysctl")
        n = CONNECTS if cookies else 20
        ok, total, flood, _ = connect_round(lab, "198.18.2.1", 8000, n, flood_args("198.18.2.1", 8000),
                                            bound=CONNECT_BOUND if cookies else 4)
        report[key] = ok / total
        note_rate("kernel, syncookies=%d" % cookies, flood)
        log("# kernel, syncookies=%d: %d of %d connects (reported)" % (cookies, ok, total))

    ok, total, flood, started = connect_round(lab, "198.18.12.2", 7000, CONNECTS, flood_args("198.18.12.2", 7000))
    note_rate("roam-server", flood)
    report["legit_success_flood"] = ok / total
    report["flood_pps"] = flood["pps"]
    if ok * 100 < total * 99:
        raise Failure("under a flood of %d SYNs/s only %d of %d connects succeeded" % (flood["pps"], ok, total))
    log("ok   - roam-server under the flood: %d of %d connects (>= 99 %%)" % (ok, total))
    if report["legit_success_flood"] < report["legit_success_kernel_cookies"]:
        raise Failure("roam-server let %.1f %% through, the kernel with syncookies=1 %.1f %%"
                      % (100 * report["legit_success_flood"], 100 * report["legit_success_kernel_cookies"]))
    log("ok   - not worse than the kernel with syncookies=1 (%.1f %% vs %.1f %%)"
        % (100 * report["legit_success_flood"], 100 * report["legit_success_kernel_cookies"]))

    # The channel port (7001) is an lwIP listener too: clients must still get a channel.
    ok, total, flood, _ = connect_round(lab, "198.18.12.2", 7001, max(20, CONNECTS // 2),
                                        flood_args("198.18.12.2", 7001), echo=False)
    note_rate("channel port", flood)
    report["legit_success_channel"] = ok / total
    if ok * 100 < total * 99:
        raise Failure("channel port under a flood of %d SYNs/s: only %d of %d handshakes" % (flood["pps"], ok, total))
    log("ok   - channel port under the flood: %d of %d handshakes (>= 99 %%)" % (ok, total))

    lab.stop_cleanly(["server"])
    text = lab.log_text("server")
    counters = [line for line in text.splitlines() if "defense:" in line]
    log("# " + (counters[-1].split("defense:", 1)[1].strip() if counters else "no defense counters logged"))
    if COOKIES == "auto" and "SYN cookies on" not in text:
        raise Failure("the server never logged that it turned SYN cookies on")
    log("ok   - the server turned SYN cookies on (%s mode)" % COOKIES)
    detect = detector_alarm_ms(text, started)
    if detect is None:
        raise Failure("the flood detector raised no alarm after the flood on 7000 began")
    report["detect_ms"] = round(detect, 1)
    log("ok   - the flood detector alarmed %.0f ms after the flood began (reported, not asserted)" % detect)
    report["syn_first_dropped_auto"] = counter(text, "syn_first_dropped")
    report["syn_retx_answered_auto"] = counter(text, "syn_retx_answered")

    report["syn_first_dropped_kernel_auto"] = counter(text, "syn_first_dropped_kernel")

    # First-SYN drop, always on: no first copy is answered, so every connect that succeeds
    # did so on a retransmitted SYN (the kernel resends it with the same ISN after 1 s).
    # Once with the check in the kernel (the default as root), once in userspace.
    for label, extra in (("server_retx", []), ("server_retx_userspace", ["--kernel-filter", "off"])):
        if extra:
            # A server killed with its check on leaves the program on the persistent rtun0;
            # the next one must take it off (TunLink::start), or this round's flood would
            # still be dropped in the kernel.
            lab.start("server_killed", "s", [ROAM_SERVER, "--link", "tun:rtun0", "--addr", "198.18.12.2",
                                             "--syn-cookies", "on", "--syn-retx-check", "on", "echo"])
            lab.wait_log("server_killed", "first SYN copies now dropped in the kernel")
            lab.procs["server_killed"].send_signal(signal.SIGKILL)
            lab.procs["server_killed"].wait(15)
            log("ok   - a server with the check on in the kernel killed with SIGKILL")
        ok, total, flood, in_kernel, in_user, answered, delivered, text = retx_round(lab, label, extra)
        where = "in the kernel" if not extra else "in userspace"
        note_rate("roam-server, --syn-retx-check on, check %s" % where, flood)
        first = in_kernel + in_user
        report["legit_success_retx_on" + ("" if not extra else "_userspace")] = ok / total
        if ok != total:
            raise Failure("--syn-retx-check on (%s) under a flood of %d SYNs/s: only %d of %d connects"
                          % (where, flood["pps"], ok, total))
        if first < total or answered < total:
            raise Failure("--syn-retx-check on (%s): %d first copies dropped, %d retransmissions answered; want >= %d "
                          "each" % (where, first, answered, total))
        log("ok   - first-SYN drop on, %s: %d of %d connects under the flood on their retransmission (%d first "
            "copies dropped, %d of them in the kernel; %d retransmissions answered; rtun0 handed over %d packets of "
            "%d flooded)" % (where, ok, total, first, in_kernel, answered, delivered, flood["sent"]))
        report["tun_delivered_retx_on" + ("" if not extra else "_userspace")] = delivered
        if not extra:
            if "first SYN copies checked in the kernel" not in text:
                raise Failure("the check did not run in the kernel: %s" % [
                    line for line in text.splitlines() if "first SYN copies" in line])
            if in_kernel < 0.9 * flood["sent"] or delivered * 10 > flood["sent"]:
                raise Failure("the kernel dropped %d of %d flooded SYNs and rtun0 still handed over %d packets; want "
                              ">= 90 %% dropped, < 10 %% handed over" % (in_kernel, flood["sent"], delivered))
            log("ok   - the kernel dropped %.1f %% of the flood before roam-server read it" %
                (100.0 * in_kernel / flood["sent"]))
        else:
            if in_kernel != 0 or delivered < 0.9 * flood["sent"]:
                raise Failure("--kernel-filter off: %d dropped in the kernel, rtun0 handed over %d of %d"
                              % (in_kernel, delivered, flood["sent"]))
            log("ok   - with the check in userspace rtun0 handed roam-server %.1f %% of the flood"
                % (100.0 * delivered / flood["sent"]))
    log(json.dumps(report))


if __name__ == "__main__":
    netns_lab.run("sf", main)
