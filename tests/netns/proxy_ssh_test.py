#!/usr/bin/env python3
"""OpenSSH through the proxy topology (issue 12; the lab: tests/netns/proxy_lab.py): Debian's
sshd runs unmodified in the origin namespace, `ssh` and `scp` in the client namespace
behind the strict NAT, through roam-client's forward 127.0.0.1:9000 -> proxy A.

sshd: host and user keys made with ssh-keygen in the test's work directory, `sshd -D -e
-f CONFIG` on 127.0.0.1:2222 inside namespace o (no system configuration is read or
touched; Debian's sshd needs its privilege-separation directory /run/sshd, which the test
creates only if missing and then removes again). The client trusts exactly that host key
(a known_hosts file of its own, StrictHostKeyChecking=yes, -F /dev/null).

  interactive  one `ssh -T` session running /bin/sh: a command every 50 ms
               (`echo R <i> <random hex>`), each answer checked exactly and in order,
               while the proxy moves 10 times (A -> B -> A ...; each "ok moved N of N",
               N >= 1, after at least 10 more answers); then `exit`, ssh exits 0.
               An unanswered command for 60 s fails the test (hang detector).
  scp          `scp` of a 256 MiB file (x ROAMSTACK_TEST_SCALE, at least 4 MiB) from the
               origin to the client, rate-limited (scp -l) so that it lasts about 8 s,
               the proxy moving every 1.5 s; at least 2 moves must happen while it runs;
               the copy's SHA-256 must equal the original's.

Finally every roam process exits 0 on SIGTERM. Exit 0 passed, 1 failed, 77 skipped (not
root, sshd/ssh/scp missing, or roam-server without proxy mode).
"""
import hashlib
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netns_lab import Failure, log  # noqa: E402
import netns_lab  # noqa: E402
import proxy_lab  # noqa: E402
from proxy_lab import LPORT, MIB, Lines, Mover, ProxyLab, end, scaled, spawn_in, wait_until  # noqa: E402

SSHD = "/usr/sbin/sshd"
SSH_PORT = 2222
MOVES = 10
PRIVSEP = "/run/sshd"

# The interactive session's driver, in namespace c: ssh ARGS... runs /bin/sh remotely; one
# command every 50 ms until "stop" on stdin; prints "answered I" per answer, then
# "done I" (or "error ...").
DRIVER = r"""
import os, subprocess, sys, threading, time
ssh = subprocess.Popen(sys.argv[1:] + ["/bin/sh"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, bufsize=0)
sent, answered, stop, err = [], [0], threading.Event(), []
def control():
    sys.stdin.readline()
    stop.set()
threading.Thread(target=control, daemon=True).start()
def reader():
    f = ssh.stdout
    for line in iter(f.readline, b""):
        i = answered[0]
        want = ("R %d %s\n" % (i, sent[i][1])).encode() if i < len(sent) else None
        if line != want:
            err.append("answer %d: got %r, want %r" % (i, line, want))
            stop.set()
            return
        answered[0] += 1
        print("answered", answered[0], flush=True)
threading.Thread(target=reader, daemon=True).start()
i = 0
while not stop.is_set():
    token = os.urandom(8).hex()
    sent.append((time.monotonic(), token))
    ssh.stdin.write(b"echo R %d %s\n" % (i, token.encode()))
    i += 1
    time.sleep(0.05)
    if answered[0] < len(sent) and time.monotonic() - sent[answered[0]][0] > 60:
        err.append("command %d unanswered for 60 s" % answered[0])
        break
deadline = time.monotonic() + 60
while not err and answered[0] < len(sent) and time.monotonic() < deadline:
    time.sleep(0.05)
if err or answered[0] < len(sent):
    print("error", err[0] if err else "only %d of %d answered" % (answered[0], len(sent)), flush=True)
    ssh.kill()
    sys.exit(1)
ssh.stdin.write(b"exit\n")
rc = ssh.wait(60)
print("done", answered[0], "ssh exit", rc, flush=True)
"""


def ssh_setup(workdir):
    """Keys, sshd config and client options in workdir/ssh; returns (sshd argv, ssh options)."""
    d = os.path.join(workdir, "ssh")
    os.makedirs(d, mode=0o700)
    for name in ("host", "user"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "roam-" + name, "-f",
                        os.path.join(d, name)], check=True)
    with open(os.path.join(d, "user.pub")) as f, open(os.path.join(d, "authorized_keys"), "w") as out:
        out.write(f.read())
    with open(os.path.join(d, "host.pub")) as f, open(os.path.join(d, "known_hosts"), "w") as out:
        out.write("[127.0.0.1]:%d %s\n" % (LPORT, " ".join(f.read().split()[:2])))
    config = os.path.join(d, "sshd_config")
    with open(config, "w") as f:
        f.write("""Port %d
ListenAddress 127.0.0.1
HostKey %s/host
AuthorizedKeysFile %s/authorized_keys
PidFile none
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
Subsystem sftp internal-sftp
LogLevel VERBOSE
""" % (SSH_PORT, d, d))
    user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip() or "root"
    options = ["-F", "/dev/null", "-i", os.path.join(d, "user"), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
               "-o", "UserKnownHostsFile=" + os.path.join(d, "known_hosts"), "-o", "GlobalKnownHostsFile=/dev/null",
               "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=30"]
    return [SSHD, "-D", "-e", "-f", config], options, user


