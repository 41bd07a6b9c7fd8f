"""A/B across revisions: what counting usage costs a dispatch (issue 15).

    python -m benchmarks.metering_ab                 # this tree vs git's "main"
    python -m benchmarks.metering_ab --base-ref v1   # vs another revision
    python -m benchmarks.metering_ab --rounds 6 --runs 150

Usage is counted on every task now, so "metering off" is the engine before
it: the base revision's ``src/`` (exported with ``git archive`` into a
temporary directory) against this tree's. Each round starts one fresh
interpreter per side, in alternating order, and each interpreter runs
``--runs`` trivial sub-agents through ``SubagentExecutor.execute`` (a model
that answers at once and reports its usage) after a warm-up, printing the
median. The figure is the median over rounds of each side's medians, and
their ratio. Within one interpreter, ``python -m benchmarks --only budgets``
compares no budget with a budget attached.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from .core import load_average

ROOT = Path(__file__).resolve().parent.parent

#: Runs ``runs`` trivial sub-agents and prints the median seconds of one.
PROBE = """
import statistics, sys, time
from langchain_core.messages import AIMessage
from subagent_exec import SubagentConfig, SubagentExecutor, SubagentRuntime
from subagent_exec.testing import ScriptedChatModel

runs = int(sys.argv[1])
reply = AIMessage(content="done", usage_metadata={
    "input_tokens": 12, "output_tokens": 3, "total_tokens": 15})
model = ScriptedChatModel(router=lambda messages: reply, model_name="m")
with SubagentRuntime(max_workers=8) as runtime:
    executor = SubagentExecutor(SubagentConfig(name="trivial", model=model), runtime=runtime)
    times = []
    for i in range(runs + 20):
        started = time.perf_counter()
        holder = executor.execute(f"trivial {i}")
        if i >= 20:  # the first ones pay imports and caches
            times.append(time.perf_counter() - started)
        assert holder.status.value == "completed", holder.error
        runtime.cleanup(holder.task_id)
print(statistics.median(times))
"""


def export(ref: str, into: Path) -> Path:
    """``ref``'s ``src/`` tree, extracted under ``into``."""
    archive = into / "src.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src"], stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def probe(src: Path, runs: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(runs)], env=env, capture_output=True, text=True,
        check=True, timeout=600,
    )
    return float(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-ref", default="main", help="the revision without metering")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--runs", type=int, default=150, help="sub-agents per interpreter")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="metering-ab-") as tmp:
        sides = {"off (" + args.base_ref + ")": export(args.base_ref, Path(tmp)),
                 "on (this tree)": ROOT / "src"}
        medians: dict[str, list[float]] = {name: [] for name in sides}
        for index in range(args.rounds):
            order = list(sides.items())
            if index % 2:
                order.reverse()
            for name, src in order:
                medians[name].append(probe(src, args.runs))
            print(f"round {index + 1}: " + ", ".join(
                f"{name} {values[-1] * 1e6:,.0f} µs" for name, values in medians.items()
            ), flush=True)
    off, on = (statistics.median(values) for values in medians.values())
    # Paired: both sides of a round ran back to back, so a round's ratio sees
    # the same machine load; its median is steadier than the ratio of medians.
    paired = statistics.median(b / a for a, b in zip(*medians.values(), strict=True))
    print(f"execute(), medians of {args.rounds} rounds x {args.runs} runs: off {off * 1e6:,.0f} "
          f"µs, on {on * 1e6:,.0f} µs, on / off {on / off:.3f}, median of paired ratios "
          f"{paired:.3f}  [load {load_average()}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
