"""Scenario 17: what per-step checkpoints cost (issue 17, resume).

In one process, rounds alternate between four runtimes that differ only in
their store and whether runs are checkpointed, so machine noise hits all
alike: trivial sub-agents (``create_agent`` over a ScriptedChatModel that
answers at once; two checkpoints each: the input and the answer) run one after
the other with ``execute()``. The ratio of medians, checkpointed over not, is
what checkpointing adds per task on each store (information: no target;
``checkpointer=False`` turns it off).

SQLite: the checkpoints go to the store's file through the write-behind
writer (``_checkpoint_writer.py``), so a run does not wait for the disk.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from subagent_exec import (
    SqliteStore,
    SubagentConfig,
    SubagentExecutor,
    SubagentRuntime,
    SubagentStatus,
)
from subagent_exec.testing import ScriptedChatModel

from ..core import Figure, Options, ScenarioResult, median

NAME = "checkpoints"
TITLE = "17. per-step checkpoints overhead (resume)"

KINDS = ("memory", "memory+checkpoints", "sqlite", "sqlite+checkpoints")


def run(options: Options) -> ScenarioResult:
    rounds = 4 if options.quick else 10
    per_round = 25 if options.quick else 100
    result = ScenarioResult(NAME, TITLE, params={"rounds": rounds, "tasks_per_round": per_round})
    model = ScriptedChatModel(default="done", latency=0.0)
    folder = Path(tempfile.mkdtemp(prefix="bench-checkpoints-"))
    timings: dict[str, list[float]] = {kind: [] for kind in KINDS}
    runtimes = {
        "memory": SubagentRuntime(max_workers=4, name="b-mem", checkpointer=False),
        "memory+checkpoints": SubagentRuntime(max_workers=4, name="b-mem-cp"),
        "sqlite": SubagentRuntime(
            max_workers=4, name="b-sql", store=SqliteStore(folder / "a.db"), checkpointer=False
        ),
        "sqlite+checkpoints": SubagentRuntime(
            max_workers=4, name="b-sql-cp", store=SqliteStore(folder / "b.db")
        ),
    }
    try:
        executors = {
            kind: SubagentExecutor(SubagentConfig(name="trivial", model=model), runtime=rt)
            for kind, rt in runtimes.items()
        }
        for executor in executors.values():  # warm-up: imports and caches
            _dispatch(executor, 10, [])
        for round_index in range(rounds):
            order = list(KINDS) if round_index % 2 == 0 else list(reversed(KINDS))
            for kind in order:
                _dispatch(executors[kind], per_round, timings[kind])
        flushed = runtimes["sqlite+checkpoints"].checkpoints.flush(30.0)
    finally:
        for runtime in runtimes.values():
            runtime.shutdown(wait=True, timeout=30.0)
    for kind in KINDS:
        result.add(Figure(f"execute(), {kind}", "µs", samples=[s * 1e6 for s in timings[kind]]))
    for store in ("memory", "sqlite"):
        base, with_cp = median(timings[store]), median(timings[f"{store}+checkpoints"])
        result.add(
            Figure(
                f"dispatch: checkpointed / not, {store} store (medians)",
                "ratio",
                value=with_cp / base,
                note=f"{(with_cp - base) * 1e6:.0f} µs per task"
                + (f"; all checkpoints written at the end: {flushed}" if store == "sqlite" else ""),
            )
        )
    return result


def _dispatch(executor: SubagentExecutor, count: int, into: list[float]) -> None:
    for i in range(count):
        started = time.perf_counter()
        holder = executor.execute(f"trivial {i}")
        into.append(time.perf_counter() - started)
        if holder.status is not SubagentStatus.COMPLETED:
            raise RuntimeError(f"a trivial sub-agent ended {holder.status.value}: {holder.error}")
