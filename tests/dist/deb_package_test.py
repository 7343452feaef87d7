#!/usr/bin/env python3
"""The Debian package: `cpack -G DEB` from the existing build tree (dist/CMakeLists.txt).

  * cpack makes roamstack_VERSION_amd64.deb (into a scratch directory, not the build tree);
  * dpkg-deb -I: package roamstack, that version, amd64, Depends naming libuv1 and
    libsodium23, each of whose packages is installed on this host (the programs run here);
  * dpkg-deb -c: the programs in /usr/bin, the units in /usr/lib/systemd/system, the man
    pages, the tun.conf drop-in and docs, the dissector in /usr/share/roamstack/wireshark;
  * the units name /usr/bin (not the source's /usr/local/bin);
  * as root: `dpkg --root` installs it into a scratch root (dependencies forced: the
    scratch root has no libraries) and removes it again, leaving no file; otherwise the
    package is only extracted (dpkg-deb -x). Either way the installed roam-server,
    roam-client and roamctl run --help, roamctl makes a key, `man -l` renders an
    installed page, and the installed dissector is the tree's.

$ROAMSTACK_BUILD_DIR is the build tree (set by CTest), $ROAMSTACK_VERSION the project's
version. cpack, dpkg-deb and dpkg are required (cmake, dpkg-dev from tools/setup): never
skipped. Takes a few seconds (cpack strips the programs).
"""
import os
import shutil
import subprocess
import sys
import tempfile

SOURCE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("ROAMSTACK_BUILD_DIR") or os.path.join(SOURCE, "build")
VERSION = os.environ.get("ROAMSTACK_VERSION") or "0.1"
EXPECTED = [
    "usr/bin/roam-server", "usr/bin/roam-client", "usr/bin/roamctl",
    "usr/lib/systemd/system/roam-server@.service", "usr/lib/systemd/system/roam-client@.service",
    "usr/share/man/man1/roam-server.1", "usr/share/man/man1/roam-client.1", "usr/share/man/man1/roamctl.1",
    "usr/share/doc/roamstack/systemd/tun.conf", "usr/share/doc/roamstack/README.md",
    "usr/share/doc/roamstack/PROTOCOL.md", "usr/share/doc/roamstack/SECURITY.md",
    "usr/share/roamstack/wireshark/roamstack.lua",
]


def fail(message):
    print("FAIL deb_package_test.py: " + message)
    sys.exit(1)


def run(argv, check_ok=True, **kwargs):
    if "input" not in kwargs:
        kwargs["stdin"] = subprocess.DEVNULL
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, **kwargs)
    if check_ok and result.returncode != 0:
        fail("%s: exit %d\n%s%s" % (" ".join(argv), result.returncode, result.stdout[-2000:], result.stderr[-2000:]))
    return result


def control_fields(text):
    fields = {}
    for line in text.split("\n"):
        line = line.strip()
        if ":" in line and not line.startswith(("new Debian", "size ")):
            key, value = line.split(":", 1)
            fields.setdefault(key.strip(), value.strip())
    return fields


