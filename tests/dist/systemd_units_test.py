#!/usr/bin/env python3
"""dist/systemd: every unit passes `systemd-analyze verify` with no complaint at all, alone
and with the tun.conf drop-in, and `systemd-analyze security --offline=true` rates its
sandbox at most 3.0 ("OK"). systemd-analyze needs no running systemd for either.

The units name /usr/local/bin (where `cmake --install` puts the programs); verify checks
that each command exists, so the copies checked here point at the build's programs
instead (ROAM_SERVER, ROAM_CLIENT, ROAMCTL). Nothing else is changed. A template is
checked as an instance, roam-*@lab.service. If systemd-analyze is missing the test fails
(tools/setup installs systemd); it never skips.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

SOURCE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNITS = os.path.join(SOURCE, "dist", "systemd")
PROGRAMS = {name: os.environ.get(var) or os.path.join(SOURCE, "build", "apps", name)
            for name, var in (("roam-server", "ROAM_SERVER"), ("roam-client", "ROAM_CLIENT"),
                              ("roamctl", "ROAMCTL"))}
MAX_EXPOSURE = 3.0


def fail(message):
    print("FAIL systemd_units_test.py: " + message)
    sys.exit(1)


def analyze(*args):
    return subprocess.run(["systemd-analyze"] + list(args), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=120)


def localized(text):
    for name, path in PROGRAMS.items():
        text = text.replace("/usr/local/bin/%s " % name, path + " ")
    return text


def main():
    if shutil.which("systemd-analyze") is None:
        fail("systemd-analyze is missing (tools/setup installs systemd)")
    units = sorted(f for f in os.listdir(UNITS) if f.endswith(".service"))
    if sorted(units) != ["roam-client@.service", "roam-server@.service"]:
        fail("unexpected units %r" % units)
    with open(os.path.join(UNITS, "tun.conf")) as f:
        tun = f.read()
    if "AmbientCapabilities=CAP_NET_ADMIN" not in tun:
        fail("tun.conf grants no CAP_NET_ADMIN")
    work = tempfile.mkdtemp(prefix="roam-systemd-")
    try:
        for unit in units:
            with open(os.path.join(UNITS, unit)) as f:
                text = f.read()
            for required in ("DynamicUser=yes", "CapabilityBoundingSet=CAP_NET_ADMIN\n", "AmbientCapabilities=\n",
                             "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "NoNewPrivileges=yes",
                             "RestrictAddressFamilies=AF_INET AF_INET6 AF_NETLINK AF_UNIX", "StateDirectory=",
                             "Restart=on-failure", "--config /etc/roamstack/%i.toml"):
                if required not in text:
                    fail("%s lacks %r" % (unit, required))
            for variant, extra in (("", ""), ("-tun", "\n" + tun)):
                instance = unit.replace("@.service", "@lab%s.service" % variant)
                path = os.path.join(work, instance)
                with open(path, "w") as f:
                    f.write(localized(text) + extra)
                result = analyze("verify", "--man=no", path)
                if result.returncode != 0 or result.stderr.strip() or result.stdout.strip():
                    fail("systemd-analyze verify %s: exit %d\n%s%s" % (instance, result.returncode, result.stdout,
                                                                       result.stderr))
                result = analyze("security", "--offline=true", "--no-pager", path)
                match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout + result.stderr)
                if match is None:
                    fail("systemd-analyze security %s: no rating in %r" % (instance, result.stdout[-400:]))
                exposure = float(match.group(1))
                if exposure > MAX_EXPOSURE:
                    fail("%s: exposure %.1f above %.1f\n%s" % (instance, exposure, MAX_EXPOSURE, result.stdout))
                print("systemd: %s verified, exposure %.1f" % (instance, exposure))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("PASS")


if __name__ == "__main__":
    main()
