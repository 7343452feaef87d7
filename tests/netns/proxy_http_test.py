#!/usr/bin/env python3
"""HTTP through the proxy topology (issue 12; the lab: tests/netns/proxy_lab.py): curl in
the client namespace, behind the strict NAT, downloads a 1 GiB file (x
ROAMSTACK_TEST_SCALE, at least 4 MiB) from a real HTTP server in the origin namespace
through roam-client's forward 127.0.0.1:9000 -> proxy A, while the proxy moves every 2 s
(A -> B -> A ...; each move "ok moved N of N", N >= 1).

The server is Debian's nginx with a config of the test's own (`nginx -p DIR -c CONF -e
stderr`, daemon off, one worker, 127.0.0.1:8080, sendfile), or `python3 -m http.server`
when nginx is not installed. curl is rate-limited to the file's size / 10 s so that the
transfer is live across several moves whatever the machine (at least 3 moves must happen
while it runs; the file is far larger than every window and buffer on the path). The
download must be complete (HTTP 200, curl exit 0) and SHA-256 exact.

Exit 0 passed, 1 failed, 77 skipped (not root, curl missing, or roam-server without proxy
mode).
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netns_lab import Failure, log  # noqa: E402
import netns_lab  # noqa: E402
import proxy_lab  # noqa: E402
from proxy_lab import HTTP_PORT, MIB, Mover, ProxyLab, end, scaled, wait_until  # noqa: E402

SECONDS = 10  # the download's length at curl's rate limit

def main(lab):
    www = os.path.join(lab.workdir, "www")
    os.makedirs(www)
    size = scaled(1 << 30)
    want = proxy_lab.write_seeded(os.path.join(www, "big.bin"), size, 1024)
    server, ready = proxy_lab.start_http_origin(lab, www)
    plab = ProxyLab(lab, HTTP_PORT)
    fetch = None
    try:
        lab.wait_log("http", ready)
        plab.start()
        rate = max(256 * 1024, size // SECONDS)
        t0 = time.monotonic()
        fetch, out = proxy_lab.spawn_fetch(lab, "big.bin", rate, "curl", 16 << 20)
        mover = Mover(plab, 2.0, active=lambda: fetch.poll() is None and not out.last("curl said:"))
        mover.start()
        try:
            wait_until(lambda: fetch.poll() is not None, 600 + 4 * SECONDS, "the download's end (hang detector)",
                       lambda: mover.error and str(mover.error))
        finally:
            moves = mover.stop()
        seconds = time.monotonic() - t0
        proxy_lab.check_download(fetch, out, size, want)
        during = [m for m in moves if m[0] - t0 < seconds]
        if proxy_lab.mode() != "relay" and len(during) < 3:
            raise Failure("only %d move(s) while curl ran (%.1f s): not across moves" % (len(during), seconds))
        log("ok   - %s: curl downloaded %d MiB in %.1f s (%.1f MiB/s) SHA-256 exact across %d proxy moves" % (
            server, size // MIB, seconds, size / MIB / seconds, len(during)))
        plab.stop()
        log("ok   - every roam process exited 0 on SIGTERM")
    except Failure as e:
        raise Failure("%s\n%s" % (e, plab.evidence()))
    finally:
        if fetch is not None:
            end(fetch)
        end(lab.procs["http"])
        proxy_lab.remove(os.path.join(www, "big.bin"))  # the logs stay on failure, not the big file


if __name__ == "__main__":
    proxy_lab.require("curl")
    netns_lab.run("ph", main, up_args=["--origin"])
