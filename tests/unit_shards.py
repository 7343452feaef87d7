#!/usr/bin/env python3
"""Runs the doctest unit binary as several processes at once (ctest's `unit` test).

   unit_shards.py BINARY [DOCTEST_ARGS...]     (ROAMSTACK_UNIT_SHARDS processes, default 4)

Why: the unit tests spend almost all their time waiting for lwIP's real timers (about 60 s
of wall time for 3 s of CPU), so processes side by side finish in a fraction of the time.
Every test case runs exactly once, in one process: the binary lists its cases, each process
gets every Nth of them by name (in the binary's order, so each process still runs its
cases in file order), and the counts of the processes must add up to the list. The test
cases share nothing between processes (temporary names carry the pid or come from mkdtemp;
sockets bind port 0). Each process's output is printed after all have ended, one after the
other. Exit 0 when every process passed and every test case ran.
"""
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET


def escape(name):
    # doctest splits filters at commas unless escaped with a backslash.
    return name.replace("\\", "\\\\").replace(",", "\\,")


def main():
    if len(sys.argv) < 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    binary, extra = sys.argv[1], sys.argv[2:]
    listed = subprocess.run([binary, "--list-test-cases", "--reporters=xml"] + extra,
                            stdout=subprocess.PIPE, check=True).stdout
    names = [case.get("name") for case in ET.fromstring(listed).iter("TestCase")]
    if not names:
        print("unit_shards: the binary lists no test case", file=sys.stderr)
        return 1
    # A name two files share is one filter: it runs both cases in the same process.
    unique = list(dict.fromkeys(names))
    shards = max(1, min(int(os.environ.get("ROAMSTACK_UNIT_SHARDS", "4")), len(unique)))
    runs = []
    for k in range(shards):
        mine = unique[k::shards]
        out = tempfile.TemporaryFile()
        proc = subprocess.Popen([binary, "-tc=" + ",".join(escape(n) for n in mine)] + extra,
                                stdout=out, stderr=subprocess.STDOUT)
        runs.append((proc, out, sum(names.count(n) for n in mine)))
    failed, ran = [], 0
    for k, (proc, out, wanted) in enumerate(runs):
        code = proc.wait()
        out.seek(0)
        text = out.read().decode(errors="replace")
        out.close()
        print("===== unit shard %d of %d: %d test case(s), exit %d" % (k + 1, shards, wanted, code))
        sys.stdout.write(text)
        counted = re.findall(r"\[doctest\] test cases:\s*(\d+)", text)
        got = int(counted[-1]) if counted else 0
        ran += got
        if code != 0:
            failed.append("shard %d exited %d" % (k + 1, code))
        if got != wanted:
            failed.append("shard %d ran %d test case(s), wanted %d" % (k + 1, got, wanted))
    sys.stdout.flush()
    if ran != len(names):
        failed.append("%d of %d test cases ran" % (ran, len(names)))
    if failed:
        print("unit_shards: FAILED: " + "; ".join(failed))
        return 1
    print("unit_shards: all %d test cases passed in %d processes" % (len(names), shards))
    return 0


if __name__ == "__main__":
    sys.exit(main())
