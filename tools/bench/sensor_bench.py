#!/usr/bin/env python3
"""The Migration Sensor (issue 13, seed 004): 004's Tables 3-5 and its detector, ours
beside theirs, in one run.

Part 1, the proxy lab (tests/netns/proxy_lab.py: roam-client in c behind the strict NAT of
r -> proxy A in s -> origin in o -> a python backend on the origin's loopback; the kernel
reference reaches the same backend at 198.18.4.1:7070 through the same NAT):
  connect_ms_proxy, connect_ms_kernel, connect_overhead_ratio
                        Table 3: connect() + the backend's first byte through the proxy
                        and directly; medians of 20 x --reps, interleaved (the measurement
                        of tools/bench/proxy_bench.py). Theirs: 47.4 vs 15.8 ms, 3.0.
  download_ms_proxy, download_ms_kernel, download_overhead_ratio
                        Table 4: --download-runs downloads of --download-kib KiB (default
                        8192: twice lwIP's 4 MiB window, "larger than the window") each way,
                        interleaved in groups of 5, each MD5-checked against the expected
                        digest (download_md5_ok counts them); connect to EOF, medians
                        (means too). Theirs: 760 KB, 1956.0 vs 1902.3 ms, 1.029.
Part 2, the flood lab (tests/netns/syn_flood_test.py's: roam-server echo in s on rtun0
198.18.12.2:7000, a kernel echo listener in s on 198.18.2.1:8000, tools/bench/syn_flood in
r at full rate through AF_PACKET on rs0 (rtun0's queue 20000 packets, as the test's),
spoofed sources 198.19.0.0/16, bounded by a count
and a duration and stopped when the round's clients are done; --connects kernel clients in
c, 20 at a time, each bounded by --connect-bound (4 s: three SYNs), each echoing a byte):
  legit_success_flood   Table 5 for ours: roam-server --syn-cookies auto (cookies; the
                        retransmission check --syn-retx-check auto, the default: while
                        the link is busy a SYN is answered only on its retransmission;
                        as root that check runs in the kernel, tun/tun_syn_check.hpp).
  legit_success_flood_userspace_check
                        the same with --kernel-filter off: the check in userspace, every
                        flooded SYN read by roam-server (io_uring batches), same run: the
                        reference the kernel check replaces.
  legit_success_flood_no_uring
                        the same with --kernel-filter off and --link tun:rtun0,no-uring
                        (one read() per packet, the reads before io_uring batches).
  legit_success_flood_retx_off
                        the same with --syn-retx-check off (every SYN within the budget
                        answered on its first copy), same run.
  syn_first_dropped_by_round, syn_retx_answered_by_round, syn_first_dropped_kernel_by_round
                        roam-server's counters of the check, per round (from its exit log).
  legit_success_flood_no_budget
                        the same with --synack-budget 0 (every flooded SYN answered: no
                        per-prefix SYN-ACK budget), same run.
  legit_success_checker_P
                        --syn-cookies checker --syn-checker-probability P (seed 004's SYN
                        checker, stateful through lwIP), P in --checker (default 100 75 50
                        25, Table 5's columns). Theirs: 2.4 2.2 1.3 0.3 % handshakes.
  legit_success_kernel_cookies, legit_success_kernel_nocookies
                        the kernel listener with net.ipv4.tcp_syncookies=1 and =0.
  flood_pps             the generator's rate in the cookie round (each round's in
                        flood_pps_by_round); the machine is shared, so it varies.
  legit_success_flood_at_paper_pps, legit_success_checker_P_at_paper_pps
                        the same roam rounds with the flood paced at --paper-pps (default
                        1000 SYN/s, 004's hping3 rate; 0: not run): like for like.
  legit_success_by_rate per --rates (default 110000,220000,330000,440000 SYN/s): the
                        kernel with syncookies=1 and roam-server (--syn-cookies auto) with
                        the flood paced at the same rate, same run; with the rates sent and
                        roam_tun_dropped, the packets rtun0 dropped because its queue toward
                        roam-server was full (tun_dropped_by_round: every roam round's).
  server_cpu_seconds_by_round
                        roam-server's CPU time (user + system, /proc) during each roam
                        round: what the flood cost its process.
  tun_queue_dropped_by_round
                        rtun0's drops (tun_dropped_by_round, which also counts what the
                        kernel's SYN check dropped) less the check's own drops
                        (syn_first_dropped_kernel_by_round): packets lost because
                        roam-server did not read fast enough.
  server_cpu_us_per_packet_by_round
                        roam-server's CPU time (user + system, /proc) during each roam
                        round over the packets rtun0 delivered to it: what one flood packet
                        cost at that round's rate (a busier reader reads bigger batches
                        and pays less per packet, so this is no capacity figure).
  detect_ms             the flood detector (--flood-detector-warmup cut to 3 s, waited
                        out): from the flood's start (the generator's launch) to the
                        alarm's log line, median over the roam rounds (detect_ms_samples, by round).
                        004 gives no latency (its detector is a hand-set threshold).
Part 3, the attack drill: tests/netns/sensor_drill_test.py (issue 13's drill, built by
another change) when it exists: drill_byte_exact is its verdict (its last JSON line's
drill_byte_exact, else its exit status); until then null with "drill": "not available".

One PNG per table beside the paper's values goes to --png DIR (default
build-bench/sensor-plots): python3-matplotlib, or /usr/bin/python3's when the python3 on
PATH has none. The last line of stdout is one JSON object; notes go to stderr. A part that
fails is reported in "errors" and the others are still measured. Exit 0 when every
download was MD5-exact and nothing failed, else 1; 77 when not root.
"""
import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "netns"))
sys.path.insert(0, HERE)

