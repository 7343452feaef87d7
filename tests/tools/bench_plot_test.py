#!/usr/bin/python3
"""tools/bench/plot.py: recorded final JSON lines of every mapped benchmark
(bench_plot_fixtures.txt: `NAME JSON` per line, taken from tools/bench/README.md's
figures) become PNGs.

1. matplotlib imports here (Debian's python3-matplotlib under /usr/bin/python3, from
   tools/setup): without it the test fails, it does not skip.
2. For each fixture, as a benchmark's whole output (human lines, then the JSON line): a
   PNG is written (signature, IHDR of a sane size, IEND at the end); once through the
   command line (stdin, exit 0), the others by plot.render in this process.
3. The mapping pairs each figure with its reference: the panels plot.py computes carry the
   values and ratio of the JSON (checked for one figure per benchmark) and the samples;
   roaming's lines over the discovery delay carry one value per delay.
4. No JSON line, or a JSON line of no mapped figure: exit 1 and no file.
Nothing timed.
"""
import os
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
PLOT = os.path.join(ROOT, "tools", "bench", "plot.py")
FIXTURES = os.path.join(HERE, "bench_plot_fixtures.txt")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# One figure per benchmark: (title, ours, reference, samples of ours) as in the fixture.
EXPECTED = {
    "throughput": ("carrier on TUN links", 8.08, 12.9, [3.5, 8.3, 8.08]),
    "kernel_veth": ("kernel TCP over the lab's veths", None, 10.7, []),
    "migrate": ("1000 connections moved", 86.7, 3637, [82, 86.7, 114]),
    "acm": ("upload under a forged-ACM flood", 1.95, (3.21 + 3.07) / 2, []),
    "handover": ("1 connection through NAT", 4.03, 1.71, [4.03, 4.19, 2.67]),
    "scale": ("open 10000 connections", 15.425, 1.042, []),
    "proxy": ("client move: changeover", 6.92, 6.57, [8.5, 8.2, 6.9, 6.8, 4.3]),
    "roaming": ("response time, no attack", 0.986, 1.206, [0.337, 0.368, 0.578, 0.544, 0.437, 0.365]),
}


def fail(message):
    print("FAIL: " + message, file=sys.stderr)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def check_png(path, what):
    check(os.path.exists(path), "%s: no PNG written" % what)
    data = open(path, "rb").read()
    check(data[:8] == PNG_SIGNATURE, "%s: not a PNG (starts %r)" % (what, data[:8]))
    check(data[12:16] == b"IHDR", "%s: no IHDR chunk first" % what)
    width, height = struct.unpack(">II", data[16:24])
    check(200 <= width <= 4000 and 150 <= height <= 4000, "%s: odd size %dx%d" % (what, width, height))
    check(data[-8:-4] == b"IEND", "%s: the PNG does not end with IEND" % what)
    return len(data), width, height


def run_plot(args, stdin_text):
    return subprocess.run([sys.executable, PLOT] + args, input=stdin_text, capture_output=True, text=True,
                          timeout=300)


def main():
    try:
        import matplotlib
    except ImportError:
        fail("python3-matplotlib is missing under %s (tools/setup installs it)" % sys.executable)
    print("matplotlib %s" % matplotlib.__version__)
    sys.path.insert(0, os.path.dirname(PLOT))
    import plot

    fixtures = []
    with open(FIXTURES) as f:
        for line in f:
            if line.strip():
                name, _, json_line = line.strip().partition(" ")
                fixtures.append((name, json_line))
    check(sorted(name for name, _ in fixtures) == sorted(plot.FIGURES), "fixtures %s, mapped benchmarks %s" % (
        sorted(name for name, _ in fixtures), sorted(plot.FIGURES)))

    with tempfile.TemporaryDirectory(prefix="roam-plot-test-") as tmp:
        for name, json_line in fixtures:
            out = os.path.join(tmp, name + ".png")
            output = "%s: median over 3 reps\n  {not json\n%s\n" % (name, json_line)
            if name == "migrate":  # the command line once, as tools/bench/run calls it
                done = run_plot(["--bench", name, "-", out], output)
                check(done.returncode == 0, "%s: plot.py exit %d: %s" % (name, done.returncode, done.stderr))
            else:  # the others in this process: matplotlib is imported once
                check(plot.render(plot.last_json_object(output), name, out) > 0, "%s: nothing drawn" % name)
            size, width, height = check_png(out, name)

            result = plot.last_json_object(output)
            panels = plot.panels(result, name)
            title, ours, reference, samples = EXPECTED[name]
            panel = [p for p in panels if p["title"] == title]
            check(len(panel) == 1, "%s: no panel %r among %s" % (name, title, [p["title"] for p in panels]))
            bars = panel[0]["bars"]
            values = [b[1] for b in bars]
            want = [v for v in (ours, reference) if v is not None]
            check(len(values) == len(want) and all(abs(a - b) < 1e-9 for a, b in zip(values, want)),
                  "%s: %r shows %r, expected %r" % (name, title, values, want))
            if ours is not None:
                check(abs(panel[0]["ratio"] - ours / reference) < 1e-9, "%s: ratio %r" % (name, panel[0]["ratio"]))
            check(bars[0][2] == [float(s) for s in samples], "%s: samples %r, expected %r" % (
                name, bars[0][2], samples))
            print("%-12s %d panel(s), PNG %dx%d, %d bytes" % (name, len(panels), width, height, size))

        # roaming's Fig. 2(b): lines over the discovery delay, one value per delay.
        lines = [p for p in plot.panels(plot.last_json_object(dict(fixtures)["roaming"]), "roaming")
                 if p.get("kind") == "lines"]
        check(len(lines) == 1 and lines[0]["x"] == [0, 15, 30, 45, 60], "roaming: lines panel %r" % lines)
        series = dict(lines[0]["series"])
        check(len(series) == 5 and series["attack, roaming"][0] == 78.404, "roaming: series %r" % series)
        # A figure whose key is missing (scale's move of 10000 was null) is left out.
        scale = plot.panels(plot.last_json_object(dict(fixtures)["scale"]), "scale")
        check("move 10000 connections" not in [p["title"] for p in scale], "a null figure was drawn")
        # scale --quick (N = 1000): "move N" and "move 1000" are one panel.
        quick = plot.last_json_object(dict(fixtures)["scale"])
        quick.update({"connections": 1000, "move_ms_1000": 127.0})
        titles = [p["title"] for p in plot.panels(quick, "scale")]
        check(titles.count("move 1000 connections") == 1, "scale --quick panels: %s" % titles)

        empty = os.path.join(tmp, "none.png")
        done = run_plot(["--bench", "migrate", "-", empty], "migrate: failed before any figure\n")
        check(done.returncode == 1 and not os.path.exists(empty), "no JSON line: exit %d" % done.returncode)
        done = run_plot(["-", empty], '{"bench":"migrate","errors":["lab"]}\n')
        check(done.returncode == 1 and not os.path.exists(empty), "no figure: exit %d" % done.returncode)
        done = run_plot(["--has", "sensor"], "")
        check(done.returncode == 1, "--has sensor: exit %d (it plots itself)" % done.returncode)
    print("PASS")


if __name__ == "__main__":
    main()
