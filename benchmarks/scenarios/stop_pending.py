"""Scenario 2: stop latency of a PENDING sub-agent queued behind a full pool.

The pool (``max_workers=1``) is held by a sub-agent in a long await; tasks
queued behind it are stopped one by one. A pending stop needs no loop and
no thread: the status is written inside the ``request_cancel`` call. After
the pool is freed, none of the stopped tasks may ever have started (their
graph factory is never called, ``started_at`` stays empty).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from langchain_core.runnables import Runnable

from subagent_exec import SubagentConfig, SubagentExecutor, SubagentRuntime, SubagentStatus

from ..agents import EntryProbe, sleep_graph
from ..core import Figure, Options, ScenarioResult, Target, ms, wait_event

NAME = "stop_pending"
TITLE = "2. stop a PENDING sub-agent"


def run(options: Options) -> ScenarioResult:
    rounds = 4 if options.quick else 10
    queued_per_round = 50
    result = ScenarioResult(
        NAME, TITLE, params={"rounds": rounds, "queued_per_round": queued_per_round}
    )
    blocker_probe = EntryProbe()
    starts = _StartCounter(sleep_graph(0.01))
    latencies: list[float] = []
    started_anyway = 0
    with SubagentRuntime(max_workers=1, name="bench-pending") as runtime:
        blocker = SubagentExecutor(
            SubagentConfig(name="blocker", graph_factory=sleep_graph(30.0, blocker_probe)),
            runtime=runtime,
        )
        queued = SubagentExecutor(
            SubagentConfig(name="queued", graph_factory=starts), runtime=runtime
        )
        for round_ in range(rounds):
            blocker_id = blocker.execute_async(f"blocker-{round_}")
            wait_event(blocker_probe.event(f"blocker-{round_}"), 10.0, "the blocker to run")
            ids = [queued.execute_async(f"queued-{round_}-{i}") for i in range(queued_per_round)]
            holders = [runtime.get(task_id) for task_id in ids]
            for task_id, holder in zip(ids, holders, strict=True):
                assert holder is not None
                started = time.perf_counter()
                runtime.request_cancel(task_id, "benchmark stop")
                holder.wait()
                latencies.append(ms(time.perf_counter() - started))
            runtime.request_cancel(blocker_id, "round over")
            blocker_holder = runtime.get(blocker_id)
            assert blocker_holder is not None
            blocker_holder.wait(10.0)
            for holder in holders:
                assert holder is not None
                if holder.started_at is not None or holder.status is not SubagentStatus.CANCELLED:
                    started_anyway += 1
    # A stopped task that slipped through would have called the graph factory.
    started_anyway += starts.count
    result.add(
        Figure(
            "stop latency, queued task",
            "ms",
            samples=latencies,
            target=Target("p99", "<", 1.0),
            note="request -> CANCELLED, pool of 1 held by a 30 s await",
        )
    )
    result.add(
        Figure(
            "stopped tasks that started anyway",
            "count",
            value=float(started_anyway),
            target=Target("value", "==", 0),
            note="checked after the pool was freed",
        )
    )
    return result


class _StartCounter:
    """A graph factory that counts its calls (a call = the run started)."""

    def __init__(self, factory: Any) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self.count = 0

    def __call__(self) -> Runnable[Any, Any]:
        with self._lock:
            self.count += 1
        graph: Runnable[Any, Any] = self._factory()
        return graph
