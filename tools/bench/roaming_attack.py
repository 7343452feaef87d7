"""The attacker of the roaming benchmark (seed 002 section V, Fig. 2(b)): who is flooded
when, the members' shaped access links, and the flood process that follows the schedule.

The paper's "follow" attacker floods the active server; every time the server roams it
takes the attacker a *discovery delay* d to learn the new location, and until then it
keeps flooding the member it knew. So the member that became active at time t is flooded
from t + d until the next discovery (with d >= the epoch it always floods a member that is
no longer active). Its attack is link-oriented: the paper's servers sit behind 2 Mbit/s
links that the attack fills. Here each member's access link (the router's egress veth
toward it) is shaped with tbf and the attacker, in the router's namespace, sends it more
full-size datagrams than the link carries (tools/bench/udp_flood.py): the member's inbound
queue stays full, so a request to it waits behind the queue or is dropped and
retransmitted, while the other members' links are untouched.
"""
import math
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
UDP_FLOOD = os.path.join(HERE, "udp_flood.py")

# The router's egress veth toward each member (tools/netns/topology).
ROUTER_DEV = {"s": "rs0", "s2": "rt0", "o": "ro0"}
FLOOD_BYTES = 1200
# A datagram of FLOOD_BYTES as the shaper counts it: UDP, IPv4 and Ethernet headers.
FLOOD_WIRE_BYTES = FLOOD_BYTES + 8 + 20 + 14


def follow_schedule(start, epoch_s, members, delay_s, t_from, t_to):
    """The follow attacker's targets over [t_from, t_to): [(t_begin, t_end, member)].

    members[i] is the member active in epoch i + 1, which begins at start + i * epoch_s.
    A member becomes active at start and at every boundary where the member changes; the
    attacker floods it from that time + delay_s until its next discovery. Nothing is
    flooded before the first discovery."""
    changes = [(start, members[0])]
    for i in range(1, len(members)):
        if members[i] != members[i - 1]:
            changes.append((start + i * epoch_s, members[i]))
    out = []
    for k, (t, member) in enumerate(changes):
        begin = max(t + delay_s, t_from)
        end = min(changes[k + 1][0] + delay_s if k + 1 < len(changes) else t_to, t_to)
        if begin < end:
            out.append((begin, end, member))
    return out


def flood_pps(link_mbit, load):
    """Datagrams per second of a flood that is `load` times a link of link_mbit Mbit/s."""
    return load * link_mbit * 1e6 / (8 * FLOOD_WIRE_BYTES)


def shape_links(lab_name, topology, link_mbit, queue_ms, roles):
    """tbf on the router's egress toward each member: link_mbit Mbit/s, a queue of
    queue_ms. Raises RuntimeError naming the tc error."""
    burst = max(16 * 1024, int(link_mbit * 1e6 / 8 / 250))  # >= one 4 ms tick's worth at HZ 250
    for role in roles:
        argv = [topology, "exec", lab_name, "r", "tc", "qdisc", "replace", "dev", ROUTER_DEV[role], "root", "tbf",
                "rate", "%gmbit" % link_mbit, "burst", str(burst), "latency", "%dms" % queue_ms]
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError("tc on %s: %s" % (ROUTER_DEV[role], done.stderr.strip()))


def unshape_links(lab_name, topology, roles):
    for role in roles:
        subprocess.run([topology, "exec", lab_name, "r", "tc", "qdisc", "del", "dev", ROUTER_DEV[role], "root"],
                       capture_output=True)


class Attacker:
    """One udp_flood process in the router's namespace (started and waited for here),
    then switched along a schedule of (t_begin, t_end, [addresses]) by a thread (follow);
    bounded by count and duration itself."""

    def __init__(self, lab_name, topology, log_path, rate_pps, seconds):
        self.schedule = []
        self.rate = rate_pps
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [topology, "exec", lab_name, "r", sys.executable, UDP_FLOOD, "--control", "--rate", "%.1f" % rate_pps,
             "--count", str(int(math.ceil(rate_pps * (seconds + 5)))), "--duration", "%.1f" % (seconds + 5),
             "--size", str(FLOOD_BYTES)],
            stdin=subprocess.PIPE, stdout=self.log, stderr=subprocess.STDOUT, text=True)
        self._stop = threading.Event()
        self._thread = None
        self.flooded_s = 0.0
        # Up before the schedule's first switch: a process in a namespace can take a
        # second to start on a loaded machine, and the static runs flood from the start.
        deadline = time.monotonic() + 15
        while True:
            with open(log_path) as f:
                if f.readline().strip() == "ready":
                    break
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                with open(log_path) as f:
                    raise RuntimeError("udp_flood did not start: " + f.read()[-300:])
            time.sleep(0.05)

    def follow(self, schedule):
        """Starts switching along schedule (absolute times, time.time())."""
        self.schedule = schedule
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _send(self, line):
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def _run(self):
        for begin, end, addresses in self.schedule:
            if self._stop.wait(max(0.0, begin - time.time())):
                return
            self._send("dst " + ",".join(addresses))
            if self._stop.wait(max(0.0, end - time.time())):
                self.flooded_s += max(0.0, time.time() - begin)
                return
            self._send("dst -")
            self.flooded_s += end - begin

    def stop(self):
        """Stops the flood; returns its JSON line (or the log's tail)."""
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        try:
            self.proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        with open(self.log.name) as f:
            lines = f.read().splitlines()
        return lines[-1] if lines else ""