def main():
    for tool in ("cpack", "dpkg-deb", "dpkg"):
        if shutil.which(tool) is None:
            fail("%s is missing (tools/setup installs cmake and dpkg-dev)" % tool)
    config = os.path.join(BUILD, "CPackConfig.cmake")
    if not os.path.isfile(config):
        fail("no %s: configure the build first" % config)
    work = tempfile.mkdtemp(prefix="roam-deb-")
    try:
        check_package(config, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("PASS")


def check_package(config, work):
    out = os.path.join(work, "out")
    run(["cpack", "-G", "DEB", "--config", config, "-B", out])
    deb = os.path.join(out, "roamstack_%s_amd64.deb" % VERSION)
    if not os.path.isfile(deb):
        fail("cpack made %s, not %s" % (os.listdir(out), os.path.basename(deb)))
    print("package %s: %d bytes" % (os.path.basename(deb), os.path.getsize(deb)))

    info = control_fields(run(["dpkg-deb", "-I", deb]).stdout)
    for key, want in (("Package", "roamstack"), ("Version", VERSION), ("Architecture", "amd64")):
        if info.get(key) != want:
            fail("dpkg-deb -I: %s is %r, expected %r" % (key, info.get(key), want))
    depends = [d.strip().split(" ")[0] for d in info.get("Depends", "").split(",") if d.strip()]
    print("depends: %s" % ", ".join(depends))
    for needed in ("libuv1", "libsodium23"):
        if needed not in depends:
            fail("Depends lacks %s: %r" % (needed, info.get("Depends")))
    # Installed here, by name or as what an installed package provides (libspdlog1.10-fmt9).
    available = set()
    for line in run(["dpkg-query", "-W", "-f=${Package}|${Status}|${Provides}\n"]).stdout.split("\n"):
        parts = line.split("|")
        if len(parts) == 3 and "install ok installed" in parts[1]:
            available.add(parts[0].split(":")[0])
            available.update(p.strip().split(" ")[0] for p in parts[2].split(",") if p.strip())
    for package in depends:
        if package not in available:
            fail("Depends names %s, which no package installed here is or provides" % package)

    listing = run(["dpkg-deb", "-c", deb]).stdout
    paths = {line.split()[-1].lstrip("./") for line in listing.split("\n") if line.strip()}
    missing = [p for p in EXPECTED if p not in paths]
    if missing:
        fail("dpkg-deb -c: missing %s\n%s" % (missing, listing))

    root = os.path.join(work, "root")
    installed = os.geteuid() == 0
    if installed:
        admin = os.path.join(root, "var", "lib", "dpkg")
        for sub in ("info", "updates"):
            os.makedirs(os.path.join(admin, sub))
        open(os.path.join(admin, "status"), "w").close()
        run(["dpkg", "--root=" + root, "--force-depends", "-i", deb])
        status = run(["dpkg", "--root=" + root, "-s", "roamstack"]).stdout
        if "Status: install ok installed" not in status:
            fail("dpkg --root -s roamstack: %s" % status)
        print("dpkg --root: installed into %s" % root)
    else:
        run(["dpkg-deb", "-x", deb, root])
        print("not root: extracted with dpkg-deb -x")
    check_installed(root)
    if installed:
        run(["dpkg", "--root=" + root, "-r", "roamstack"])
        left = [os.path.join(d, f) for d, _, files in os.walk(root) for f in files
                if not os.path.join(d, f).startswith(os.path.join(root, "var"))]
        if left:
            fail("dpkg -r left files behind: %s" % left)
        print("dpkg --root -r: removed, nothing left")


def check_installed(root):
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0", MANPAGER="cat", PAGER="cat", LC_ALL="C.UTF-8")
    for name in ("roam-server", "roam-client", "roamctl"):
        result = run([os.path.join(root, "usr", "bin", name), "--help"], env=env)
        if not result.stdout.startswith("Usage: " + name):
            fail("installed %s --help printed %r" % (name, result.stdout[:200]))
    key = run([os.path.join(root, "usr", "bin", "roamctl"), "genkey"], env=env).stdout.strip()
    public = run([os.path.join(root, "usr", "bin", "roamctl"), "pubkey"], env=env, input=key + "\n").stdout.strip()
    if len(key) != 44 or len(public) != 44:
        fail("installed roamctl genkey | pubkey: %r, %r" % (key, public))
    for unit in ("roam-server@.service", "roam-client@.service"):
        with open(os.path.join(root, "usr", "lib", "systemd", "system", unit)) as f:
            text = f.read()
        program = unit.split("@")[0]
        if "/usr/local/" in text or "ExecStart=/usr/bin/%s --config" % program not in text:
            fail("installed %s does not run /usr/bin/%s" % (unit, program))
    result = run(["man", "-l", os.path.join(root, "usr", "share", "man", "man1", "roam-server.1")], env=env)
    if "SYNOPSIS" not in result.stdout or result.stderr.strip():
        fail("man -l on the installed roam-server.1: %r" % result.stderr)
    with open(os.path.join(root, "usr", "share", "roamstack", "wireshark", "roamstack.lua"), "rb") as f:
        installed = f.read()
    with open(os.path.join(SOURCE, "tools", "wireshark", "roamstack.lua"), "rb") as f:
        if f.read() != installed:
            fail("the installed dissector differs from tools/wireshark/roamstack.lua")
    print("installed programs run, units name /usr/bin, man page renders, dissector matches")


if __name__ == "__main__":
    main()
