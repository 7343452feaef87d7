#!/usr/bin/env python3
"""Registrations bound to their owner (issue 11, finding 2): a second client with another
key, at the victim's own address, registers the victim's connection id; the server
refuses it, the victim's connection moves byte-exact afterwards, and the attacker gets no
Address Change Message.

Topology: harness.TwoServers (echo). The servers' route to the client network goes
through a relay (standard library only) that stands for the NAT both clients are behind:
packets toward 198.18.11.2 go to the attacker's link when their TCP destination port is
one the attacker sent from, else to the victim's. The relay also reads the victim's
connection id off the server's SYN-ACK (client ISN << 32 | server ISN), as any on-path
observer can. The attacker is tools/bench/register_probe (fresh key, the victim's
userspace address 198.18.11.2): it opens a control channel to A and registers that id.

Checks: A's SYN check proved the victim's carrier (owner_syns_proven >= 1); the probe gets
ERROR 2 and A counts registrations_foreign; the probe's ACM claiming the victim's
connection moved (seed 003's client move, forged) is answered ACK refused and counted
peer_moves_foreign, nothing is armed or rebound, and the echo goes on; `roamctl migrate A -> B` moves the session
("ok moved 1 of 1"), the echo is byte-exact through the move, B holds the session, the
probe logs "acms 0" and the victim's follower applied 1 ACM.
"""
import hashlib
import os
import random
import re
import selectors
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import TestFailure, check, log  # noqa: E402

SERVICE_PORT = 7000
CHUNK = 16 * 1024
REGISTER_PROBE = os.environ.get("REGISTER_PROBE") or os.path.join(
    os.path.dirname(harness.ROAM_SERVER), "..", "tools", "bench", "register_probe")


class NatRelay:
    """Servers -> client network: to the attacker's link for the attacker's ports, else to
    the victim's. Attacker -> servers: recorded and forwarded to A."""

    def __init__(self):
        self.selector = selectors.DefaultSelector()
        self.sockets = {}
        for name in ("to_client", "from_attacker"):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            self.sockets[name] = sock
            self.selector.register(sock, selectors.EVENT_READ, name)
        self.victim = None
        self.server_a = None
        self.attacker = None
        self.attacker_ports = set()
        self.victim_ids = []      # connection ids read off A's SYN-ACKs to the victim
        self.to_attacker = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="nat-relay", daemon=True)

    def routes(self, ports):
        self.victim = ("127.0.0.1", ports["client"])
        self.server_a = ("127.0.0.1", ports["A"])
        target = dict(ports)
        target["client"] = self.sockets["to_client"].getsockname()[1]
        return target

    def port(self, name):
        return self.sockets[name].getsockname()[1]

    @staticmethod
    def tcp_fields(data):
        if len(data) < 40 or data[0] >> 4 != 4 or data[9] != 6:
            return None
        ihl = (data[0] & 0x0F) * 4
        sport, dport, seq, ack = struct.unpack("!HHII", data[ihl:ihl + 12])
        return sport, dport, seq, ack, data[ihl + 13]

    def _run(self):
        while not self.stopping.is_set():
            for key, _ in self.selector.select(0.2):
                sock = self.sockets[key.data]
                while True:
                    try:
                        data = sock.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        return
                    fields = self.tcp_fields(data)
                    if key.data == "from_attacker":
                        if fields:
                            self.attacker_ports.add(fields[0])
                        sock.sendto(data, self.server_a)
                        continue
                    if fields and fields[1] in self.attacker_ports and self.attacker:
                        self.to_attacker += 1
                        sock.sendto(data, self.attacker)
                        continue
                    if fields and fields[0] == SERVICE_PORT and fields[4] & 0x12 == 0x12:
                        self.victim_ids.append((((fields[3] - 1) & 0xFFFFFFFF) << 32) | fields[2])
                    if self.victim:
                        sock.sendto(data, self.victim)

    def start(self):
        self.thread.start()

    def stop(self):
        self.stopping.set()
        self.thread.join(5)
        for sock in self.sockets.values():
            sock.close()


class Echo:
    """Seeded bytes through the forward and back, one exchange at a time on demand."""

    def __init__(self, sock):
        self.sock = sock
        self.rng = random.Random(0x0E11)
        self.sent = hashlib.sha256()
        self.received = hashlib.sha256()
        self.count = 0

    def exchange(self, rounds=4):
        for _ in range(rounds):
            chunk = self.rng.randbytes(CHUNK)
            self.sock.sendall(chunk)
            self.sent.update(chunk)
            got = 0
            while got < len(chunk):
                data = self.sock.recv(len(chunk) - got)
                if not data:
                    raise TestFailure("the echo connection closed after %d bytes" % self.count)
                self.received.update(data)
                got += len(data)
            self.count += len(chunk)
        check(self.sent.digest() == self.received.digest(), "echo bytes differ after %d bytes" % self.count)


