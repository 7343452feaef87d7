#!/usr/bin/python3
"""Replayed segments on the carrier below a control channel (issue 11, finding 5) must not
reset the channel.

Topology: harness.TwoServers (echo) with a harness.Relay between all nodes (an on-path
attacker that sees every carrier packet and can send its own), an echo pump through the
client's forward throughout, a genuine move A -> B so A's channel has carried an ACM.

Phase 1 (no --segment-mac): every recorded segment of both control channels (SYN, SYN-ACK,
the Noise handshake, REGISTER, the ACM, ACKs) is sent again exactly as it was, to the node
it went to. TCP drops each (its bytes are below what the receiver expects): no channel
closes at either end, the client counts no forged or replayed frame, and a genuine move
B -> A still works over the same channels.

Phase 2 (--segment-mac on every node): the attacker re-sequences instead: A's recorded ACM
frame sent again at exactly the sequence number the client expects next on A's channel
(what makes the channel reset itself without the option: acm_attack case b), and the same
frame on the channel with B. The channels' own connections are signed once their
handshakes are done, so the client's segment MAC drops both (missing MAC); the channel
never sees the bytes: it counts no replayed or forged frame, it is never closed or opened
again, and a genuine move B -> A works over it. The echo is byte-exact in both phases.
"""
import os
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import TestFailure, check, log  # noqa: E402
from acm_attack_test import (CHANNEL_PORT, CHUNK, ChannelRecorder, EchoPump, follower_counters,  # noqa: E402
                             mac_counters, segment, wait_until)


class SegmentLog:
    """Every control-channel TCP segment the relay forwards: (destination node, bytes)."""

    def __init__(self, recorder):
        self.recorder = recorder
        self.lock = threading.Lock()
        self.segments = []

    def watch(self, name, data):
        self.recorder.watch(name, data)
        if len(data) < 40 or data[0] >> 4 != 4 or data[9] != 6:
            return
        ihl = (data[0] & 0x0F) * 4
        if CHANNEL_PORT in struct.unpack("!HH", data[ihl:ihl + 4]):
            with self.lock:
                self.segments.append((name, bytes(data)))

    def all(self):
        with self.lock:
            return list(self.segments)


def closed_channels(t):
    """Lines saying a control channel ended, at the client and at both servers."""
    needles = [(t.client, "control channel to "), (t.servers["A"], "control channel from "),
               (t.servers["B"], "control channel from ")]
    return sum(sum(1 for line in proc.stderr_text().splitlines() if needle in line and " closed: " in line)
               for proc, needle in needles)


def channels_established(t):
    return t.client.stderr_text().count(") established from local port")


def start_and_move(t, pump):
    pump.start()
    pump.wait_for(8 * CHUNK)
    wait_until("A to register the connection", lambda: t.status("A")["registrations"] >= 1)
    started = time.monotonic()
    t.migrate("A", "B", expect_moved=1)
    wait_until("the client's ACK of the ACM", lambda: t.status("A")["acms_applied"] == 1)
    wait_until("B to register the connection", lambda: t.status("B")["registrations"] >= 1)
    pump.flowing("the genuine move A -> B")
    return started


def move_back(t, pump):
    t.migrate("B", "A", expect_moved=1)
    wait_until("the client's ACK of B's ACM", lambda: t.status("B")["acms_applied"] == 1)
    pump.flowing("the genuine move B -> A")
    check(t.status("A")["sessions"] == 1, "the session did not come back to A")


def phase_pure_replay():
    log("phase 1: every channel segment replayed exactly")
    recorder = ChannelRecorder()
    segments = SegmentLog(recorder)
    relay = harness.Relay(watch=segments.watch)
    relay.start()
    try:
        with harness.TwoServers(mode="echo", routes=relay.routes) as t:
            pump = EchoPump(t.connect())
            start_and_move(t, pump)
            recorded = segments.all()
            check(any(name == "client" and len(data) > 60 for name, data in recorded),
                  "no channel segment with data from a server was recorded")
            before = (closed_channels(t), channels_established(t))
            for name, data in recorded:
                relay.inject(name, data)
            pump.flowing("%d replayed channel segments" % len(recorded))
            move_back(t, pump)
            after = (closed_channels(t), channels_established(t))
            check(after == before, "channels closed/established %s before the replay, %s after:\n%s" % (
                before, after, t.client.tail()))
            pump.finish()
            t.client.stop()
            counters = follower_counters(t.client)
            log("client: %s" % counters)
            check(counters["replayed"] == 0 and counters["forged"] == 0,
                  "a replayed segment reached a channel: %s" % counters)
            check(counters["opened"] == 2, "the client opened %d channels, expected 2" % counters["opened"])
            log("%d segments replayed: no channel noticed" % len(recorded))
    finally:
        relay.close()


def phase_resequenced_with_mac():
    log("phase 2: --segment-mac: A's ACM frame re-sequenced into the channels")
    recorder = ChannelRecorder()
    relay = harness.Relay(watch=recorder.watch)
    relay.start()
    try:
        mac = ["--segment-mac"]
        with harness.TwoServers(mode="echo", routes=relay.routes, server_extra=mac, client_extra=mac) as t:
            pump = EchoPump(t.connect())
            started = start_and_move(t, pump)
            with recorder.lock:
                acm = [p for p in recorder.payloads if p[0] >= started and p[1] == harness.SERVER_ADDR]
            check(len(acm) >= 1, "the relay saw no ACM from A")
            frame = acm[-1][5]
            before = (closed_channels(t), channels_established(t))
            # At the number the client expects next from A: TCP alone would take it.
            port, expected, client_seq = recorder.channel_to(harness.SERVER_ADDR)
            relay.inject("client", segment(harness.SERVER_ADDR, port, expected, client_seq, frame))
            port, expected, client_seq = recorder.channel_to(harness.SERVER_B_ADDR)
            relay.inject("client", segment(harness.SERVER_B_ADDR, port, expected, client_seq, frame))
            # The client reads its link in order: echo that arrived after them means it read them.
            pump.flowing("the re-sequenced frames")
            move_back(t, pump)
            after = (closed_channels(t), channels_established(t))
            check(after == before, "channels closed/established %s before the injection, %s after:\n%s" % (
                before, after, t.client.tail()))
            pump.finish()
            t.client.stop()
            counters = follower_counters(t.client)
            mac_at_exit = mac_counters(t.client)
            log("client: %s; segment MAC %s" % (counters, mac_at_exit))
            check(counters["replayed"] == 0 and counters["forged"] == 0,
                  "an injected frame reached a channel: %s" % counters)
            check(counters["opened"] == 2 and counters["established"] == 2,
                  "a channel was opened again: %s" % counters)
            check(mac_at_exit["missing"] >= 2, "the injected segments were not dropped: %s" % mac_at_exit)
    finally:
        relay.close()


def main():
    phase_pure_replay()
    phase_resequenced_with_mac()


if __name__ == "__main__":
    harness.run(main)
