"""Scenario 6: isolation. One sub-agent sits in a blocking ``time.sleep``
(called from an async node, so it blocks its whole loop); another one does
0.4 s of async work meanwhile. Its time next to the blocker, divided by its
time alone, should stay near 1: each sub-agent has its own loop.

Baseline, same run: both coroutines on one shared event loop (what a
single-loop executor does); there the async work has to wait out the block.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from langchain_core.messages import HumanMessage

from subagent_exec import SubagentConfig, SubagentExecutor, SubagentRuntime, SubagentStatus

from ..agents import EntryProbe, blocking_graph, sleep_graph
from ..core import Figure, Options, ScenarioResult, Target, median, wait_event

NAME = "isolation"
TITLE = "6. isolation from a blocker"

WORK_SECONDS = 0.4
WORK_STEPS = 4


def run(options: Options) -> ScenarioResult:
    quick = options.quick
    blockers = 2 if quick else 8
    runs_per_blocker = 2 if quick else 3
    block_seconds = 1.0 if quick else 2.0
    result = ScenarioResult(
        NAME,
        TITLE,
        params={
            "work_seconds": WORK_SECONDS,
            "work_awaits": WORK_STEPS,
            "block_seconds": block_seconds,
            "samples_next_to_blocker": blockers * runs_per_blocker,
        },
    )
    probe = EntryProbe()
    alone: list[float] = []
    beside: list[float] = []
    with SubagentRuntime(max_workers=4, name="bench-isolation") as runtime:
        worker = SubagentExecutor(
            SubagentConfig(
                name="async-work", graph_factory=sleep_graph(WORK_SECONDS, None, WORK_STEPS)
            ),
            runtime=runtime,
        )
        blocker = SubagentExecutor(
            SubagentConfig(name="blocker", graph_factory=blocking_graph(block_seconds, probe)),
            runtime=runtime,
        )
        for round_ in range(blockers):
            for _ in range(runs_per_blocker):
                alone.append(_timed_run(worker, "alone"))
            blocker_id = blocker.execute_async(f"blocker-{round_}")
            wait_event(probe.event(f"blocker-{round_}"), 10.0, "the blocker to block")
            for _ in range(runs_per_blocker):
                beside.append(_timed_run(worker, "beside the blocker"))
            blocker_holder = runtime.get(blocker_id)
            assert blocker_holder is not None
            blocker_holder.wait(block_seconds + 10.0)

    result.add(Figure("0.4 s of async work, alone", "s", samples=alone))
    result.add(Figure("0.4 s of async work, next to the blocker", "s", samples=beside))
    result.add(
        Figure(
            "next to blocker / alone (medians)",
            "ratio",
            value=median(beside) / median(alone),
            target=Target("value", "<", 1.1),
        )
    )
    shared = _shared_loop_baseline(block_seconds, rounds=1 if quick else 2)
    result.add(
        Figure(
            "baseline: one shared loop, next to the blocker",
            "s",
            samples=shared,
            note="both sub-agents' graphs on one event loop",
        )
    )
    result.add(
        Figure(
            "baseline: shared loop / alone (medians)", "ratio", value=median(shared) / median(alone)
        )
    )
    return result


def _timed_run(executor: SubagentExecutor, label: str) -> float:
    started = time.perf_counter()
    holder = executor.execute(f"work {label}", timeout=30.0)
    elapsed = time.perf_counter() - started
    if holder.status is not SubagentStatus.COMPLETED:
        raise RuntimeError(f"the async sub-agent ended {holder.status.value}: {holder.error}")
    return elapsed


def _shared_loop_baseline(block_seconds: float, rounds: int) -> list[float]:
    """The same work and blocker on one shared event loop (run by one thread,
    as a single-loop executor does): the work is submitted once the blocker
    blocks, and timed until it is done."""
    probe = EntryProbe()
    work = sleep_graph(WORK_SECONDS, None, WORK_STEPS)()
    block = blocking_graph(block_seconds, probe)()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="bench-shared-loop", daemon=True)
    thread.start()
    samples: list[float] = []
    try:
        for round_ in range(rounds):
            key = f"shared-block-{round_}"
            blocked = asyncio.run_coroutine_threadsafe(block.ainvoke(_message(key)), loop)
            wait_event(probe.event(key), 10.0, "the shared-loop blocker to block")
            started = time.perf_counter()
            done = asyncio.run_coroutine_threadsafe(work.ainvoke(_message("work")), loop)
            done.result(block_seconds + 30.0)
            samples.append(time.perf_counter() - started)
            blocked.result(block_seconds + 30.0)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10.0)
        loop.close()
    return samples


def _message(text: str) -> dict[str, Any]:
    return {"messages": [HumanMessage(content=text)]}