# The paper's figures (seed 004, Tables 3-5).
PAPER = {
    "connect_ms": {"without MS (direct)": 15.8, "with MS (proxy 1)": 47.4},
    "download_ms": {"without MS (direct)": 1902.3, "with MS (proxy 1)": 1956.0},
    "handshake_success": {"p=1": 0.024, "p=0.75": 0.022, "p=0.5": 0.013, "p=0.25": 0.003},
}
DRILL_TEST = os.path.join(ROOT, "tests", "netns", "sensor_drill_test.py")

# In namespace c: RUNS downloads of BYTES (BLAST BYTES SEED) from HOST:PORT, one line each:
# "dl MS MD5" (connect to EOF).
DOWNLOAD = r"""
import hashlib, socket, sys, time
host, port, n, seed, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
buf = bytearray(1 << 20)
for _ in range(runs):
    t = time.monotonic()
    s = socket.create_connection((host, port), timeout=30)
    s.settimeout(60)
    if s.recv(1) != b"h":
        raise SystemExit("no first byte")
    s.sendall(b"BLAST %d %d\n" % (n, seed))
    h, got = hashlib.md5(), 0
    while True:
        k = s.recv_into(buf)
        if not k:
            break
        h.update(memoryview(buf)[:k])
        got += k
    dt = time.monotonic() - t
    s.close()
    print("dl %.3f %s %d" % (dt * 1000, h.hexdigest(), got), flush=True)
    time.sleep(0.02)
"""


def note(*args):
    print("[sensor]", *args, file=sys.stderr, flush=True)


def expected_md5(size, seed):
    """The proxy lab backend's BLAST: random.Random(seed).randbytes(1 MiB), over and over."""
    block, h, left = random.Random(seed).randbytes(1 << 20), hashlib.md5(), size
    while left:
        k = min(len(block), left)
        h.update(block[:k])
        left -= k
    return h.hexdigest()


# ---------------------------------------------------------------- part 1: the proxy lab

