"""Scenario 16: what a durable task store costs (issue 16).

In one process, rounds alternate between two runtimes that differ only in
their store, so machine noise hits both alike:

* **dispatch**: trivial sub-agents (``create_agent`` over a ScriptedChatModel
  that answers at once) run one after the other with ``execute()``, on a
  runtime with the default ``MemoryStore`` and on one with a ``SqliteStore``
  (WAL, its background writer batching every 100 ms). The ratio of medians is
  what the store adds per task (target <= 1.1).
* **stop latency**: a running sub-agent inside a long model call is stopped;
  time from ``request_cancel`` to the terminal status, on both runtimes.

The SQLite file lives in a temporary directory (the machine's disk).
"""

from __future__ import annotations

import random
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

from ..agents import EntryProbe, slow_model
from ..core import Figure, Options, ScenarioResult, Target, median, ms, percentile, wait_event

NAME = "store"
TITLE = "16. task store overhead (SQLite vs memory)"


def run(options: Options) -> ScenarioResult:
    rounds = 4 if options.quick else 10
    per_round = 25 if options.quick else 100
    stops = 10 if options.quick else 60
    rng = random.Random(options.seed)
    result = ScenarioResult(
        NAME, TITLE,
        params={"rounds": rounds, "tasks_per_round": per_round, "stops_per_store": stops,
                "flush_interval_s": 0.1},
    )
    model = ScriptedChatModel(default="done", latency=0.0)
    folder = Path(tempfile.mkdtemp(prefix="bench-store-"))
    timings: dict[str, list[float]] = {"memory": [], "sqlite": []}
    stop_ms: dict[str, list[float]] = {"memory": [], "sqlite": []}
    probe = EntryProbe()
    with (
        SubagentRuntime(max_workers=4, name="bench-memory") as memory,
        SubagentRuntime(
            max_workers=4, name="bench-sqlite", store=SqliteStore(folder / "bench.db")
        ) as sqlite,
    ):
        runtimes = {"memory": memory, "sqlite": sqlite}
        trivial = {
            kind: SubagentExecutor(SubagentConfig(name="trivial", model=model), runtime=rt)
            for kind, rt in runtimes.items()
        }
        slow = {
            kind: SubagentExecutor(
                SubagentConfig(name="slow", model=slow_model(probe, 2.0)), runtime=rt
            )
            for kind, rt in runtimes.items()
        }
        for executor in trivial.values():  # warm-up: imports and caches
            _dispatch(executor, 10, [])
        for round_index in range(rounds):
            order = ["memory", "sqlite"] if round_index % 2 == 0 else ["sqlite", "memory"]
            for kind in order:
                _dispatch(trivial[kind], per_round, timings[kind])
        for trial in range(stops):
            for kind in ("memory", "sqlite"):
                stop_ms[kind].append(_stop(runtimes[kind], slow[kind], probe, trial, rng))
        store = sqlite.store
        flushed = store.flush(30.0)
        errors = sqlite.stats()["store_errors"]
    base = median(timings["memory"])
    result.add(Figure("execute(), MemoryStore", "µs", samples=[s * 1e6 for s in timings["memory"]]))
    result.add(Figure("execute(), SqliteStore", "µs", samples=[s * 1e6 for s in timings["sqlite"]]))
    result.add(
        Figure(
            "dispatch: SqliteStore / MemoryStore (medians)",
            "ratio",
            value=median(timings["sqlite"]) / base,
            target=Target("value", "<=", 1.1),
            note=f"{(median(timings['sqlite']) - base) * 1e6:.0f} µs per task; "
            f"all written at the end: {flushed}; store errors: {errors}",
        )
    )
    for kind, label in (("memory", "MemoryStore"), ("sqlite", "SqliteStore")):
        result.add(Figure(f"stop latency, {label}", "ms", samples=stop_ms[kind]))
    result.add(
        Figure(
            "stop latency p99: SqliteStore / MemoryStore",
            "ratio",
            value=percentile(stop_ms["sqlite"], 99) / percentile(stop_ms["memory"], 99),
            note=f"p50 {median(stop_ms['memory']):.2f} ms (memory) vs "
            f"{median(stop_ms['sqlite']):.2f} ms (sqlite)",
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


def _stop(
    runtime: SubagentRuntime,
    executor: SubagentExecutor,
    probe: EntryProbe,
    trial: int,
    rng: random.Random,
) -> float:
    task = f"stop-{runtime.name}-{trial}"
    task_id = executor.execute_async(task)
    holder = runtime.get(task_id)
    assert holder is not None
    wait_event(probe.event(task), 10.0, f"{task} to enter its model call")
    time.sleep(rng.uniform(0.002, 0.02))
    started = time.perf_counter()
    runtime.request_cancel(task_id, "benchmark stop")
    if not holder.wait(10.0):
        raise RuntimeError(f"{task} did not stop")
    return ms(time.perf_counter() - started)
