"""Debian's sshd on a loopback port of its own, for tests that carry ssh through Roamstack
(socks_test.py part 3, tests/netns/transparent_test.py): host and user keys made with
ssh-keygen in the test's directory, no system configuration read; the client trusts exactly
that host key under the name it dials (StrictHostKeyChecking=yes, -F /dev/null). Debian's
sshd insists on its privilege-separation directory /run/sshd: made only if missing and
removed again. Needs root.

    with Sshd(work, "[ssh.roam]:7000") as sshd:
        subprocess.run(sshd.ssh_argv(["-p", "7000", "ssh.roam", "echo hi"]), ...)
"""
import os
import shutil
import subprocess

import harness

SSHD = "/usr/sbin/sshd"
PRIVSEP = "/run/sshd"


class Sshd:
    def __init__(self, work, known_host):
        self.dir = os.path.join(work, "ssh")
        self.known_host = known_host
        self.port = harness.free_tcp_port()
        self.user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip() or "root"
        self.proc = None
        self.made_privsep = False

    def __enter__(self):
        d = self.dir
        os.makedirs(d, mode=0o700)
        for name in ("host", "user"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "roam-" + name, "-f",
                            os.path.join(d, name)], check=True)
        shutil.copyfile(os.path.join(d, "user.pub"), os.path.join(d, "authorized_keys"))
        with open(os.path.join(d, "host.pub")) as f, open(os.path.join(d, "known_hosts"), "w") as out:
            out.write("%s %s\n" % (self.known_host, " ".join(f.read().split()[:2])))
        config = os.path.join(d, "sshd_config")
        with open(config, "w") as f:
            f.write("Port %d\nListenAddress 127.0.0.1\nHostKey %s/host\nAuthorizedKeysFile %s/authorized_keys\n"
                    "PidFile none\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n"
                    "PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                    % (self.port, d, d))
        self.made_privsep = not os.path.isdir(PRIVSEP)
        if self.made_privsep:
            os.makedirs(PRIVSEP, mode=0o755)
        with open(os.path.join(d, "sshd.log"), "w") as log:
            self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", config], stdout=subprocess.DEVNULL, stderr=log)
        harness.wait_for_tcp(self.port)
        return self

    def ssh_argv(self, rest):
        """ssh with the test's key and known host, batch mode; `rest` names the host and command."""
        return ["ssh", "-F", "/dev/null", "-i", os.path.join(self.dir, "user"), "-o", "IdentitiesOnly=yes",
                "-o", "BatchMode=yes", "-o", "UserKnownHostsFile=" + os.path.join(self.dir, "known_hosts"),
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
                "-o", "ConnectTimeout=30"] + list(rest)

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.made_privsep:
            shutil.rmtree(PRIVSEP, ignore_errors=True)
