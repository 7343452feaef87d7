#!/usr/bin/env python3
"""Draws a benchmark's figures from its final JSON line as a PNG: every figure beside the
reference measured in the same run (two bars: ours, reference), the ratio ours / reference
written above them, and the per-rep samples as points when the JSON carries them.

  tools/bench/plot.py [--bench NAME] INPUT OUTPUT.png
  tools/bench/plot.py --has NAME        exit 0 when NAME has a mapping here, else 1

INPUT is a benchmark's output (a file, or - for stdin): the last line that parses as a
JSON object is used. --bench names the benchmark when the JSON has no "bench" field
(kernel_veth prints tcp_blast's line). `tools/bench/run NAME --png FILE` calls this after
the run. Which key pairs with which reference is FIGURES below, per benchmark; a
benchmark not listed there plots itself (tools/bench/run passes it BENCH_PNG).

Needs python3-matplotlib (Debian; drawn with the Agg backend, no display). Debian's
package imports only under /usr/bin/python3, so this script re-executes itself there when
the running interpreter lacks it. Exit status: 0 drawn, 1 no usable JSON line or no
figure in it, 2 usage, 3 matplotlib missing.
"""
import json
import os
import sys

DEBIAN_PYTHON = "/usr/bin/python3"


class Figure:
    """One panel: `ours` against `reference` (a key, a tuple of keys whose mean is the
    reference, or None: no same-run reference). Keys may hold {connections}, filled from
    the JSON. Samples are paths into the JSON ("samples.changeover_ms_1" or a top-level
    list's key)."""

    def __init__(self, title, unit, ours, reference, ours_label="Roamstack", reference_label="reference",
                 ours_samples=None, reference_samples=None, lower_is_better=False):
        self.title = title
        self.unit = unit
        self.ours = ours
        self.reference = reference
        self.ours_label = ours_label
        self.reference_label = reference_label
        self.ours_samples = ours_samples
        self.reference_samples = reference_samples
        self.lower_is_better = lower_is_better


class Lines:
    """One panel of lines over x = the JSON's list at `x` (seed 002's Fig. 2(b): response
    time over the discovery delay). Each series is (label, key): a key with {x} is read
    once per x (the x written as %g), a key without is one value drawn flat across."""

    def __init__(self, title, unit, x, x_label, series):
        self.title = title
        self.unit = unit
        self.x = x
        self.x_label = x_label
        self.series = series


def _ms(title, ours, reference, reference_label, samples=True, **kw):
    return Figure(title, "ms", ours, reference, reference_label=reference_label,
                  ours_samples="samples." + ours if samples else None,
                  reference_samples="samples." + reference if samples and isinstance(reference, str) else None,
                  lower_is_better=True, **kw)


def _gbps(title, mode, **kw):
    return Figure(title, "Gbit/s", mode + "_gbps", "kernel_veth_gbps", reference_label="kernel TCP",
                  ours_samples="samples." + mode, reference_samples="samples.kernel_veth", **kw)


