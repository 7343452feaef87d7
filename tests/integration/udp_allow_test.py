#!/usr/bin/env python3
"""The UDP link takes datagrams only from its peers (issue 11, finding 4).

Phase 1 (default): roam-server's link routes the client's network to the client's UDP
endpoint, so that endpoint is the only sender it accepts. A stranger's socket on the same
host sends well-formed IP packets (TCP SYNs from the client's lwIP address to the echo
port, checksums right: what the server would answer if it took them) to the server's link
port while a 2 MiB echo runs through the client's forward. The echo must be byte-exact, and
the server's final counters must show every stranger datagram as "rx foreign" (less any the
kernel dropped from the socket queue), the client's none. The server logs whom it takes
datagrams from: the client's endpoint only.
Phase 2 (--udp-allow 127.0.0.1 on the server): the same datagrams are taken (rx foreign 0),
so it was the source, not the packets, that phase 1 dropped.
"""
import hashlib
import os
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import TestFailure, check, log  # noqa: E402

TRANSFER = 2 * 1024 * 1024
CHUNK = 64 * 1024
STRANGER_PACKETS = 300


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (~total) & 0xFFFF


def syn(sport, dport):
    """An IPv4 TCP SYN from the client's lwIP address to the server's, checksums right."""
    src, dst = socket.inet_aton(harness.CLIENT_ADDR), socket.inet_aton(harness.SERVER_ADDR)
    segment = struct.pack("!HHIIBBHHH", sport, dport, 1000 + sport, 0, 5 << 4, 0x02, 65535, 0, 0)
    csum = checksum(src + dst + struct.pack("!BBH", 0, 6, len(segment)) + segment)
    segment = segment[:16] + struct.pack("!H", csum) + segment[18:]
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(segment), sport, 0, 64, 6, 0, src, dst)
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + segment


def udp_drops(port):
    """The kernel's drop count for the UDP socket bound to 127.0.0.1:port (/proc/net/udp)."""
    want = "0100007F:%04X" % port
    try:
        with open("/proc/net/udp") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[1] == want:
                    return int(fields[-1])
    except OSError:
        pass
    return 0


def echo_with_stranger(pair, data):
    """Lock-step echo of `data` through the forward; before each chunk the stranger sends a
    share of its SYNs to the server's link port. Returns (bytes back, sha256 hex)."""
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.1", 0))
    packets = [syn(40000 + i, pair.sport) for i in range(STRANGER_PACKETS)]
    chunks = (len(data) + CHUNK - 1) // CHUNK
    per_chunk = (STRANGER_PACKETS + chunks - 1) // chunks
    sock = pair.connect()
    got = hashlib.sha256()
    received = 0
    try:
        for index, offset in enumerate(range(0, len(data), CHUNK)):
            for packet in packets[index * per_chunk:(index + 1) * per_chunk]:
                stranger.sendto(packet, ("127.0.0.1", pair.server_udp))
            chunk = data[offset:offset + CHUNK]
            sock.sendall(chunk)
            want = len(chunk)
            while want:
                part = sock.recv(want)
                if not part:
                    raise TestFailure("echo: EOF after %d of %d bytes" % (received, len(data)))
                got.update(part)
                received += len(part)
                want -= len(part)
        sock.shutdown(socket.SHUT_WR)
        tail, _ = harness.recv_until_eof(sock, got)
        received += tail
    finally:
        sock.close()
        stranger.close()
    return received, got.hexdigest()


def run(phase, server_extra):
    data = harness.pseudo_random_bytes(0x0DD5 + len(server_extra), TRANSFER)
    with harness.Pair(mode="echo", server_extra=server_extra) as pair:
        received, digest = echo_with_stranger(pair, data)
        check(received == TRANSFER, "%s: echo returned %d bytes, expected %d" % (phase, received, TRANSFER))
        check(digest == harness.sha256(data), "%s: echo bytes differ" % phase)
        # One more round trip: the server has read everything queued before it.
        sock = pair.connect()
        sock.sendall(b"flush")
        check(sock.recv(5) == b"flush", "%s: post-injection echo failed" % phase)
        sock.close()
        kernel_drops = udp_drops(pair.server_udp)
        peers = "takes datagrams from: 127.0.0.1:%d)" % pair.client_udp
        check(peers in pair.server.stderr_text() or server_extra, "%s: the server did not log %r\n%s" % (
            phase, peers, pair.server.tail()))
        client, server = pair.stop_all()
    log("%s: echo byte-exact; server %s; client %s; kernel queue drops %d" % (
        phase, server.counters, client.counters, kernel_drops))
    return server.counters, client.counters, kernel_drops


def main():
    server, client, kernel_drops = run("default", [])
    check(STRANGER_PACKETS - kernel_drops <= server.rx_foreign <= STRANGER_PACKETS,
          "the server counted %d foreign datagrams, %d sent (%d dropped by the kernel)" % (
              server.rx_foreign, STRANGER_PACKETS, kernel_drops))
    check(server.rx_dropped >= server.rx_foreign, "foreign datagrams are not in rx dropped: %s" % (server,))
    check(client.rx_foreign == 0, "the client dropped its server's datagrams: %s" % (client,))
    log("phase 1: %d stranger datagrams dropped as foreign, the peer's traffic byte-exact" % server.rx_foreign)

    server, client, _ = run("--udp-allow 127.0.0.1", ["--udp-allow", "127.0.0.1"])
    check(server.rx_foreign == 0, "--udp-allow 127.0.0.1: %d datagrams still dropped as foreign" % server.rx_foreign)
    check(server.packets_in >= STRANGER_PACKETS, "--udp-allow: the stranger's packets did not reach the stack")
    log("phase 2: with --udp-allow the same datagrams are taken")
    log("PASS")


if __name__ == "__main__":
    harness.run(main)