def interactive(lab, plab, options, user):
    driver = spawn_in(lab, "c", [sys.executable, "-c", DRIVER, "ssh", "-T", "-p", str(LPORT)] + options
                      + [user + "@127.0.0.1"])
    out = Lines(driver)
    try:
        def answered():
            line = out.last("answered")
            return int(line.split()[1]) if line else 0

        def broken():
            bad = out.last("error") or out.last("done")
            return bad or ("driver exited %s: %s" % (driver.returncode, out.lines[-3:])
                           if driver.poll() is not None else None)

        wait_until(lambda: answered() >= 20, 60, "the first 20 answers over ssh", broken)
        log("ok   - interactive: ssh session up through the proxy, commands answered")
        for i in range(MOVES):
            result = plab.migrate(1)
            mark = answered()
            wait_until(lambda: answered() >= mark + 10, 90, "10 more answers after move %d" % (i + 1), broken)
            if result:
                log("ok   - interactive: move %d: %s (roamctl %.1f ms); %d commands answered" % (
                    i + 1, result[0], result[1], answered()))
        driver.stdin.write("stop\n")
        driver.stdin.flush()
        driver.wait(120)
        done = out.last("done")
        if driver.returncode != 0 or not done or not done.endswith("ssh exit 0"):
            raise Failure("interactive session: %s" % (out.last("error") or out.lines[-3:]))
        log("ok   - interactive: %s commands answered exactly, in order, across %d moves; ssh exited 0" % (
            done.split()[1], len(plab.moves)))
    finally:
        end(driver)


def copy(lab, plab, options, user):
    size = scaled(256 * MIB)
    src = os.path.join(lab.workdir, "big.bin")
    dst = os.path.join(lab.workdir, "copy.bin")
    want = proxy_lab.write_seeded(src, size, 256)
    kbit = max(1000, size * 8 // 1000 // 8)  # about 8 s
    t0 = time.monotonic()
    scp = spawn_in(lab, "c", ["scp", "-q", "-l", str(kbit), "-P", str(LPORT)] + options
                   + ["%s@127.0.0.1:%s" % (user, src), dst], stdin=False)
    mover = Mover(plab, 1.5, active=lambda: scp.poll() is None)
    mover.start()
    try:
        text, _ = scp.communicate(timeout=600)
    finally:
        moves = mover.stop()
        end(scp)
    seconds = time.monotonic() - t0
    if scp.returncode != 0:
        raise Failure("scp exited %s: %s" % (scp.returncode, text.strip()[-500:]))
    during = [m for m in moves if m[0] - t0 < seconds]
    if proxy_lab.mode() != "relay" and len(during) < 2:
        raise Failure("only %d move(s) while scp ran (%.1f s): not across moves" % (len(during), seconds))
    h = hashlib.sha256()
    with open(dst, "rb") as f:
        for block in iter(lambda: f.read(16 * MIB), b""):
            h.update(block)
    got, copied = h.hexdigest(), os.path.getsize(dst)
    os.unlink(dst)
    if got != want or copied != size:
        raise Failure("scp copy: %d bytes, sha256 %s; want %d, %s" % (copied, got, size, want))
    log("ok   - scp: %d MiB in %.1f s (%.1f MiB/s), SHA-256 exact, across %d moves" % (
        size // MIB, seconds, size / MIB / seconds, len(during)))


def main(lab):
    made_privsep = False
    plab = ProxyLab(lab, SSH_PORT)
    try:
        sshd_argv, options, user = ssh_setup(lab.workdir)
        if not os.path.isdir(PRIVSEP):
            os.makedirs(PRIVSEP, mode=0o755)
            made_privsep = True
        lab.start("sshd", "o", sshd_argv)
        lab.wait_log("sshd", "Server listening on 127.0.0.1 port %d" % SSH_PORT)
        plab.start()
        interactive(lab, plab, options, user)
        copy(lab, plab, options, user)
        plab.stop()
        log("ok   - every roam process exited 0 on SIGTERM")
    except Failure as e:
        raise Failure("%s\n%s" % (e, plab.evidence()))
    finally:
        if "sshd" in lab.procs:
            end(lab.procs["sshd"])
        for name in ("big.bin", "copy.bin"):  # the logs stay on failure, not the big files
            proxy_lab.remove(os.path.join(lab.workdir, name))
        if made_privsep:
            try:
                os.rmdir(PRIVSEP)
            except OSError:
                pass


if __name__ == "__main__":
    proxy_lab.require(SSHD, "ssh", "scp", "ssh-keygen")
    netns_lab.run("px", main, up_args=["--origin"])