# Per benchmark: the figures and their same-run references (tools/bench/README.md).
FIGURES = {
    "throughput": [
        _gbps("carrier on TUN links", "carrier_tun"),
        _gbps("carrier on UDP links", "carrier_udp"),
        _gbps("lwIP server alone (TUN)", "lwip_direct_tun"),
        _gbps("carrier on UDP, MTU 9000", "carrier_udp_jumbo"),
    ],
    "kernel_veth": [
        Figure("kernel TCP over the lab's veths", "Gbit/s", None, "gbps", reference_label="kernel TCP"),
    ],
    "migrate": [
        _ms("1 download: changeover", "changeover_ms_1", "reconnect_ms_1", "reconnect"),
        _ms("1 download: pause seen", "gap_ms_1", "reconnect_ms_1", "reconnect"),
        _ms("1000 connections moved", "changeover_ms_1000", "reconnect_ms_1000", "reconnect"),
    ],
    "acm": [
        Figure("upload under a forged-ACM flood", "Gbit/s", "upload_gbps_under_flood",
               ("upload_gbps", "upload_gbps_after"), ours_label="under flood", reference_label="no flood"),
        Figure("upload with --segment-mac (UDP)", "Gbit/s", "upload_gbps_segment_mac",
               "upload_gbps_segment_mac_reference", ours_label="segment MAC", reference_label="no MAC"),
        Figure("upload with --segment-mac (TUN)", "Gbit/s", "upload_gbps_segment_mac_offload",
               "upload_gbps_offload_reference", ours_label="segment MAC", reference_label="no MAC"),
        Figure("forged frames rejected, one core", "per s", "forged_rejected_per_s", "aead_open_per_s",
               ours_label="channel", reference_label="AEAD open"),
    ],
    "handover": [
        _ms("1 connection through NAT", "changeover_ms_nat_1", "reconnect_ms_nat_1", "reconnect"),
        _ms("pause seen through NAT", "gap_ms_nat_1", "reconnect_ms_nat_1", "reconnect"),
        _ms("1 connection, no NAT", "changeover_ms_direct_1", "reconnect_ms_direct_1", "reconnect"),
        _ms("against seed 000's changeover", "changeover_ms_nat_1", "paper_changeover_ms", "seed 000",
            samples=False),
        _ms("{connections} connections through NAT", "changeover_ms_nat_{connections}", None, ""),
    ],
    "scale": [
        Figure("open {connections} connections", "s", "open_s_{connections}", "open_s_{connections}_kernel",
               reference_label="kernel TCP", lower_is_better=True),
        Figure("client memory per idle connection", "bytes", "client_bytes_per_idle_conn",
               "kernel_bytes_per_socket", reference_label="kernel socket", lower_is_better=True),
        Figure("server memory per idle connection", "bytes", "server_bytes_per_idle_conn",
               "kernel_bytes_per_socket", reference_label="kernel socket", lower_is_better=True),
        Figure("move {connections} connections", "ms", "move_ms_{connections}", None, lower_is_better=True),
        Figure("move 1000 connections", "ms", "move_ms_1000", None, lower_is_better=True),
    ],
    "proxy": [
        Figure("client move: changeover", "ms", "changeover_ms_client_move_1", "client_move_reference_reconnect_ms",
               reference_label="kernel reconnect", ours_samples="changeover_ms_client_move_samples",
               reference_samples="client_move_reference_reconnect_samples", lower_is_better=True),
        Figure("throughput through the proxy", "MiB/s", "throughput_mib_s_proxy", "throughput_mib_s_kernel",
               reference_label="kernel TCP"),
        Figure("connect + first byte", "ms", "connect_ms_proxy", "connect_ms_kernel", reference_label="kernel TCP",
               lower_is_better=True),
        Figure("proxy move (upper bound)", "ms", "changeover_ms_proxy_1", None, lower_is_better=True),
    ],
    "roaming": [
        Lines("response time over discovery delay (Fig. 2(b))", "ms", "delays",
              "discovery delay d, s of a 60 s epoch", [
            ("no attack, one member", "response_ms_no_roaming"),
            ("no attack, roaming", "response_ms_roaming"),
            ("attack, no roaming", "response_ms_attack_no_roaming"),
            ("attack, roaming", "response_ms_roaming_attack_d{x}"),
            ("attack, replication", "response_ms_replication_d{x}"),
        ]),
        _ms("response time, no attack", "response_ms_roaming", "response_ms_no_roaming", "one member, no roaming"),
        Figure("longest response around a roam", "ms", "gap_ms_per_roam", "gap_reference_ms",
               reference_label="worst, no roaming", ours_samples="samples.gap_ms_per_roam", lower_is_better=True),
    ],
}


