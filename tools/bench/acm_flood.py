#!/usr/bin/env python3
"""Flood of forged Address Change Messages toward a roam-client's UDP carrier link.

Each datagram is what the link carries: one IPv4 packet, here a TCP segment spoofed from a
server's control-channel endpoint (SRC:7001) to the client's channel port, carrying one
channel frame of an ACM's size with random counter, ciphertext and tag: what an off-path
attacker who knows the ports can send (it cannot know the sequence numbers). Spoofed
sources must be in 198.18.0.0/15.

  acm_flood.py --link 127.0.0.1:PORT --src 198.18.12.2 --dst 198.18.11.2 --dport N
               --count C --seconds S [--frame-bytes 83]

Stops after COUNT datagrams or SECONDS, whichever comes first; prints one JSON line
{"sent": n, "seconds": s, "pps": p}.
"""
import argparse
import ipaddress
import json
import os
import random
import socket
import struct
import sys
import time

SPOOF_RANGE = ipaddress.ip_network("198.18.0.0/15")


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def forged_segment(rng, src, dst, dport, frame_bytes):
    body = rng.randbytes(frame_bytes - 2)
    payload = struct.pack("!H", len(body)) + body
    tcp = struct.pack("!HHIIBBHHH", 7001, dport, rng.getrandbits(32), rng.getrandbits(32), 5 << 4, 0x18, 65535, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp) + len(payload))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp + payload)) + tcp[18:]
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, rng.getrandbits(16), 0, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return ip + tcp + payload


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--link", required=True, help="the client's UDP link, HOST:PORT")
    parser.add_argument("--src", required=True, help="spoofed source (a server's carrier address)")
    parser.add_argument("--dst", required=True, help="the client's carrier address")
    parser.add_argument("--dport", type=int, required=True, help="the client's control-channel port")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--frame-bytes", type=int, default=83)
    args = parser.parse_args()
    if ipaddress.ip_address(args.src) not in SPOOF_RANGE:
        sys.exit("acm_flood.py: spoofed sources must be in %s" % SPOOF_RANGE)
    if args.count <= 0 or args.seconds <= 0:
        sys.exit("acm_flood.py: --count and --seconds must be positive")
    host, port = args.link.rsplit(":", 1)
    rng = random.Random(int.from_bytes(os.urandom(8), "big"))
    src, dst = socket.inet_aton(args.src), socket.inet_aton(args.dst)
    packets = [forged_segment(rng, src, dst, args.dport, args.frame_bytes) for _ in range(4096)]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    target = (host, int(port))
    sent = 0
    started = time.monotonic()
    deadline = started + args.seconds
    while sent < args.count:
        for packet in packets[: min(len(packets), args.count - sent)]:
            try:
                sock.sendto(packet, target)
            except (BlockingIOError, ConnectionRefusedError):
                pass
            sent += 1
        if time.monotonic() >= deadline:
            break
    elapsed = time.monotonic() - started
    print(json.dumps({"sent": sent, "seconds": round(elapsed, 3), "pps": round(sent / elapsed)}))


if __name__ == "__main__":
    main()