def proxy_part(args, out, md5_ok):
    import netns_lab
    import proxy_bench
    import proxy_lab
    from netns_lab import Failure

    name = args.proxy_lab
    workdir = tempfile.mkdtemp(prefix="roam-sensor-proxy-")
    lab = netns_lab.Lab(name, workdir)
    failed = False
    try:
        up = subprocess.run([netns_lab.TOPOLOGY, "up", name, "--origin"], capture_output=True, text=True)
        if up.returncode != 0:
            raise Failure("topology up: " + up.stderr)
        lab.start("backend", "o", [sys.executable, "-u", "-c", proxy_lab.BACKEND, str(proxy_bench.BACKEND_PORT)])
        lab.wait_log("backend", "listening")
        plab = proxy_lab.ProxyLab(lab, proxy_bench.BACKEND_PORT)
        plab.start()
        for part, figure in (("connect", lambda: proxy_bench.connect_figures(lab, args.reps, out)),
                             ("download", lambda: download_figures(lab, args, out, md5_ok))):
            try:
                figure()
            except (Failure, subprocess.TimeoutExpired, ValueError) as e:
                out.setdefault("errors", {})[part] = str(e)[:1000]
                note("FAILED %s: %s" % (part, e))
                failed = True
        plab.stop()
    except (Failure, subprocess.TimeoutExpired) as e:
        out.setdefault("errors", {})["proxy_lab"] = str(e)[:1000]
        note("FAILED proxy lab: %s" % e)
        failed = True
    finally:
        take_down(lab, name, workdir, args.keep_logs or failed, "proxy")
    return not failed


def download_figures(lab, args, out, md5_ok):
    import proxy_bench
    from netns_lab import Failure
    from proxy_lab import LPORT, ORIGIN_KERNEL, end, spawn_in

    size = args.download_kib * 1024
    want = expected_md5(size, 7)
    times = {"kernel": [], "proxy": []}
    group = 5
    done = 0
    while done < args.download_runs:
        k = min(group, args.download_runs - done)
        for side, host, port in (("kernel", ORIGIN_KERNEL, proxy_bench.BACKEND_PORT), ("proxy", "127.0.0.1", LPORT)):
            p = spawn_in(lab, "c", [sys.executable, "-c", DOWNLOAD, host, str(port), str(size), "7", str(k)],
                         stdin=False)
            try:
                text, _ = p.communicate(timeout=300)
            finally:
                end(p)
            lines = [line.split() for line in text.splitlines() if line.startswith("dl ")]
            if p.returncode != 0 or len(lines) != k:
                raise Failure("download %s: exit %s: %s" % (side, p.returncode, text.strip()[-500:]))
            for _, ms, digest, got in lines:
                ok = digest == want and int(got) == size
                if side == "proxy":
                    md5_ok.append(ok)
                if not ok:
                    raise Failure("%s download: %s bytes, md5 %s; want %d, %s" % (side, got, digest, size, want))
                times[side].append(float(ms))
        done += k
    for side in ("kernel", "proxy"):
        out["download_ms_" + side] = round(statistics.median(times[side]), 3)
        out["download_ms_mean_" + side] = round(statistics.mean(times[side]), 3)
    out["download_overhead_ratio"] = round(out["download_ms_proxy"] / out["download_ms_kernel"], 4)
    out["download_overhead_ratio_of_means"] = round(out["download_ms_mean_proxy"] / out["download_ms_mean_kernel"], 4)
    out["download_md5_ok"] = "%d/%d" % (sum(md5_ok), len(md5_ok))
    note("download %d KiB x %d: proxy %.1f ms, kernel %.1f ms (medians), md5 %s" % (
        args.download_kib, args.download_runs, out["download_ms_proxy"], out["download_ms_kernel"],
        out["download_md5_ok"]))


# ---------------------------------------------------------------- part 2: the flood lab

