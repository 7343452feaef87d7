#!/usr/bin/env python3
"""roam-server --pcap FILE: push 100 KiB through the echo app, stop the server, then read FILE
with tshark and/or tcpdump (each one found on PATH is used; at least one is required). The
capture must hold TCP packets to and from port 7000, and their TCP payload must cover the
100 KiB in each direction. The file's pcap header is also checked directly.
"""
import os
import re
import shutil
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import TestFailure, check, log  # noqa: E402

SIZE = 100 * 1024
PORT = 7000
TOOL_TIMEOUT = 120


def read_with_tshark(path):
    out = subprocess.run(["tshark", "-r", path, "-T", "fields", "-E", "separator=,",
                          "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "tcp.len"],
                         capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    check(out.returncode == 0, "tshark failed (exit %d): %s" % (out.returncode, out.stderr[-500:]))
    packets = []
    for line in out.stdout.splitlines():
        fields = line.split(",")
        if len(fields) == 3 and fields[0] and fields[1]:
            packets.append((int(fields[0]), int(fields[1]), int(fields[2] or 0)))
    return packets


TCPDUMP_LINE = re.compile(r"IP \S+?\.(\d+) > \S+?\.(\d+): Flags .*length (\d+)")


def read_with_tcpdump(path):
    out = subprocess.run(["tcpdump", "-r", path, "-nn"], capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    check(out.returncode == 0, "tcpdump failed (exit %d): %s" % (out.returncode, out.stderr[-500:]))
    packets = []
    for line in out.stdout.splitlines():
        m = TCPDUMP_LINE.search(line)
        if m:
            packets.append((int(m.group(1)), int(m.group(2)), int(m.group(3))))
    return packets


def check_capture(tool, packets):
    to_port = [p for p in packets if p[1] == PORT]
    from_port = [p for p in packets if p[0] == PORT]
    bytes_to = sum(p[2] for p in to_port)
    bytes_from = sum(p[2] for p in from_port)
    log("%s: %d TCP packets; to port %d: %d packets, %d payload bytes; from port %d: %d packets, %d payload bytes"
        % (tool, len(packets), PORT, len(to_port), bytes_to, PORT, len(from_port), bytes_from))
    check(to_port, "%s: no TCP packets to port %d in the capture" % (tool, PORT))
    check(from_port, "%s: no TCP packets from port %d in the capture" % (tool, PORT))
    # Retransmissions could add bytes, never remove them.
    check(bytes_to >= SIZE, "%s: only %d payload bytes to port %d, sent %d" % (tool, bytes_to, PORT, SIZE))
    check(bytes_from >= SIZE, "%s: only %d payload bytes from port %d, echoed %d" % (tool, bytes_from, PORT, SIZE))


def check_pcap_header(path):
    with open(path, "rb") as f:
        header = f.read(24)
    check(len(header) == 24, "pcap file shorter than its 24-byte global header (%d bytes)" % len(header))
    magic = struct.unpack("<I", header[:4])[0]
    check(magic in (0xA1B2C3D4, 0xA1B23C4D, 0xD4C3B2A1, 0x4D3CB2A1), "bad pcap magic 0x%08x" % magic)
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    linktype = struct.unpack(endian + "I", header[20:24])[0]
    log("pcap header: magic 0x%08x, linktype %d, file %d bytes" % (magic, linktype, os.path.getsize(path)))
    # Walk the records: every one must be complete (a truncated tail means a lost flush).
    records = 0
    with open(path, "rb") as f:
        f.seek(24)
        while True:
            rec = f.read(16)
            if not rec:
                break
            check(len(rec) == 16, "pcap record %d: truncated record header" % records)
            incl = struct.unpack(endian + "IIII", rec)[2]
            body = f.read(incl)
            check(len(body) == incl, "pcap record %d: %d of %d captured bytes present" % (records, len(body), incl))
            records += 1
    return records


def main():
    tools = [t for t in ("tshark", "tcpdump") if shutil.which(t)]
    check(tools, "neither tshark nor tcpdump is on PATH")
    path = os.path.join(harness.log_dir(), "server.pcap")
    with harness.Pair(mode="echo", server_extra=["--pcap", path]) as pair:
        data = harness.pseudo_random_bytes(0x9CA9, SIZE)
        sock = pair.connect()
        sender = harness.Worker(lambda: (sock.sendall(data), sock.shutdown(harness.socket.SHUT_WR)), name="send")
        sender.start()
        got, echoed = harness.recv_until_eof(sock, keep=True, limit=SIZE)
        sender.finish()
        sock.close()
        check(echoed == data, "echo through the forward not byte-exact (%d of %d bytes)" % (got, SIZE))
        _, server = pair.stop_all()
        log("server counters: %s" % (server.counters,))

    check(os.path.exists(path), "the server did not create %s" % path)
    records = check_pcap_header(path)
    c = server.counters
    log("pcap records %d; server counters: packets in %d + out %d = %d" % (records, c.packets_in, c.out,
                                                                             c.packets_in + c.out))
    check(records == c.packets_in + c.out,
          "pcap holds %d records but the server counted %d packets in and %d out (%d)"
          % (records, c.packets_in, c.out, c.packets_in + c.out))
    for tool in tools:
        packets = read_with_tshark(path) if tool == "tshark" else read_with_tcpdump(path)
        check_capture(tool, packets)


if __name__ == "__main__":
    harness.run(main)
