"""Scenario 13: start many sub-agents at once.

A lead agent (or a host) starts ``n`` sub-agents at once (8, 64, 256), each
a ``create_agent`` agent over a scripted model whose first call awaits for a
long time. The figure is the time from the first ``start()`` until every
one of them is *working*: inside its first model call (the agent built, the
run streaming). The pool has one worker per sub-agent and is warm (a first
round, not measured, created its threads), as in a long-running host.

Baselines in the same trials:

* the start floor (``benchmarks/floors.py``, :class:`BareStarts`): ``n``
  bare coroutines, each on ``asyncio.run`` in a thread of a warm
  ``ThreadPoolExecutor``, until every one has entered its await;
* direct: the same ``n`` agents built and run as tasks of one event loop
  (no threads), until every one is in its first model call; and the same
  with one agent compiled once, run ``n`` times (LangGraph's own per-run
  work up to the first model call, with no thread and no compile).
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import BaseMessage, HumanMessage

from subagent_exec import (
    SubagentConfig,
    SubagentExecutor,
    SubagentResult,
    SubagentRuntime,
    SubagentStatus,
)
from subagent_exec.testing import ScriptedChatModel

from ..agents import EntryProbe, slow_model
from ..core import Figure, Options, ScenarioResult, Target, median, ms, wait_until
from ..floors import BareStarts

NAME = "start_many"
TITLE = "13. start many sub-agents at once"

#: (sub-agents at once, trials, trials in --quick)
SIZES = ((8, 30, 3), (64, 10, 2), (256, 5, 1))
HOLD_SECONDS = 3600.0


def run(options: Options) -> ScenarioResult:
    result = ScenarioResult(NAME, TITLE)
    for n, trials, quick_trials in SIZES:
        count = quick_trials if options.quick else trials
        result.params[f"{n} at once"] = {"trials": count}
        _one_size(result, n, count)
    return result


def _one_size(result: ScenarioResult, n: int, trials: int) -> None:
    through: list[float] = []
    submit_only: list[float] = []
    bare: list[float] = []
    direct: list[float] = []
    compiled_once: list[float] = []
    not_cancelled = 0
    floor = BareStarts(n)
    runtime = SubagentRuntime(max_workers=n, name=f"bench-start-{n}")
    # One config for every round, as a host's task tool has: what the engine
    # may cache per config is cached for the measured rounds as well.
    probe = EntryProbe()
    executor = SubagentExecutor(
        SubagentConfig(name="starter", model=slow_model(probe, HOLD_SECONDS)), runtime=runtime
    )
    try:
        for trial in range(trials + 1):  # round 0 warms the pools, not measured
            started = time.perf_counter()
            holders = [executor.start(f"start {trial}-{i}") for i in range(n)]
            submitted = time.perf_counter() - started
            wait_until(
                functools.partial(_all_entered, probe, n * (trial + 1)),
                120.0,
                "the sub-agents to run",
            )
            elapsed = time.perf_counter() - started
            wrong = _stop_all(runtime, holders)
            bare_elapsed = floor.start()
            direct_elapsed = asyncio.run(_direct(n))
            once_elapsed = asyncio.run(_direct(n, compile_once=True))
            if trial:
                compiled_once.append(ms(once_elapsed))
                not_cancelled += wrong
                through.append(ms(elapsed))
                submit_only.append(ms(submitted))
                bare.append(ms(bare_elapsed))
                direct.append(ms(direct_elapsed))
    finally:
        runtime.shutdown(cancel=True, wait=True, timeout=60.0)
        floor.close()

    label = f"{n} at once"
    result.add(
        Figure(
            f"{label}: first start() -> all in their first model call",
            "ms",
            samples=through,
            target=Target("p50", "<=", 200.0) if n == 256 else None,
            note=f"median {median(through) / n * 1000:.0f} µs per sub-agent",
        )
    )
    result.add(Figure(f"{label}: the {n} start() calls themselves", "ms", samples=submit_only))
    result.add(
        Figure(
            f"{label}: floor, bare coroutines on asyncio.run in pool threads",
            "ms",
            samples=bare,
            note="benchmarks/floors.py BareStarts (warm pool), until all entered their await",
        )
    )
    result.add(
        Figure(
            f"{label}: sub-agents / floor (medians)",
            "ratio",
            value=median(through) / median(bare),
        )
    )
    result.add(
        Figure(
            f"{label}: direct, {n} create_agent runs as tasks of one loop",
            "ms",
            samples=direct,
            note="same agents, no threads: until all are in their first model call",
        )
    )
    result.add(
        Figure(
            f"{label}: direct, one compiled agent run {n} times as tasks of one loop",
            "ms",
            samples=compiled_once,
            note="LangGraph's per-run work up to the first model call: no thread, no compile",
        )
    )
    result.add(
        Figure(
            f"{label}: sub-agents / direct with one compiled agent (medians)",
            "ratio",
            value=median(through) / median(compiled_once),
        )
    )
    result.add(
        Figure(
            f"{label}: tasks not CANCELLED after the stop",
            "count",
            value=float(not_cancelled),
            target=Target("value", "==", 0),
        )
    )


def _all_entered(probe: EntryProbe, total: int) -> bool:
    return probe.count() >= total


def _stop_all(runtime: SubagentRuntime, holders: list[SubagentResult]) -> int:
    for holder in holders:
        runtime.request_cancel(holder.task_id, "benchmark: started, stop")
    for holder in holders:
        holder.wait(60.0)
    wrong = sum(h.status is not SubagentStatus.CANCELLED for h in holders)
    for holder in holders:
        runtime.cleanup(holder.task_id)
    return wrong


async def _direct(n: int, *, compile_once: bool = False) -> float:
    entered = 0
    all_in = asyncio.Event()

    def reply(messages: list[BaseMessage]) -> str:
        nonlocal entered
        entered += 1
        if entered == n:
            all_in.set()
        return "done"

    model = ScriptedChatModel(router=reply, latency=HOLD_SECONDS)
    compiled = create_agent(model, tools=[]) if compile_once else None
    started = time.perf_counter()
    tasks = [asyncio.create_task(_one_agent(model, i, compiled)) for i in range(n)]
    await asyncio.wait_for(all_in.wait(), 120.0)
    elapsed = time.perf_counter() - started
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return elapsed


async def _one_agent(model: ScriptedChatModel, index: int, compiled: Any = None) -> Any:
    graph = compiled if compiled is not None else create_agent(model, tools=[])
    return await graph.ainvoke({"messages": [HumanMessage(content=f"direct {index}")]})