def flood_part(args, out):
    import netns_lab
    import syn_flood_test as sft
    from netns_lab import ROAM_SERVER, Failure

    # The test paces its flood (CI's machine is shared); the bench measures the generator's
    # full rate unless a round asks for one (--paper-pps).
    sft.FLOOD_RATE = 0
    name = args.flood_lab
    workdir = tempfile.mkdtemp(prefix="roam-sensor-flood-")
    lab = netns_lab.Lab(name, workdir)
    failed = False
    rates = {}
    detects = {}
    retx = {"syn_first_dropped": {}, "syn_retx_answered": {}, "syn_first_dropped_kernel": {}}
    # rtun0's own counters in s: packets the kernel queued toward roam-server (tx) and those
    # it dropped because the queue was full (roam-server did not read fast enough).
    tun_dropped = {}
    tun_delivered = {}
    cpu_per_packet = {}
    cpu_seconds = {}

    def tun_queue_counts():
        text = lab.run_in("s", ["ip", "-s", "-j", "link", "show", "rtun0"]).stdout
        tx = json.loads(text)[0]["stats64"]["tx"]
        return tx["packets"], tx["dropped"]

    def server_round(label, mode_args, pps=0, link="tun:rtun0"):
        warmup = 3
        lab.start(label, "s", [ROAM_SERVER, "--link", link, "--addr", "198.18.12.2",
                               "--flood-detector-warmup", str(warmup)] + mode_args + ["echo"])
        lab.wait_log(label, "serving echo")
        time.sleep(warmup + 0.5)  # the detector's warm-up, on a quiet baseline
        flood_args = sft.flood_args("198.18.12.2", 7000) + (["--rate", str(pps)] if pps else [])
        before = tun_queue_counts()
        cpu_before = process_cpu_seconds(lab.procs[label].pid)
        ok, total, flood, started = sft.connect_round(lab, "198.18.12.2", 7000, args.connects, flood_args,
                                                      bound=args.connect_bound)
        cpu_after = process_cpu_seconds(lab.procs[label].pid)
        after = tun_queue_counts()
        tun_dropped[label] = after[1] - before[1]
        tun_delivered[label] = after[0] - before[0]
        if cpu_before is not None and cpu_after is not None:
            cpu_seconds[label] = round(cpu_after - cpu_before, 2)
            if tun_delivered[label] > 0:
                cpu_per_packet[label] = round((cpu_after - cpu_before) * 1e6 / tun_delivered[label], 3)
        lab.stop_cleanly([label])
        for name in retx:
            retx[name][label] = sft.counter(lab.log_text(label), name)
        detect = sft.detector_alarm_ms(lab.log_text(label), started)
        if detect is not None:
            detects[label] = round(detect, 1)
        rates[label] = flood["pps"]
        note("%s: %d of %d connects under %d SYN/s; detector alarm %s" % (
            label, ok, total, flood["pps"], "after %.0f ms" % detect if detect is not None else "none"))
        return ok / total

    try:
        up = subprocess.run([netns_lab.TOPOLOGY, "up", name], capture_output=True, text=True)
        if up.returncode != 0:
            raise Failure("topology up: " + up.stderr)
        # As the netns test: rtun0's queue toward roam-server sized for floods.
        netns_lab.run_tool([netns_lab.TOPOLOGY, "exec", name, "s", "ip", "link", "set", "rtun0", "txqueuelen",
                            str(sft.TUN_QUEUE)], "txqueuelen")
        lab.start("kernel_echo", "s", [sys.executable, "-c", sft.KERNEL_ECHO])
        netns_lab.wait_until(lambda: lab.run_in("c", [sys.executable, "-c",
                             "import socket; socket.create_connection(('198.18.2.1', 8000), timeout=1)"]).returncode
                             == 0, 10, "kernel echo listener up")
        for cookies, key in ((1, "legit_success_kernel_cookies"), (0, "legit_success_kernel_nocookies")):
            netns_lab.run_tool([netns_lab.TOPOLOGY, "exec", name, "s", "sysctl", "-q", "-w",
                                "net.ipv4.tcp_syncookies=%d" % cookies], "sysctl")
            ok, total, flood, _ = sft.connect_round(lab, "198.18.2.1", 8000, args.connects,
                                                    sft.flood_args("198.18.2.1", 8000), bound=args.connect_bound)
            out[key] = round(ok / total, 4)
            rates["kernel_syncookies_%d" % cookies] = flood["pps"]
            note("kernel syncookies=%d: %d of %d connects under %d SYN/s" % (cookies, ok, total, flood["pps"]))
        out["legit_success_flood"] = round(server_round("cookies", ["--syn-cookies", "auto"]), 4)
        out["flood_pps"] = rates["cookies"]
        # The baseline the kernel's check replaces: the same check in userspace, every
        # flooded SYN read (io_uring batches).
        out["legit_success_flood_userspace_check"] = round(server_round(
            "cookies_userspace_check", ["--syn-cookies", "auto", "--kernel-filter", "off"]), 4)
        # The baseline io_uring reads replace (--link tun:rtun0,no-uring: one read() per
        # packet), same run: how much of the full-rate loss was system calls.
        out["legit_success_flood_no_uring"] = round(server_round(
            "cookies_no_uring", ["--syn-cookies", "auto", "--kernel-filter", "off"], link="tun:rtun0,no-uring"), 4)
        # The same without the retransmission check: every SYN within the budget answered.
        out["legit_success_flood_retx_off"] = round(server_round(
            "cookies_retx_off", ["--syn-cookies", "auto", "--syn-retx-check", "off"]), 4)
        # The same without the SYN-ACK budget (--synack-budget 0): every flooded SYN answered.
        out["legit_success_flood_no_budget"] = round(server_round(
            "cookies_no_budget", ["--syn-cookies", "auto", "--synack-budget", "0"]), 4)
        for p in args.checker:
            out["legit_success_checker_%d" % p] = round(server_round(
                "checker_%d" % p, ["--syn-cookies", "checker", "--syn-checker-probability", str(p)]), 4)
        # Paced rounds: the kernel with syncookies=1 and roam-server at the same offered rates
        # (the full-rate rounds above are not at equal rates: the kernel's cookies run in
        # the flood's own softirq and slow the generator, roam-server's TUN queue does not).
        by_rate = {}
        for rate in args.rates:
            netns_lab.run_tool([netns_lab.TOPOLOGY, "exec", name, "s", "sysctl", "-q", "-w",
                                "net.ipv4.tcp_syncookies=1"], "sysctl")
            ok, total, flood, _ = sft.connect_round(lab, "198.18.2.1", 8000, args.connects,
                                                    sft.flood_args("198.18.2.1", 8000) + ["--rate", str(rate)],
                                                    bound=args.connect_bound)
            note("kernel syncookies=1 at %d SYN/s: %d of %d connects (%d SYN/s sent)" % (rate, ok, total,
                                                                                          flood["pps"]))
            label = "cookies_at_%d" % rate
            roam = server_round(label, ["--syn-cookies", "auto"], rate)
            by_rate[str(rate)] = {"roam": round(roam, 4), "kernel_cookies": round(ok / total, 4),
                                  "roam_pps": rates[label], "kernel_pps": flood["pps"],
                                  "roam_tun_dropped": tun_dropped[label]}
        if by_rate:
            out["legit_success_by_rate"] = by_rate
        if args.paper_pps:
            # 004's own rate (hping3, one SYN every 1000 us): like for like with Table 5.
            out["paper_pps"] = args.paper_pps
            out["legit_success_flood_at_paper_pps"] = round(server_round(
                "cookies_paper_pps", ["--syn-cookies", "auto"], args.paper_pps), 4)
            for p in args.checker:
                out["legit_success_checker_%d_at_paper_pps" % p] = round(server_round(
                    "checker_%d_paper_pps" % p, ["--syn-cookies", "checker", "--syn-checker-probability", str(p)],
                    args.paper_pps), 4)
    except (Failure, subprocess.TimeoutExpired, OSError, KeyError, ValueError) as e:
        out.setdefault("errors", {})["flood"] = str(e)[:1000]
        note("FAILED flood lab: %s" % e)
        failed = True
    finally:
        take_down(lab, name, workdir, args.keep_logs or failed, "flood")
    out["flood_pps_by_round"] = rates
    out["tun_dropped_by_round"] = tun_dropped
    out["tun_delivered_by_round"] = tun_delivered
    out["server_cpu_us_per_packet_by_round"] = cpu_per_packet
    out["server_cpu_seconds_by_round"] = cpu_seconds
    out["tun_queue_dropped_by_round"] = {
        label: max(0, dropped - retx["syn_first_dropped_kernel"].get(label, 0)) for label, dropped in tun_dropped.items()}
    for name, by_round in retx.items():
        out[name + "_by_round"] = by_round
    out["detect_ms_samples"] = detects
    out["detect_ms"] = statistics.median(detects.values()) if detects else None
    return not failed


