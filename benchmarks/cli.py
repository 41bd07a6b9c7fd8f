"""Command line: run the scenarios, print the table, write the JSON.

    python -m benchmarks                  # every scenario, full size
    python -m benchmarks --quick          # CI smoke size (under a minute)
    python -m benchmarks --only stop_tree --only deadline
    python -m benchmarks --render benchmarks/results/latest.json --markdown

Exit status: 0 when every scenario ran (verdicts do not matter, the machine
may be noisy), 1 when a scenario crashed, and with ``--strict`` also 1 when
a target was missed.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .core import Options, ScenarioResult, format_with_unit, load_average, machine_info
from .scenarios import SCENARIOS, Scenario

DEFAULT_OUTPUT = Path(__file__).parent / "results" / "latest.json"
SCHEMA_VERSION = 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.list:
        for scenario in SCENARIOS:
            print(f"{scenario.name:14} {scenario.title}")
        return 0
    if args.render is not None:
        report = json.loads(Path(args.render).read_text(encoding="utf-8"))
        print(render_table(report, markdown=args.markdown))
        return 0
    try:
        selected = select(args.only)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    options = Options(quick=args.quick, seed=args.seed)
    report: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "started_at": datetime.now(UTC).isoformat(),
        "mode": "quick" if options.quick else "full",
        "seed": options.seed,
        "machine": machine_info(),
        "gc_freeze": not args.no_gc_freeze,
        "scenarios": {},
    }
    if not args.no_gc_freeze:
        # LangChain and LangGraph leave ~100k long-lived objects after import;
        # a full collection walks them all (~45 ms on the reference machine)
        # and would land in whichever interval is being measured. Freezing
        # them (what long-running hosts do after start-up) leaves the pauses
        # caused by the work itself. --no-gc-freeze measures without it.
        gc.collect()
        gc.freeze()
        report["gc_frozen_objects"] = gc.get_freeze_count()
    mode = report["mode"]
    print(f"subagent-exec benchmarks ({mode}) on {describe_machine(report['machine'])}")
    started = time.perf_counter()
    for scenario in selected:
        print(f"  running {scenario.name} ...", end="", flush=True)
        outcome = run_one(scenario, options)
        report["scenarios"][scenario.name] = outcome.to_json()
        status = "crashed" if outcome.error else f"{outcome.duration_s:.1f}s"
        print(f" {status}", flush=True)
    report["duration_s"] = time.perf_counter() - started
    report["load_average_at_end"] = load_average()
    if not args.no_gc_freeze:
        gc.unfreeze()  # for callers of main() in the same process

    output = Path(args.output) if args.output else DEFAULT_OUTPUT
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")

    print()
    print(render_table(report, markdown=args.markdown))
    print(f"\nraw figures: {output}  ({report['duration_s']:.0f}s in all)")
    crashed = [s for s in report["scenarios"].values() if s["error"]]
    for scenario_json in crashed:
        print(f"\n{scenario_json['name']} crashed:\n{scenario_json['error']}", file=sys.stderr)
    missed = [
        f for s in report["scenarios"].values() for f in s["figures"] if f["verdict"] == "FAIL"
    ]
    if crashed or (args.strict and missed):
        return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmarks of subagent-exec (see docs/performance.md).",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes for a CI smoke run")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only this scenario (repeatable, or comma-separated); see --list",
    )
    parser.add_argument("--output", metavar="PATH", help=f"JSON file (default {DEFAULT_OUTPUT})")
    parser.add_argument("--seed", type=int, default=1234, help="random seed (default 1234)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--no-gc-freeze",
        action="store_true",
        help="do not gc.freeze() the start-up heap (p99s then include full-heap GC pauses)",
    )
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument(
        "--render", metavar="JSON", help="print the table of a saved run instead of running"
    )
    return parser


def select(only: Sequence[str] | None) -> list[Scenario]:
    if not only:
        return list(SCENARIOS)
    by_name = {s.name: s for s in SCENARIOS}
    wanted = [name.strip() for item in only for name in item.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in by_name]
    if unknown:
        raise ValueError(f"unknown scenario(s) {unknown}; known: {', '.join(by_name)}")
    return [s for s in SCENARIOS if s.name in wanted]


def run_one(scenario: Scenario, options: Options) -> ScenarioResult:
    gc.collect()  # garbage of the previous scenario must not be collected inside this one
    pauses = GcPauses()
    gc.callbacks.append(pauses.callback)
    load_before = load_average()
    started = time.perf_counter()
    try:
        outcome = scenario.run(options)
    except Exception:
        outcome = ScenarioResult(scenario.name, scenario.title, error=traceback.format_exc())
    finally:
        gc.callbacks.remove(pauses.callback)
    outcome.duration_s = time.perf_counter() - started
    outcome.gc_pauses = pauses.summary()
    outcome.load_average = [load_before, load_average()]
    return outcome


class GcPauses:
    """Garbage-collector pauses during one scenario, by generation: they stop
    every thread, so they explain outliers in the measured intervals."""

    def __init__(self) -> None:
        self._started = 0.0
        self._pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}

    def callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._pauses[info["generation"]].append((time.perf_counter() - self._started) * 1e3)

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            f"gen{generation}": {
                "count": len(pauses),
                "max_ms": max(pauses, default=0.0),
                "total_ms": sum(pauses),
            }
            for generation, pauses in self._pauses.items()
        }


def describe_machine(machine: dict[str, Any]) -> str:
    load = machine.get("load_average_at_start")
    load_text = f", load {load[0]:.2f}" if load else ""
    return (
        f"{machine['cpu_model']} ({machine['cpu_count']} CPUs{load_text}), "
        f"Python {machine['python']}, {machine['platform']}"
    )


def render_table(report: dict[str, Any], *, markdown: bool = False) -> str:
    header = ["scenario", "figure", "p50", "p99", "target", "verdict"]
    rows: list[list[str]] = []
    for scenario in report["scenarios"].values():
        if scenario["error"]:
            rows.append([scenario["title"], "(crashed, see stderr/JSON)", "-", "-", "-", "ERROR"])
            continue
        for index, figure in enumerate(scenario["figures"]):
            unit = figure["unit"]
            if "value" in figure:
                p50, p99 = format_with_unit(figure["value"], unit), "-"
            else:
                p50 = format_with_unit(figure.get("p50"), unit)
                p99 = format_with_unit(figure.get("p99"), unit)
            rows.append(
                [
                    scenario["title"] if index == 0 else "",
                    figure["name"],
                    p50,
                    p99,
                    figure["target"] or "",
                    figure["verdict"],
                ]
            )
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)
