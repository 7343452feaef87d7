#!/usr/bin/env python3
"""tools/wireshark/roamstack.lua against captures of real moves, IPv4 and then IPv6.

The scenario (harness.TwoServers on loopback, mode echo): servers A and B with the segment
MAC on and --udp-roam for the client's prefix, the client on its UDP link. tcpdump captures
on lo, filtered to the five ports of the run (three UDP links, two control ports), from
before the first process starts. One echo round trip, `roamctl migrate` A -> B, another
round trip, then every process stops and the capture is read back with tshark and the
dissector. What must be there, each named by the dissector's fields:

  link      UDP datagrams of the links decode as IP-in-UDP with the inner TCP of the overlay
            (inner addresses of the client, A and B; carrier port 7000, channel port
            7001); link rebind datagrams (0x1A) for the client's inner address; the
            heuristic (no port preference) finds the same datagrams;
  channel   to A and to B: the three handshake messages in order (msg2's HELLO with a pool
            certificate, msg3's with the 6-byte host id "client"), then transport frames
            whose counters run 0, 1, 2, ... per direction; inferred from their lengths: the
            LINK_KEY, the client's REGISTERs of one id, and after the move A's ACM of scope
            global (no ids, with token and certificate: the IPv6 run checks the family's
            part in that inference) answered by the client's ACK;
  options   the carrier's SYN to A carries the owner proof; data segments of the carrier
            carry the segment MAC, both ways, at A and at B; the client's synthetic
            handover SYN to B names the carrier's connection id (client ISN << 32 |
            server ISN, read from the carrier's own SYN and SYN-ACK with A), and B's
            SYN-ACK and both window updates name the same id;
  control   on A's and B's control ports: every connection starts with the XX handshake
            records (the responder shows its 137-byte pool certificate; of the initiators
            only A, in its session transfer to B, does), then records whose implicit
            nonces run 0, 1, 2, ...

Crafted packets (scapy, written to a file, never sent) check that malformed options,
rebinds and frames are flagged and another experiment's kind-253 option is left to
Wireshark. Runs under Debian's /usr/bin/python3 (python3-scapy).

tshark and tcpdump are required (tools/setup installs them): if either is missing the test
fails. Capturing needs root: without it the test skips (exit 77), as the netns tests do.
Nothing is timed. A few seconds (two short runs); nothing to scale by ROAMSTACK_TEST_SCALE.
By hand on a kept capture (ROAMSTACK_KEEP_PCAP=FILE): see the end of this file.
"""
import os
import shutil
import signal
import subprocess
import sys
import time
from xml.etree import ElementTree

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SOURCE, "tests", "integration"))
import harness  # noqa: E402
from harness import TestFailure, check, log  # noqa: E402

DISSECTOR = os.environ.get("ROAMSTACK_DISSECTOR") or os.path.join(SOURCE, "tools", "wireshark", "roamstack.lua")
TOOL_TIMEOUT = 120
CARRIER_PORT = 7000
CHANNEL_PORT = 7001
CLIENT_NET6 = "2001:db8:11::/48"  # harness.TwoServers(ipv6=True)
ADDRESSES = {False: {"client": harness.CLIENT_ADDR, "A": harness.SERVER_ADDR, "B": harness.SERVER_B_ADDR},
             True: {"client": "2001:db8:11::2", "A": harness.TwoServers.address6["A"],
                    "B": harness.TwoServers.address6["B"]}}


