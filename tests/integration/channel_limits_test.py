#!/usr/bin/env python3
"""Connections to roam-server's control-channel port that never complete the Noise
handshake (issue 11, finding 5): they are refused beyond the per-address cap and reset when
the handshake time runs out, while the real client's channel and traffic go on.

roam-client gets one extra forward to the server's channel port (198.18.12.2:7001), so a
kernel connection to it becomes an lwIP connection to the channel port from the client's
carrier address: what anyone who reaches the port can open. 65 such connections say
nothing. The server takes 64 (the per-address cap of not-yet-established channels) and
resets the 65th at accept; the 64 are reset when the handshake limit (10 s) runs out: each
kernel socket sees its connection end. Meanwhile and afterwards an echo through the normal
forward is byte-exact, and the server's exit log counts 64 timed out and 1 refused by the
per-address cap. The client's own channel stays up (no second channel from it).
"""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import TestFailure, check, log  # noqa: E402

CHANNEL_PORT = 7001
PER_ADDRESS_CAP = 64
SILENT = PER_ADDRESS_CAP + 1
ENDED_WAIT = 60  # a bound against hangs: the limit is 10 s


def echo(pair, size, seed):
    data = harness.pseudo_random_bytes(seed, size)
    sock = pair.connect()
    try:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        _, back = harness.recv_until_eof(sock, keep=True)
    finally:
        sock.close()
    check(back == data, "echo of %d bytes came back as %d different bytes" % (size, len(back)))


def ended(sock):
    """True once the peer closed or reset the connection (EOF or an error)."""
    try:
        return sock.recv(1, socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def main():
    gate = harness.free_tcp_port()
    extra = ["-L", "127.0.0.1:%d:%s:%d" % (gate, harness.SERVER_ADDR, CHANNEL_PORT)]
    with harness.Pair(mode="echo", client_extra=extra) as pair:
        check(pair.server.wait_for_log(") established"), "the client's own channel was not established\n" +
              pair.server.tail())
        echo(pair, 64 * 1024, 1)
        silent = [socket.create_connection(("127.0.0.1", gate), timeout=harness.IO_TIMEOUT) for _ in range(SILENT)]
        check(pair.server.wait_for_log("refused: too many of its channels without a handshake"),
              "the server did not refuse the connection over the per-address cap\n" + pair.server.tail())
        echo(pair, 64 * 1024, 2)
        deadline = time.monotonic() + ENDED_WAIT
        while not all(ended(s) for s in silent):
            if time.monotonic() > deadline:
                raise TestFailure("%d of %d silent channel connections still open after %d s\n%s" % (
                    sum(not ended(s) for s in silent), SILENT, ENDED_WAIT, pair.server.tail()))
            time.sleep(0.1)
        log("all %d silent connections ended" % SILENT)
        check(pair.server.wait_for_log("no handshake within 10000 ms"), "no handshake timeout logged")
        for s in silent:
            s.close()
        echo(pair, 64 * 1024, 3)
        log("echo byte-exact before, during and after")
        pair.stop_all()
        text = pair.server.stderr_text()
    line = "channel limits: handshakes timed out %d, channels refused 1 (1 by the per-address cap)" % PER_ADDRESS_CAP
    check(line in text, "the server's exit log lacks %r:\n%s" % (line, pair.server.tail()))
    check(text.count(") established") == 1, "the client's channel was established %d times" % text.count(
        ") established"))
    log("PASS")


if __name__ == "__main__":
    harness.run(main)
