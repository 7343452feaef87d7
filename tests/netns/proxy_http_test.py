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
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netns_lab import Failure, log  # noqa: E402
import netns_lab  # noqa: E402
import proxy_lab  # noqa: E402
from proxy_lab import LPORT, MIB, Lines, Mover, ProxyLab, end, scaled, spawn_in, wait_until  # noqa: E402

HTTP_PORT = 8080
SECONDS = 10  # the download's length at curl's rate limit

# In namespace c: curl URL piped into a hash, at RATE bytes/s; prints "progress N" every
# STEP bytes and "done N SHA curl RC http CODE". PACING "curl": curl's --limit-rate (it
# catches up after a stall); "reader": the hash reads at most RATE bytes/s and never
# catches up (netns_proxy_resume: the download goes on well after a resume).
FETCH = r"""
import hashlib, subprocess, sys, time
url, rate, pacing, step = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
limit = ["--limit-rate", str(rate)] if pacing == "curl" else []
curl = subprocess.Popen(["curl", "-sS", "--fail"] + limit + ["-o", "-", "-w", "%{stderr}http %{http_code}\n", url],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
h, n, mark = hashlib.sha256(), 0, 0
while True:
    d = curl.stdout.read1(1 << 16) if pacing == "reader" else curl.stdout.read(1 << 20)
    if not d:
        break
    if pacing == "reader":
        time.sleep(len(d) / rate)
    h.update(d)
    n += len(d)
    if n - mark >= step:
        mark = n
        print("progress", n, flush=True)
err = curl.stderr.read().decode(errors="replace").strip().splitlines()
rc = curl.wait()
code = [l.split()[1] for l in err if l.startswith("http ")]
print("curl said:", " | ".join(l for l in err if not l.startswith("http ")), flush=True)
print("done", n, h.hexdigest(), "curl", rc, "http", code[0] if code else "?", flush=True)
"""


def nginx_conf(workdir, root):
    d = os.path.join(workdir, "nginx")
    os.makedirs(d)
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write("""daemon off;
master_process on;
worker_processes 1;
user root;
pid %(d)s/nginx.pid;
error_log stderr notice;
events { worker_connections 64; }
http {
    access_log off;
    default_type application/octet-stream;
    sendfile on;
    client_body_temp_path %(d)s/body;
    proxy_temp_path %(d)s/proxy;
    fastcgi_temp_path %(d)s/fastcgi;
    uwsgi_temp_path %(d)s/uwsgi;
    scgi_temp_path %(d)s/scgi;
    server {
        listen 127.0.0.1:%(port)d;
        root %(root)s;
    }
}
""" % {"d": d, "port": HTTP_PORT, "root": root})
    return ["nginx", "-p", d, "-c", conf, "-e", "stderr"]


def main(lab):
    www = os.path.join(lab.workdir, "www")
    os.makedirs(www)
    size = scaled(1 << 30)
    want = proxy_lab.write_seeded(os.path.join(www, "big.bin"), size, 1024)
    if shutil.which("nginx"):
        server, ready = "nginx", "start worker process"
        lab.start("http", "o", nginx_conf(lab.workdir, www))
    else:
        server, ready = "python3 http.server", "Serving HTTP"
        lab.start("http", "o", [sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", "--directory", www,
                                str(HTTP_PORT)])
    plab = ProxyLab(lab, HTTP_PORT)
    fetch = None
    try:
        lab.wait_log("http", ready)
        plab.start()
        rate = max(256 * 1024, size // SECONDS)
        t0 = time.monotonic()
        fetch = spawn_in(lab, "c", [sys.executable, "-c", FETCH, "http://127.0.0.1:%d/big.bin" % LPORT, str(rate), "curl",
                                    str(16 << 20)],
                         stdin=False)
        out = Lines(fetch)
        mover = Mover(plab, 2.0, active=lambda: fetch.poll() is None and not out.last("curl said:"))
        mover.start()
        try:
            wait_until(lambda: fetch.poll() is not None, 600 + 4 * SECONDS, "the download's end (hang detector)",
                       lambda: mover.error and str(mover.error))
        finally:
            moves = mover.stop()
        seconds = time.monotonic() - t0
        out.join(10)
        done = out.last("done")
        if not done:
            raise Failure("the fetcher exited %s: %s" % (fetch.returncode, out.lines[-5:]))
        _, count, digest, _, rc, _, code = done.split()
        during = [m for m in moves if m[0] - t0 < seconds]
        log("#    %s; %s" % (out.last("curl said:"), done))
        if rc != "0" or code != "200":
            raise Failure("curl exit %s, HTTP %s after %s bytes" % (rc, code, count))
        if int(count) != size or digest != want:
            raise Failure("downloaded %s bytes, sha256 %s; want %d, %s" % (count, digest, size, want))
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