def last_json_object(text):
    """The last line of `text` that parses as a JSON object, or None."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _number(value):
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _fill(key, result):
    if key is None:
        return None
    connections = result.get("connections")
    return key.replace("{connections}", str(connections)) if "{connections}" in key else key


def _lookup(path, result):
    node = result
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _value(keys, result):
    """The number at key, or the mean of a tuple of keys (None when any is missing)."""
    if keys is None:
        return None
    if isinstance(keys, tuple):
        values = [_number(result.get(_fill(k, result))) for k in keys]
        return sum(values) / len(values) if values and None not in values else None
    return _number(result.get(_fill(keys, result)))


def _samples(path, result):
    if path is None:
        return []
    found = _lookup(_fill(path, result), result)
    if not isinstance(found, list):
        return []
    return [float(x) for x in found if _number(x) is not None]


def panels(result, bench=None):
    """What a run's JSON gives each figure of its benchmark: a list of dicts with title,
    unit, bars [(label, value or None, samples)], ratio (ours / reference or None) and
    lower_is_better. Figures whose value is missing from the JSON are left out, and a
    figure that a filled-in N made a repeat of an earlier one."""
    bench = result.get("bench") or bench
    out = []
    for fig in FIGURES.get(bench, []):
        if isinstance(fig, Lines):
            panel = _lines_panel(fig, result)
            if panel:
                out.append(panel)
            continue
        ours = _value(fig.ours, result)
        reference = _value(fig.reference, result)
        if ours is None and reference is None:
            continue
        bars = []
        if fig.ours is not None:
            bars.append((fig.ours_label, ours, _samples(fig.ours_samples, result)))
        if fig.reference is not None:
            bars.append((fig.reference_label, reference, _samples(fig.reference_samples, result)))
        ratio = ours / reference if ours is not None and reference else None
        title = fig.title.replace("{connections}", str(result.get("connections")))
        if any(p["title"] == title for p in out):
            continue  # scale --quick: N is 1000, so "move N" and "move 1000" are one figure
        out.append({"title": title, "unit": fig.unit, "bars": bars, "ratio": ratio,
                    "lower_is_better": fig.lower_is_better, "reference_only": fig.ours is None})
    return out


def _lines_panel(fig, result):
    """{title, unit, kind "lines", x, x_label, series [(label, [y or None per x])]}, or None
    when the JSON has no x list or no value of any series."""
    xs = result.get(fig.x)
    if not isinstance(xs, list) or not xs or any(_number(x) is None for x in xs):
        return None
    series = []
    for label, key in fig.series:
        if "{x}" in key:
            ys = [_number(result.get(key.replace("{x}", "%g" % x))) for x in xs]
        else:
            ys = [_number(result.get(key))] * len(xs)
        if any(y is not None for y in ys):
            series.append((label, ys))
    if not series:
        return None
    return {"title": fig.title, "unit": fig.unit, "kind": "lines", "x": [float(x) for x in xs],
            "x_label": fig.x_label, "series": series, "bars": [], "ratio": None, "lower_is_better": True,
            "reference_only": False}


def _draw_lines(ax, panel):
    # Markers and dashes differ per series: two flat lines of the same value stay visible.
    styles = [("o", "-"), ("s", "--"), ("^", "-."), ("D", ":"), ("v", (0, (5, 1, 1, 1)))]
    for i, (label, ys) in enumerate(panel["series"]):
        points = [(x, y) for x, y in zip(panel["x"], ys) if y is not None]
        marker, dashes = styles[i % len(styles)]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker=marker, markersize=4 - i * 0.5,
                linestyle=dashes, label=label)
    ax.set_xlabel(panel["x_label"], fontsize=8)
    ax.set_ylabel(panel["unit"], fontsize=8)
    ax.tick_params(labelsize=7)
    values = [y for _, ys in panel["series"] for y in ys if y is not None and y > 0]
    if values and max(values) > 20 * min(values):
        ax.set_yscale("log")  # an attack can be 100 times the no-attack lines
    else:
        ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    ax.set_title(panel["title"], fontsize=9)


def _subtitle(result):
    parts = []
    for key in ("reps", "connections", "cpus", "loadavg", "background_busy_pct", "errors"):
        value = result.get(key)
        if value is None or isinstance(value, (dict, list)) and not value:
            continue
        if isinstance(value, (dict, list)):
            value = len(value)
        parts.append("%s %s" % (key, value))
    return ", ".join(parts)


def _shown(value):
    """4 significant digits, without exponents for the large counts (bytes, per s)."""
    return "{:,.0f}".format(value) if abs(value) >= 10000 else "%.4g" % value


def render(result, bench, path):
    """Writes the PNG; returns the number of panels drawn (0: nothing written)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = panels(result, bench)
    if not drawn:
        return 0
    name = result.get("bench") or bench or "benchmark"
    columns = min(3, len(drawn))
    rows = (len(drawn) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 3.1 * rows), squeeze=False)
    colors = ("#2b6cb0", "#a0aec0")
    for ax, panel in zip([a for row in axes for a in row], drawn):
        if panel.get("kind") == "lines":
            _draw_lines(ax, panel)
            continue
        # The value goes under its bar, where no sample point can hide it.
        labels = ["%s\n%s" % (b[0], "not measured" if b[1] is None else "%s %s" % (_shown(b[1]), panel["unit"]))
                  for b in panel["bars"]]
        values = [b[1] if b[1] is not None else 0.0 for b in panel["bars"]]
        ax.bar(range(len(values)), values, color=colors[:len(values)], width=0.6, zorder=2)
        for i, (_, value, samples) in enumerate(panel["bars"]):
            if len(samples) > 1:
                spread = [i - 0.15 + 0.3 * k / (len(samples) - 1) for k in range(len(samples))]
                ax.scatter(spread, samples, s=12, color="black", zorder=3, label="samples" if i == 0 else None)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_ylabel(panel["unit"], fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_ylim(0, max(values + [v for b in panel["bars"] for v in b[2]] + [1e-9]) * 1.1)
        ax.grid(axis="y", alpha=0.3, zorder=0)
        # The ratio goes under the title, where no bar or sample reaches.
        if panel["ratio"] is not None:
            better = "lower is better" if panel["lower_is_better"] else "higher is better"
            note = "ratio %.3g (%s)" % (panel["ratio"], better)
        elif len(panel["bars"]) == 1:
            note = "the reference alone" if panel["reference_only"] else "no same-run reference"
        else:
            note = "no ratio: a value is missing"
        ax.set_title("%s\n%s" % (panel["title"], note), fontsize=9)
    for ax in [a for row in axes for a in row][len(drawn):]:
        ax.axis("off")
    fig.suptitle("tools/bench/run %s: figures beside their same-run reference" % name, fontsize=10)
    fig.text(0.5, 0.005, _subtitle(result) + ("; points: samples" if any(
        len(b[2]) > 1 for p in drawn for b in p["bars"]) else ""), ha="center", va="bottom", fontsize=7)
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return len(drawn)


def _ensure_matplotlib():
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        pass
    if os.path.realpath(sys.executable) != os.path.realpath(DEBIAN_PYTHON) and os.access(DEBIAN_PYTHON, os.X_OK):
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(DEBIAN_PYTHON, [DEBIAN_PYTHON, os.path.abspath(__file__)] + sys.argv[1:])
    return False


def main(argv):
    bench = None
    args = list(argv)
    if len(args) == 2 and args[0] == "--has":
        return 0 if args[1] in FIGURES else 1
    if len(args) >= 2 and args[0] == "--bench":
        bench = args[1]
        args = args[2:]
    if len(args) != 2 or args[0] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr if args[:1] not in (["-h"], ["--help"]) else sys.stdout)
        return 0 if args[:1] in (["-h"], ["--help"]) else 2
    source, path = args
    # Before reading stdin: a re-execution must find it unread.
    if not _ensure_matplotlib():
        print("plot.py: needs python3-matplotlib under %s (apt-get install python3-matplotlib)" % DEBIAN_PYTHON,
              file=sys.stderr)
        return 3
    text = sys.stdin.read() if source == "-" else open(source, encoding="utf-8", errors="replace").read()
    result = last_json_object(text)
    if result is None:
        print("plot.py: no JSON object line in %s" % source, file=sys.stderr)
        return 1
    count = render(result, bench, path)
    if count == 0:
        print("plot.py: no figure of bench %r in the JSON (mapped: %s)" % (
            result.get("bench") or bench, ", ".join(sorted(FIGURES))), file=sys.stderr)
        return 1
    print("plot.py: %d figure(s) of %s in %s" % (count, result.get("bench") or bench, path), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
