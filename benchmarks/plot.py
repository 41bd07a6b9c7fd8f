"""Chart of the stop-latency distributions next to the baseline.

    pip install -e '.[plots]'
    python -m benchmarks.plot benchmarks/results/latest.json -o docs/stop-latency.png

Draws the empirical CDF of every stop-latency figure of a saved run (running
sub-agent in a model call / tool call, pending sub-agent, whole tree) and of
the cooperative-flag baseline, on a log time axis, with the 10 ms target.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: (scenario, figure name prefix, label) of the curves to draw.
CURVES = (
    ("stop_pending", "stop latency, queued task", "PENDING sub-agent"),
    ("stop_running", "stop latency, in a model call", "RUNNING, in a model call"),
    ("stop_running", "stop latency, in a tool call", "RUNNING, in a tool call"),
    ("stop_tree", "1+5+25: stop, to the last", "tree of 31, last terminal"),
    ("stop_running", "baseline", "baseline: flag checked between chunks"),
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.plot", description=__doc__)
    parser.add_argument("report", help="a JSON file written by python -m benchmarks")
    parser.add_argument("-o", "--output", default="stop-latency.png", help="PNG to write")
    args = parser.parse_args(argv)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("error: matplotlib is needed: pip install -e '.[plots]'", file=sys.stderr)
        return 2

    report = json.loads(Path(args.report).read_text(encoding="utf-8"))
    curves = [(label, samples) for label, samples in _curves(report) if samples]
    if not curves:
        print("error: the report holds no stop-latency samples", file=sys.stderr)
        return 1

    figure, axes = plt.subplots(figsize=(8, 5.2), dpi=120)
    for label, samples in curves:
        ordered = sorted(samples)
        share = [(i + 1) / len(ordered) for i in range(len(ordered))]
        axes.step(ordered, share, where="post", label=f"{label} (n={len(ordered)})")
    axes.axvline(10.0, color="grey", linestyle="--", linewidth=1)
    axes.text(10.5, 0.03, "10 ms target (running)", color="grey", fontsize=8)
    axes.set_xscale("log")
    axes.set_xlabel("stop request -> terminal status (ms, log scale)")
    axes.set_ylabel("share of stops done")
    machine = report["machine"]
    axes.set_title(
        f"subagent-exec stop latency ({report['mode']} run, {machine['cpu_count']} CPUs, "
        f"Python {machine['python']})",
        fontsize=10,
    )
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)
    figure.tight_layout()
    figure.savefig(args.output)
    print(f"wrote {args.output}")
    return 0


def _curves(report: dict[str, Any]) -> list[tuple[str, list[float]]]:
    out: list[tuple[str, list[float]]] = []
    for scenario_name, prefix, label in CURVES:
        scenario = report["scenarios"].get(scenario_name)
        if not scenario:
            continue
        for figure in scenario["figures"]:
            if figure["name"].startswith(prefix) and "samples" in figure:
                out.append((label, figure["samples"]))
                break
    return out


if __name__ == "__main__":
    sys.exit(main())