class Capture:
    """tcpdump on lo into a file, started and confirmed listening before the run's processes."""

    def __init__(self, directory, name):
        self.directory = directory
        self.name = name
        self.proc = None
        self.path = None
        self.serial = 0

    def start(self, udp_ports, tcp_ports):
        self.stop()
        self.serial += 1
        self.path = os.path.join(self.directory, "%s-%d.pcap" % (self.name, self.serial))
        err_path = self.path + ".err"
        expression = " or ".join(["udp port %d" % p for p in udp_ports] + ["tcp port %d" % p for p in tcp_ports])
        with open(err_path, "wb") as err:
            self.proc = subprocess.Popen(["tcpdump", "-i", "lo", "-U", "-n", "-s", "0", "-w", self.path, expression],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                         preexec_fn=harness._die_with_parent)
        deadline = time.monotonic() + harness.READY_TIMEOUT
        while time.monotonic() < deadline:
            with open(err_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
            if "listening on" in text:
                return
            if self.proc.poll() is not None:
                raise TestFailure("tcpdump exited (code %d): %s" % (self.proc.returncode, text.strip()))
            time.sleep(0.02)
        raise TestFailure("tcpdump never said it was listening")

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(harness.STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def run_scenario(capture, ipv6=False):
    """A move with everything on; returns (udp ports, control ports) of the run."""
    seen = {}

    def routes(ports):
        topology = seen["t"]
        controls = [int(c.rsplit(":", 1)[1]) for c in topology.controls.values()]
        seen["udp"] = sorted(ports.values())
        seen["tcp"] = sorted(controls)
        capture.start(seen["udp"], seen["tcp"])
        return ports

    roam = CLIENT_NET6 if ipv6 else harness.CLIENT_NET
    topology = harness.TwoServers(mode="echo", routes=routes, ipv6=ipv6,
                                  server_extra=["--segment-mac", "--udp-roam", roam])
    seen["t"] = topology
    with topology as t:
        sock = t.connect()
        harness.echo_round_trip(sock, b"before the move\n")
        # The client sends a link rebind right after its LINK_KEY, which follows the
        # channel's handshake: wait for it in the server's counters.
        deadline = time.monotonic() + harness.READY_TIMEOUT
        while t.status("A").get("link_rebinds_unchanged", 0) + t.status("A").get("link_rebinds_applied", 0) < 1:
            check(time.monotonic() < deadline, "A never took a link rebind: %s" % t.status("A"))
            time.sleep(0.05)
        t.migrate("A", "B", expect_moved=1)
        harness.echo_round_trip(sock, b"after the move\n")
        sock.close()
        t.wait_for_sessions("B", 0)
        t.stop_all()
    capture.stop()
    return seen["udp"], seen["tcp"]


class Packet:
    """One packet of tshark's PDML: its fields by name (every occurrence, in order) and its
    Roamstack protocol elements (one per record) as dicts of their own fields."""

    def __init__(self, element):
        self.fields = {}
        self.records = []
        for node in element.iter():
            if node.tag == "field" and node.get("name"):
                self.fields.setdefault(node.get("name"), []).append(node.get("show") or "")
            elif node.tag == "proto" and (node.get("name") or "").startswith("roamstack."):
                own = {"proto": node.get("name")}
                for field in node.iter("field"):
                    own.setdefault(field.get("name"), field.get("show") or "")
                self.records.append(own)
        self.number = int(self.last("frame.number"))

    def last(self, name, default=None):
        values = self.fields.get(name)
        return values[-1] if values else default

    def of(self, proto):
        return [r for r in self.records if r["proto"] == proto]


def read_capture(pcap, udp_ports, tcp_ports):
    """tshark -T pdml with the dissector over the whole capture: a list of Packet."""
    argv = ["tshark", "-n", "-r", pcap, "-X", "lua_script:" + DISSECTOR,
            "-o", "roamstack.link.udp_ports:" + ",".join(str(p) for p in udp_ports),
            "-o", "roamstack.ctl.tcp_ports:" + ",".join(str(p) for p in tcp_ports), "-T", "pdml"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    errors = [line for line in out.stderr.splitlines() if "Running as user" not in line and line.strip()]
    check(out.returncode == 0 and not errors, "tshark: exit %d\n%s" % (out.returncode, "\n".join(errors)[-2000:]))
    check("Lua Error" not in out.stdout, "the dissector raised a Lua error: %s" % out.stdout[
        out.stdout.find("Lua Error"):][:300])
    root = ElementTree.fromstring(out.stdout)
    return [Packet(element) for element in root.iter("packet")]


# PROTOCOL.md 3.8's example rebind: inner 198.18.50.2, counter 0x0005f0a1b2c3d4e5.
REBIND_EXAMPLE = bytes.fromhex("1a010400c61232020005f0a1b2c3d4e5"
                               "b8a600af6082ac8a1721a3a47f10899e86de8405a0a48291c7711895f76773a0")


def check_crafted():
    """Bad input is flagged, not misread, and another experiment's kind-253 option is left
    to Wireshark: packets made here with scapy (never sent), one expectation each."""
    from scapy.all import IP, TCP, UDP, Raw, wrpcap
    client, server = harness.CLIENT_ADDR, harness.SERVER_ADDR
    cases = [
        ("foreign ExID", IP(src=client, dst=server) / TCP(sport=40000, dport=7000, flags="S",
                                                          options=[(253, b"\x12\x34abcd")]),
         lambda p: p.last("tcp.options.experimental.exid") == "0x1234" and not p.of("roamstack.opt")),
        ("handover option of 24 bytes", IP(src=client, dst=server) / TCP(
            sport=40001, dport=7000, flags="S", options=[(253, b"\x52\x48" + bytes(20))]),
         lambda p: "roamstack.opt.bad_length" in p.fields and "roamstack.opt.handover.conn_id" not in p.fields),
        ("owner proof on a SYN-ACK", IP(src=server, dst=client) / TCP(
            sport=7000, dport=40002, flags="SA", options=[(253, b"\x52\x4f" + bytes(range(16)))]),
         lambda p: "roamstack.opt.misplaced" in p.fields and p.last("roamstack.opt.owner.mac") == "08:09:0a:0b:0c:0d:0e:0f"),
        ("rebind of format 2", IP(src="127.0.0.1", dst="127.0.0.1") / UDP(sport=40003, dport=7100) / Raw(
            b"\x1a\x02\x04\x00" + bytes(44)),
         lambda p: "roamstack.link.rebind.malformed" in p.fields and "roamstack.link.rebind.inner" not in p.fields),
        ("rebind example of PROTOCOL.md 3.8", IP(src="127.0.0.1", dst="127.0.0.1") / UDP(sport=40004, dport=7100) /
         Raw(REBIND_EXAMPLE),
         lambda p: p.last("roamstack.link.rebind.inner") == "198.18.50.2"
         and int(p.last("roamstack.link.rebind.counter")) == 0x0005f0a1b2c3d4e5
         and p.last("roamstack.link.rebind.mac", "").replace(":", "") == REBIND_EXAMPLE[16:].hex()
         and "roamstack.link.rebind.malformed" not in p.fields),
        ("zero-length channel frame", IP(src=client, dst=server) / TCP(sport=40005, dport=7001, flags="PA") /
         Raw(b"\x00\x00"),
         lambda p: "roamstack.chan.zero_length" in p.fields),
        ("channel frame of 5 bytes", IP(src=server, dst=client) / TCP(sport=7001, dport=40006, flags="PA") /
         Raw(b"\x00\x05" + bytes(5)),
         lambda p: "roamstack.chan.short" in p.fields and "roamstack.chan.counter" not in p.fields),
    ]
    path = os.path.join(harness.log_dir(), "crafted.pcap")
    wrpcap(path, [packet for _, packet, _ in cases])
    packets = read_capture(path, [7100], [])
    check(len(packets) == len(cases), "tshark read %d of %d crafted packets" % (len(packets), len(cases)))
    for (what, _, expectation), packet in zip(cases, packets):
        check(expectation(packet), "crafted %s: not dissected as expected: %r" % (what, packet.records))
    log("crafted: %d bad or foreign inputs flagged as expected" % len(cases))


def main():
    for tool in ("tshark", "tcpdump"):
        check(shutil.which(tool) is not None, "%s is missing (tools/setup installs it)" % tool)
    check(os.path.isfile(DISSECTOR), "no dissector at %s" % DISSECTOR)
    check_crafted()
    if os.geteuid() != 0:
        log("SKIP wireshark_test.py: capturing on lo needs root (as the netns tests do)")
        sys.exit(77)
    for ipv6 in (False, True):
        capture = Capture(harness.log_dir(), "ipv6" if ipv6 else "ipv4")
        try:
            udp_ports, tcp_ports = run_scenario(capture, ipv6)
        finally:
            capture.stop()
        pcap = capture.path
        log("capture %s: %d bytes; udp links %s, control ports %s" % (pcap, os.path.getsize(pcap), udp_ports,
                                                                      tcp_ports))
        keep = os.environ.get("ROAMSTACK_KEEP_PCAP")
        if keep:
            shutil.copyfile(pcap, keep + (".ipv6" if ipv6 else ""))
            log("capture copied to %s" % keep)
        check_capture(pcap, udp_ports, tcp_ports, ipv6)


NODES = {}  # "client", "A", "B" -> the overlay address of the run being checked


def check_capture(pcap, udp_ports, tcp_ports, ipv6=False):
    NODES.clear()
    NODES.update(ADDRESSES[ipv6])
    log("checking %s (%s)" % (pcap, "IPv6" if ipv6 else "IPv4"))
    packets = read_capture(pcap, udp_ports, tcp_ports)
    log("tshark: %d packets" % len(packets))
    bad = [(p.number, name) for p in packets for name in p.fields if name in EXPERT_ERRORS]
    check(not bad, "the dissector reports broken input in a clean run: %s" % bad[:10])
    overlay = check_link(packets)
    check_channels(packets)
    check_options(packets)
    check_control_port(packets)
    # Without the port preference the heuristic must find the same link datagrams.
    found = check_link(read_capture(pcap, [], tcp_ports))
    check(found == overlay, "the heuristic found %d overlay packets, the ports %d" % (found, overlay))


EXPERT_ERRORS = ("roamstack.chan.zero_length", "roamstack.chan.short", "roamstack.chan.counter_max",
                 "roamstack.opt.bad_length", "roamstack.link.rebind.malformed", "roamstack.link.not_ip",
                 "roamstack.ctl.zero_length")


def inner(packet, which):
    """The overlay's source or destination address: the IP packet inside the link's UDP
    (the outer one is 127.0.0.1), IPv6 or IPv4; None for a packet with no inner IP."""
    if "ipv6." + which in packet.fields:
        return packet.last("ipv6." + which)
    values = packet.fields.get("ip." + which, [])
    return values[-1] if len(values) >= 2 else None


def check_link(packets):
    link = [p for p in packets if p.of("roamstack.link") and "ip.src" in p.fields]
    overlay = [p for p in link if inner(p, "src") in NODES.values() and inner(p, "dst") in NODES.values()]
    log("link: %d datagrams, %d of them inner IP packets of the overlay" % (len(link), len(overlay)))
    check(overlay, "no link datagram decoded as an inner IP packet")
    for port in (CARRIER_PORT, CHANNEL_PORT):
        check(any(str(port) in p.fields.get("tcp.port", []) for p in overlay),
              "no inner TCP segment with port %d inside the link" % port)
    field = "roamstack.link.rebind.inner6" if ":" in NODES["client"] else "roamstack.link.rebind.inner"
    rebinds = [r for p in packets for r in p.of("roamstack.link") if field in r]
    log("link: %d rebind datagrams: %s" % (len(rebinds), sorted({(r[field], r["roamstack.link.rebind.format"])
                                                                  for r in rebinds})))
    check(rebinds, "no link rebind datagram")
    for r in rebinds:
        check(r[field] == NODES["client"] and r["roamstack.link.rebind.type"] == "0x1a"
              and r["roamstack.link.rebind.format"] == "1" and len(r["roamstack.link.rebind.mac"].split(":")) == 32,
              "odd rebind: %r" % r)
    return len(overlay)


def by_stream(packets, proto):
    """{tcp stream: [(packet, record), ...]} for the records of PROTO, in capture order."""
    streams = {}
    for p in packets:
        for r in p.of(proto):
            streams.setdefault(p.last("tcp.stream"), []).append((p, r))
    return streams


def check_counters(what, values):
    # A record TCP retransmitted may appear twice; the sequence must still run 0, 1, 2, ...
    distinct = list(dict.fromkeys(values))
    check(distinct == list(range(len(distinct))), "%s: counters %s, expected 0, 1, 2, ..." % (what, values))


def check_channels(packets):
    streams = by_stream(packets, "roamstack.chan")
    seen_servers = {}
    for stream, records in streams.items():
        to_server = [(p, r) for p, r in records if r["roamstack.chan.direction"] == "client to server"]
        to_client = [(p, r) for p, r in records if r["roamstack.chan.direction"] == "server to client"]
        server = inner(to_server[0][0], "dst") if to_server else None
        what = "channel stream %s to %s" % (stream, server)
        check(len(to_server) >= 3 and to_client, "%s: %d records to the server, %d back" % (
            what, len(to_server), len(to_client)))
        check([r.get("roamstack.chan.handshake") for _, r in to_server[:2]] == ["1", "3"],
              "%s: the client's first records are not handshake msg1, msg3: %s" % (what, to_server[:2]))
        check(to_client[0][1].get("roamstack.chan.handshake") == "2", "%s: the server's first record is not msg2" % what)
        check(to_client[0][1].get("roamstack.chan.hello.credential") == "1",
              "%s: the server's HELLO shows no pool certificate" % what)
        check(to_server[1][1].get("roamstack.chan.hello.host_id_length") == str(len("client")),
              "%s: the client's HELLO host id is not 6 bytes long" % what)
        for direction, rows in (("to the server", to_server[2:]), ("to the client", to_client[1:])):
            check_counters("%s %s" % (what, direction), [int(r["roamstack.chan.counter"]) for _, r in rows])
        guesses = [(r["roamstack.chan.direction"], r.get("roamstack.chan.guess"), r.get("roamstack.acm.ids"),
                    r.get("roamstack.register.ids")) for _, r in records if "roamstack.chan.counter" in r]
        log("%s: %s" % (what, guesses))
        check(any(g[0] == "client to server" and g[1] == "REGISTER" and g[3] == "1" for g in guesses),
              "%s: no REGISTER of one id" % what)
        check(any(g[0] == "server to client" and g[1] == "LINK_KEY" for g in guesses), "%s: no LINK_KEY" % what)
        seen_servers[server] = guesses
    check(set(seen_servers) == {NODES["A"], NODES["B"]},
          "channels seen to %s, expected A and B" % sorted(seen_servers, key=str))
    # The move: A's ACM to the client, scope global (every id the channel registered: count 0)
    # with the token and B's certificate, answered by the client's ACK.
    at_a = seen_servers[NODES["A"]]
    check(("server to client", "ACM", "0", None) in at_a, "no ACM from A to the client")
    check(("client to server", "ACK", None, None) in at_a[at_a.index(("server to client", "ACM", "0", None)):],
          "the client did not answer A's ACM with an ACK")
    check(not any(g[1] == "ACM" for g in seen_servers[NODES["B"]]), "B sent an ACM")


def flags(packet):
    return int(packet.last("tcp.flags"), 16)


def check_options(packets):
    syns = [p for p in packets if p.of("roamstack.opt") and any(
        "roamstack.opt.handover.kind" in r for r in p.of("roamstack.opt"))]
    handover = {}
    for p in syns:
        r = [r for r in p.of("roamstack.opt") if "roamstack.opt.handover.kind" in r][0]
        handover.setdefault(r["roamstack.opt.handover.kind"], []).append((p, r))
    log("handover segments by kind: %s" % {k: len(v) for k, v in handover.items()})
    check(set(handover) == {"1", "2", "3"}, "handover kinds seen: %s, expected SYN, SYN-ACK and window updates"
          % sorted(handover))
    syn, option = handover["1"][0]
    client_port = syn.last("tcp.srcport")
    conn_id = int(option["roamstack.opt.handover.conn_id"], 16)
    check(inner(syn, "dst") == NODES["B"] and syn.last("tcp.dstport") == str(CARRIER_PORT)
          and flags(syn) == 0x02, "the handover SYN goes to %s:%s with flags %#x" % (
              inner(syn, "dst"), syn.last("tcp.dstport"), flags(syn)))
    check(len(option["roamstack.opt.handover.tag"].split(":")) == 12, "handover tag not 12 bytes")
    # The id is the carrier's own, from the ISNs of its handshake with A.
    carrier = [p for p in packets if "tcp.srcport" in p.fields and {p.last("tcp.srcport"), p.last("tcp.dstport")}
               == {client_port, str(CARRIER_PORT)} and inner(p, "src") in (NODES["client"], NODES["A"])
               and inner(p, "dst") in (NODES["client"], NODES["A"])]
    first_syn = [p for p in carrier if flags(p) == 0x02]
    syn_ack = [p for p in carrier if flags(p) == 0x12]
    check(first_syn and syn_ack, "the carrier's own handshake with A is not in the capture")
    isn_client, isn_server = int(first_syn[0].last("tcp.seq_raw")), int(syn_ack[0].last("tcp.seq_raw"))
    want = (isn_client << 32) | isn_server
    log("carrier %s:%s: ISNs %#x, %#x; handover id %#x" % (NODES["client"], client_port, isn_client, isn_server,
                                                         conn_id))
    check(conn_id == want, "handover SYN names id %#x, the carrier's id is %#x" % (conn_id, want))
    for kind in ("2", "3"):
        for p, r in handover[kind]:
            check(int(r["roamstack.opt.handover.conn_id"], 16) == want, "handover kind %s names another id: %r"
                  % (kind, r))
    check(any(inner(p, "src") == NODES["B"] and flags(p) == 0x12 for p, _ in handover["2"]),
          "no handover SYN-ACK from B")
    # Owner proof on the carrier's SYN to A; the segment MAC on its data, both ways, at A and at B.
    owner = [r for r in first_syn[0].of("roamstack.opt") if "roamstack.opt.owner.channel_tag" in r]
    check(len(owner) == 1 and len(owner[0]["roamstack.opt.owner.mac"].split(":")) == 8,
          "the carrier's SYN carries no owner proof: %r" % first_syn[0].records)
    moved = [p for p in packets if "tcp.srcport" in p.fields and {p.last("tcp.srcport"), p.last("tcp.dstport")}
             == {client_port, str(CARRIER_PORT)} and int(p.last("tcp.len", "0")) > 0
             and any("roamstack.opt.segmac.tag" in r for r in p.of("roamstack.opt"))]
    for server in (NODES["A"], NODES["B"]):
        for source in (server, NODES["client"]):
            check(any(inner(p, "src") == source and server in (inner(p, "src"), inner(p, "dst"))
                      for p in moved), "no signed data segment from %s on the carrier at %s" % (source, server))
    log("carrier: %d data segments with the segment MAC" % len(moved))


def check_control_port(packets):
    streams = by_stream(packets, "roamstack.ctl")
    transfers = 0
    for stream, records in streams.items():
        forward = [r for _, r in records if r["roamstack.ctl.direction"] == "initiator to responder"]
        back = [r for _, r in records if r["roamstack.ctl.direction"] == "responder to initiator"]
        what = "control port stream %s" % stream
        check(len(forward) >= 3 and len(back) >= 2, "%s: %d records out, %d back" % (what, len(forward), len(back)))
        check([r.get("roamstack.ctl.handshake") for r in forward[:2]] == ["1", "3"] and
              back[0].get("roamstack.ctl.handshake") == "2", "%s: no XX handshake at its start" % what)
        check(back[0].get("roamstack.ctl.credential_length") == "137", "%s: the responder shows no certificate" % what)
        check_counters(what + " out", [int(r["roamstack.ctl.nonce"]) for r in forward[2:]])
        check_counters(what + " back", [int(r["roamstack.ctl.nonce"]) for r in back[1:]])
        if forward[1].get("roamstack.ctl.credential_length") == "137":
            transfers += 1  # a server's session transfer (roamctl shows no certificate)
        else:
            check(forward[1].get("roamstack.ctl.credential_length") == "0", "%s: odd initiator credential" % what)
    log("control port: %d connections, %d of them session transfers" % (len(streams), transfers))
    check(transfers == 1, "%d session transfers between A and B, expected 1" % transfers)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--check":
        # By hand, on a kept capture: --check PCAP UDP,PORTS CONTROL,PORTS (an IPv6 run: PCAP ends .ipv6)
        check_capture(sys.argv[2], sys.argv[3].split(","), sys.argv[4].split(","), sys.argv[2].endswith(".ipv6"))
        print("PASS")
    else:
        harness.run(main)
