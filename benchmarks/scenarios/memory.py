"""Scenario 8b: memory stays flat with ``retain_max``. One runtime
(``retain_max=1000``) runs short sub-agents in batches; the process RSS is
read (after ``gc.collect()``) once 5k, 20k and 50k tasks are terminal. The
registry keeps only the newest ``retain_max`` finished results, so RSS at
50k should be where it was at 5k.
"""

from __future__ import annotations

import gc

from subagent_exec import SubagentConfig, SubagentExecutor, SubagentRuntime

from ..agents import sleep_graph
from ..core import Figure, Options, ScenarioResult, Target, rss_mib

NAME = "memory"
TITLE = "8. memory, retain_max"

BATCH = 500
#: RSS may grow this much from the first to the last checkpoint and still
#: count as flat (allocator noise; a leak of one result per task would be
#: several MiB per 10k tasks).
FLAT_TOLERANCE = 0.10


def run(options: Options) -> ScenarioResult:
    # Quick mode keeps the shape (several times retain_max) at a tenth of the size.
    retain_max = 200 if options.quick else 1000
    checkpoints = (1_000, 2_000, 4_000) if options.quick else (5_000, 20_000, 50_000)
    result = ScenarioResult(
        NAME,
        TITLE,
        params={"retain_max": retain_max, "checkpoints": list(checkpoints), "batch": BATCH},
    )
    readings: dict[int, float] = {}
    registered: dict[int, int] = {}
    with SubagentRuntime(max_workers=8, retain_max=retain_max, name="bench-memory") as runtime:
        executor = SubagentExecutor(
            SubagentConfig(name="tiny", graph_factory=sleep_graph(0.0)), runtime=runtime
        )
        done = 0
        for checkpoint in checkpoints:
            while done < checkpoint:
                count = min(BATCH, checkpoint - done)
                ids = [executor.execute_async(f"tiny {done + i}") for i in range(count)]
                for task_id in ids:
                    holder = runtime.get(task_id)
                    if holder is not None:  # None: already evicted, hence terminal
                        holder.wait(60.0)
                done += count
            gc.collect()
            readings[checkpoint] = rss_mib()
            registered[checkpoint] = runtime.stats()["registered"]

    for checkpoint in checkpoints:
        result.add(
            Figure(
                f"RSS after {checkpoint:,} tasks",
                "MiB",
                value=readings[checkpoint],
                note=f"{registered[checkpoint]} results retained",
            )
        )
    first, last = readings[checkpoints[0]], readings[checkpoints[-1]]
    result.add(
        Figure(
            f"RSS growth {checkpoints[0]:,} -> {checkpoints[-1]:,} tasks",
            "ratio",
            value=last / first,
            target=Target("value", "<=", 1.0 + FLAT_TOLERANCE),
            note=f"{last - first:+.1f} MiB",
        )
    )
    result.add(
        Figure(
            "results retained at the end",
            "count",
            value=float(registered[checkpoints[-1]]),
            target=Target("value", "<=", retain_max),
        )
    )
    return result
