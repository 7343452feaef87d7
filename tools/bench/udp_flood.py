#!/usr/bin/env python3
"""A bounded, paced UDP flood for the lab: the link-oriented attacker of the roaming
benchmark (seed 002 Fig. 2(b)). Full-size datagrams fill a member's shaped access link
for a few hundred packets per second, so the attack costs the link, not the machine's
CPUs (which every namespace of the lab shares).

  udp_flood.py --rate PPS --count N --duration S [--dst IP[,IP...]] [--port 9] [--size 1200] [--control]

Sends --size-byte datagrams at --rate per second in total, round-robin over the current
targets (several targets share the rate: a diluted attack). The targets are --dst, then
with --control whatever stdin says: one line "dst IP[,IP...]" switches to those at once,
"dst -" pauses (no target), so one process follows a moving target without a restart.
Stops after --count datagrams or --duration seconds, whichever comes first, on SIGTERM /
SIGINT, or (--control) at stdin's EOF: the driver is gone. Prints "ready" first with
--control, and last one JSON line: sent, seconds, pps, switches. Addresses must be in 198.18.0.0/15 (the lab's).
"""
import argparse
import ipaddress
import json
import os
import select
import signal
import socket
import sys
import time

LAB = ipaddress.ip_network("198.18.0.0/15")
TICK_S = 0.005
SNDBUF = 16 * 1024 * 1024
SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)  # Linux's value; Python lacks the name

stop = False


def request_stop(*_):
    global stop
    stop = True


def parse_targets(text):
    """'IP[,IP...]' or '-' (none) -> list of addresses; ValueError outside the lab."""
    text = text.strip()
    if text in ("", "-"):
        return []
    out = []
    for part in text.split(","):
        address = ipaddress.ip_address(part.strip())
        if address not in LAB:
            raise ValueError("%s is outside 198.18.0.0/15" % address)
        out.append(str(address))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dst", default="-")
    parser.add_argument("--port", type=int, default=9)
    parser.add_argument("--size", type=int, default=1200)
    parser.add_argument("--rate", type=float, required=True, help="datagrams per second, all targets together")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--control", action="store_true", help="take target switches from stdin")
    args = parser.parse_args()
    if args.rate <= 0 or args.count < 0 or args.duration <= 0 or not 1 <= args.size <= 1472 \
            or not 1 <= args.port <= 65535:
        parser.error("want --rate > 0, --count >= 0, --duration > 0, 1 <= --size <= 1472, a port 1-65535")
    try:
        targets = parse_targets(args.dst)
    except ValueError as e:
        parser.error("--dst: %s" % e)
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # Never blocks: should the send buffer fill, the datagram is lost, as in a full queue
    # on a wire, and the --duration bound holds.
    sock.setblocking(False)
    # A send buffer larger than any shaped queue: with the default one (about 90 datagrams
    # in flight) the socket, not the link's queue, would bound how much of the flood waits
    # in the queue, and targets flooded together would share that bound.
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, SNDBUF)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
    payload = os.urandom(args.size)
    if args.control:
        print("ready", flush=True)  # the driver starts its clients once the flood runs
    began = time.monotonic()
    end = began + args.duration
    sent = due = switches = 0
    paced_from = began
    reader = sys.stdin.fileno()
    pending = b""
    while not stop and sent < args.count:
        now = time.monotonic()
        if now >= end:
            break
        wait = [reader] if args.control else []
        ready, _, _ = select.select(wait, [], [], TICK_S)
        if ready:
            chunk = os.read(reader, 4096)
            if not chunk:
                break  # the driver is gone: stop with it
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                words = line.decode(errors="replace").split()
                if len(words) == 2 and words[0] == "dst":
                    try:
                        targets = parse_targets(words[1])
                    except ValueError as e:
                        print("udp_flood: %s (ignored)" % e, file=sys.stderr)
                        continue
                    switches += 1
                    # A pause or a switch does not leave a debt to be sent in one burst.
                    paced_from, due = time.monotonic(), 0
        if not targets:
            paced_from, due = time.monotonic(), 0
            continue
        # Datagrams due since the pacing began, less those already sent in this pacing.
        owed = int((time.monotonic() - paced_from) * args.rate) - due
        for _ in range(max(0, min(owed, args.count - sent))):
            try:
                sock.sendto(payload, (targets[sent % len(targets)], args.port))
            except OSError:
                pass  # EAGAIN, ENOBUFS or no route: the datagram is lost
            sent += 1
            due += 1
    seconds = time.monotonic() - began
    print(json.dumps({"sent": sent, "seconds": round(seconds, 3), "pps": round(sent / seconds, 1) if seconds else 0,
                      "switches": switches}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