def process_cpu_seconds(pid):
    """User + system CPU seconds of process pid, all its threads (/proc/PID/stat), or None
    when it is gone or is not roam-server (the lab's launcher execs it, so the pids match)."""
    try:
        with open("/proc/%d/comm" % pid) as f:
            if f.read().strip() != "roam-server":
                return None
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # Fields 14 and 15 of stat (utime, stime), counted from the state field (3).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- part 3: the drill

def take_down(lab, name, workdir, keep, what):
    """Stops a lab's processes, removes its namespaces; its logs stay when asked or failed."""
    import netns_lab  # on the path the parts set up (tests/netns)
    lab.kill_all()
    subprocess.run([netns_lab.TOPOLOGY, "down", name], capture_output=True)
    if keep:
        note("%s lab logs kept in %s" % (what, workdir))
    else:
        shutil.rmtree(workdir, ignore_errors=True)


def drill_part(out):
    """The attack drill's verdict, from tests/netns/sensor_drill_test.py when it exists."""
    if not os.path.exists(DRILL_TEST):
        out["drill_byte_exact"] = None
        out["drill"] = "not available"
        return True
    p = subprocess.run([sys.executable, DRILL_TEST], capture_output=True, text=True, timeout=600)
    verdict = None
    for line in reversed(p.stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                report = json.loads(line)
            except ValueError:
                break
            verdict = report.get("drill_byte_exact")
            # The drill's own timings, beside the flood rounds' detect_ms.
            for key in ("detect_ms", "inform_ms", "flood_pps", "drill_bytes", "whitelist_drops_a", "whitelist_drops_b"):
                if key in report:
                    out["drill_" + key if not key.startswith("drill_") else key] = report[key]
            break
    if p.returncode == 77:
        out["drill_byte_exact"] = None
        out["drill"] = "skipped"
        return True
    if verdict is None:
        verdict = p.returncode == 0
    out["drill_byte_exact"] = bool(verdict) and p.returncode == 0
    out["drill"] = "passed" if p.returncode == 0 else "failed (exit %d)" % p.returncode
    note("drill: %s" % out["drill"])
    return p.returncode == 0


# ---------------------------------------------------------------- plots

def plot(out, directory):
    """One PNG per table, ours beside theirs; returns the paths written."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(directory, exist_ok=True)
    written = []

    def bars(filename, title, ylabel, groups, percent=False):
        # groups: [(group label, [(bar label, value or None, colour)])]
        fig, ax = plt.subplots(figsize=(max(8, 0.6 * sum(len(items) + 1 for _, items in groups)), 4.5))
        x, ticks, labels = 0.0, [], []
        for group, items in groups:
            start = x
            for label, value, colour in items:
                v = 0.0 if value is None else (100 * value if percent else value)
                ax.bar(x, v, width=0.8, color=colour)
                text = "n/a" if value is None else ("%.1f %%" % v if percent else "%.3g" % v)
                ax.text(x, v, text, ha="center", va="bottom", fontsize=8)
                ticks.append(x)
                labels.append(label)
                x += 1
            ax.text((start + x - 1) / 2, -0.18, group, ha="center", va="top", transform=ax.get_xaxis_transform(),
                    fontsize=9, fontweight="bold")
            x += 0.8
        ax.set_xticks(ticks)
        ax.set_xticklabels(labels, fontsize=8, rotation=20, ha="right")
        ax.set_ylabel(ylabel + (" (%)" if percent else ""))
        ax.set_title(title)
        fig.subplots_adjust(bottom=0.25)
        path = os.path.join(directory, filename)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)

    theirs, ours, other = "#999999", "#1f77b4", "#ff7f0e"
    bars("table3_connect.png", "Table 3: new connection (004: SSH through MS; ours: connect + first byte)", "ms",
         [("seed 004", [(k, v, theirs) for k, v in PAPER["connect_ms"].items()]),
          ("Roamstack (median)", [("kernel direct", out.get("connect_ms_kernel"), ours),
                                  ("through the proxy", out.get("connect_ms_proxy"), ours)])])
    bars("table4_download.png", "Table 4: download (004: 760 KB; ours: %d KiB, MD5-checked)" % out["download_kib"],
         "ms", [("seed 004", [(k, v, theirs) for k, v in PAPER["download_ms"].items()]),
                ("Roamstack (median)", [("kernel direct", out.get("download_ms_kernel"), ours),
                                        ("through the proxy", out.get("download_ms_proxy"), ours)])])
    checker = [("checker p=%g" % (p / 100), out.get("legit_success_checker_%d" % p), other) for p in out["checker"]]
    paper_rate = []
    if out.get("paper_pps"):
        paper_rate = [("Roamstack at %d SYN/s" % out["paper_pps"],
                       [("SYN cookies", out.get("legit_success_flood_at_paper_pps"), ours)]
                       + [("checker p=%g" % (p / 100), out.get("legit_success_checker_%d_at_paper_pps" % p), other)
                          for p in out["checker"]])]
    bars("table5_flood.png", "Table 5: handshake success under a SYN flood (ours at %s SYN/s)" % out.get("flood_pps"),
         "success", [("seed 004 (SYN checker)", [(k, v, theirs) for k, v in PAPER["handshake_success"].items()]),
                     ("Roamstack, full rate", [("SYN cookies", out.get("legit_success_flood"), ours),
                                               ("cookies, retx check off", out.get("legit_success_flood_retx_off"), ours)]
                      + checker),
                     ("kernel", [("syncookies=1", out.get("legit_success_kernel_cookies"), other),
                                 ("syncookies=0", out.get("legit_success_kernel_nocookies"), other)])]
         + paper_rate, percent=True)
    bars("detection.png", "Detection latency: flood start to the detector's alarm (004: none reported)", "ms",
         [("Roamstack", [(k, v, ours) for k, v in (out.get("detect_ms_samples") or {}).items()]
           or [("no alarm", None, ours)])])
    return written


def write_plots(out, directory):
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        system = "/usr/bin/python3"
        if os.path.realpath(sys.executable) == os.path.realpath(system) or not os.path.exists(system):
            note("no matplotlib (python3-matplotlib): no plots")
            return []
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(out, f)
        try:
            p = subprocess.run([system, os.path.abspath(__file__), "--plot-only", f.name, "--png", directory],
                               capture_output=True, text=True, timeout=120)
        finally:
            os.unlink(f.name)
        if p.returncode != 0:
            note("plotting failed: %s" % p.stderr.strip()[-500:])
            return []
        return json.loads(p.stdout.strip().splitlines()[-1])
    return plot(out, directory)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5, help="connect: rounds of 20 connects each way (default 5)")
    parser.add_argument("--download-kib", type=int, default=8192, help="download size in KiB (default 8192)")
    parser.add_argument("--download-runs", type=int, default=30, help="downloads each way (default 30)")
    parser.add_argument("--connects", type=int, default=100, help="legitimate connects per flood round (default 100)")
    parser.add_argument("--connect-bound", type=float, default=4.0,
                        help="seconds a legitimate connect may take (default 4: SYNs at 0, 1 and 3 s)")
    parser.add_argument("--checker", default="100,75,50,25",
                        help="checker probabilities in percent, comma list (default 100,75,50,25; empty: none)")
    parser.add_argument("--paper-pps", type=int, default=1000,
                        help="also the roam rounds with the flood paced at this rate, 004's (default 1000; 0: not)")
    parser.add_argument("--rates", default="110000,220000,330000,440000",
                        help="paced flood rates (SYN/s, comma list) for rounds of the kernel with syncookies=1 "
                             "and roam-server at the same rate (default 110000,220000,330000,440000; empty: none)")
    parser.add_argument("--only", default="", help="parts to run: comma list of proxy, flood, drill (development)")
    parser.add_argument("--png", default=os.path.join(ROOT, "build-bench", "sensor-plots"),
                        help="directory for the PNG plots (default build-bench/sensor-plots)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the labs' work directories")
    parser.add_argument("--proxy-lab", default="sb%04d" % (os.getpid() % 10000), help="lab name (set by sensor.sh)")
    parser.add_argument("--flood-lab", default="sf%04d" % (os.getpid() % 10000), help="lab name (set by sensor.sh)")
    parser.add_argument("--plot-only", metavar="JSON", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plot_only:
        with open(args.plot_only) as f:
            print(json.dumps(plot(json.load(f), args.png)))
        return 0
    args.checker = [int(p) for p in args.checker.split(",") if p.strip()]
    args.rates = [int(r) for r in args.rates.split(",") if r.strip()]

    out = {"bench": "sensor", "legit_success_flood": None, "legit_success_kernel_cookies": None,
           "legit_success_kernel_nocookies": None, "flood_pps": None, "connect_overhead_ratio": None,
           "download_overhead_ratio": None, "detect_ms": None, "drill_byte_exact": None,
           "paper": {"connect_overhead_ratio": 3.0, "download_overhead_ratio": 1.029,
                     "handshake_success": PAPER["handshake_success"]},
           "reps": args.reps, "download_kib": args.download_kib, "download_runs": args.download_runs,
           "connects": args.connects, "checker": args.checker}
    if os.geteuid() != 0:
        out["skipped"] = "needs root"
        print(json.dumps(out, separators=(",", ":")))
        return 77
    parts = args.only.split(",") if args.only else ["proxy", "flood", "drill"]
    md5_ok = []
    ok = True
    if "proxy" in parts:
        ok &= proxy_part(args, out, md5_ok)
    if "flood" in parts:
        ok &= flood_part(args, out)
    if "drill" in parts:
        ok &= drill_part(out)
    else:
        out["drill"] = "not run"
    if "drill" not in out:
        out["drill"] = "not available"
    out["plots"] = write_plots(out, args.png)
    for path in out["plots"]:
        note("plot: %s" % path)
    # tools/bench/run NAME --png FILE asks for one picture: the flood table, the headline.
    wanted = os.environ.get("BENCH_PNG")
    flood = [p for p in out["plots"] if os.path.basename(p) == "table5_flood.png"]
    if wanted and flood:
        shutil.copyfile(flood[0], wanted)
        note("plot: %s (copy of %s)" % (wanted, flood[0]))
    if "proxy" in parts and not (md5_ok and all(md5_ok)):
        ok = False
    print(json.dumps(out, separators=(",", ":")))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