def wait_until(what, predicate, timeout=harness.READY_TIMEOUT):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TestFailure("timed out waiting for " + what)
        time.sleep(0.05)


def main():
    if not os.path.exists(REGISTER_PROBE):
        raise TestFailure("register_probe not built at %s" % REGISTER_PROBE)
    relay = NatRelay()
    relay.start()
    probe = None
    try:
        with harness.TwoServers(mode="echo", routes=relay.routes,
                                # The relay (a NAT: one address, other ports) forwards from
                                # its own sockets, not the routes' endpoints: both ends take it.
                                server_extra=["--udp-allow", "127.0.0.1"],
                                client_extra=["--udp-allow", "127.0.0.1"]) as t:
            sock = t.connect()
            echo = Echo(sock)
            echo.exchange()
            wait_until("A to register the victim's connection", lambda: t.status("A")["registrations"] >= 1)
            a = t.status("A")
            check(a.get("owner_syns_proven", 0) >= 1,
                  "the victim's carrier did not prove its owner: %s" % {k: v for k, v in a.items() if "owner" in k})
            check(relay.victim_ids, "the relay saw no SYN-ACK toward the victim")
            victim_id = relay.victim_ids[-1]
            log("victim's connection id 0x%016x (read off the wire); A: owner_syns_proven %d" % (
                victim_id, a["owner_syns_proven"]))

            attacker_port = harness.free_udp_port()
            relay.attacker = ("127.0.0.1", attacker_port)
            probe = harness.RoamProcess("probe", [
                REGISTER_PROBE, "--link", "udp:127.0.0.1:%d" % attacker_port, "--addr", harness.CLIENT_ADDR,
                "--route", "%s=127.0.0.1:%d" % (harness.SERVER_NET, relay.port("from_attacker")),
                "--udp-allow", "127.0.0.1",
                "--server", harness.SERVER_ADDR, "--register", "0x%x" % victim_id,
                "--move", "0x%x" % victim_id, "--move-to", "198.18.11.9", "--hold-ms", "6000"])
            check(probe.wait_for_log("[probe] established"), "the attacker's channel did not come up:\n" + probe.tail())
            check(probe.wait_for_log("[probe] error 2"), "the attacker got no ERROR 2:\n" + probe.tail())
            a = t.status("A")
            check(a["registrations_foreign"] >= 1 and a["registrations_refused"] >= 1,
                  "A did not count the foreign registration: %s" % a)
            log("ok   - a foreign key's REGISTER of the victim's id refused (ERROR 2; registrations_foreign %d)" %
                a["registrations_foreign"])
            # Seed 003's client move, forged: the same key claims the victim's connection
            # moved to 198.18.11.9. Refused and counted; nothing is armed or rebound.
            check(probe.wait_for_log("[probe] ack ") and re.search(r"\[probe\] ack \d+ refused", probe.stderr_text()),
                  "the attacker's ACM was not refused:\n" + probe.tail())
            a = t.status("A")
            check(a["peer_moves_foreign"] >= 1 and a["peer_moves_refused"] >= 1 and a["peer_moves_applied"] == 0
                  and a["peer_moves_expected"] == 0 and a["peer_moves_rebound"] == 0,
                  "A did not refuse the foreign ACM cleanly: %s" % {k: v for k, v in a.items() if "peer_moves" in k})
            log("ok   - a foreign key's ACM moving the victim's connection refused (ACK refused; peer_moves_foreign %d)"
                % a["peer_moves_foreign"])
            echo.exchange()

            t.migrate("A", "B", expect_moved=1)
            echo.exchange(8)
            check(t.status("B")["sessions"] == 1, "B does not hold the moved session")
            check(t.status("A")["sessions"] == 0, "A still holds the session")
            sock.shutdown(socket.SHUT_WR)
            check(sock.recv(1) == b"", "the echo did not end with EOF")
            sock.close()
            log("ok   - the victim's connection moved A -> B, echo byte-exact (%d bytes, sha256 %s)" % (
                echo.count, echo.sent.hexdigest()[:16]))

            probe.stop(check_exit=False)
            match = re.search(r"\[probe\] done: errors (\d+) acms (\d+)", probe.stderr_text())
            check(match is not None, "the probe logged no summary:\n" + probe.tail())
            check(int(match.group(2)) == 0, "the attacker received %s ACM(s)" % match.group(2))
            log("ok   - the attacker received no ACM (errors %s; %d packets relayed to it)" % (
                match.group(1), relay.to_attacker))
            t.client.stop()
            text = t.client.stderr_text()
            applied = re.search(r"ACMs (\d+) applied (\d+)", text)
            check(applied is not None and int(applied.group(2)) == 1,
                  "the victim's follower did not apply exactly one ACM: %s" % (applied.group(0) if applied else None))
    finally:
        if probe is not None and probe.alive():
            probe.stop(check_exit=False)
        relay.stop()
    log("PASS")


if __name__ == "__main__":
    harness.run(main)
