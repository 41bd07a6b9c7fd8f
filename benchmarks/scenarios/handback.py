"""Scenario 5: hand-back latency, from a child's terminal status to the lead
agent having the result in hand.

The lead side is one asyncio loop (the lead agent's loop). The figure runs
from the child's ``completed_at`` (written by the child's worker thread, the
terminal transition) to the moment the awaiting code in the lead loop
resumes with the result: ``runtime.wait_terminal``, which is woken by the
terminal transition itself (no polling).
"""

from __future__ import annotations

import asyncio
import time

from subagent_exec import SubagentConfig, SubagentExecutor, SubagentRuntime, SubagentStatus

from ..agents import sleep_graph
from ..core import Figure, Options, ScenarioResult, Target, ms

NAME = "handback"
TITLE = "5. hand-back to the lead"

CHILD_SECONDS = 0.02


def run(options: Options) -> ScenarioResult:
    trials = 30 if options.quick else 300
    result = ScenarioResult(
        NAME, TITLE, params={"trials": trials, "child_await_seconds": CHILD_SECONDS}
    )
    with SubagentRuntime(max_workers=4, name="bench-handback") as runtime:
        executor = SubagentExecutor(
            SubagentConfig(name="child", graph_factory=sleep_graph(CHILD_SECONDS)),
            runtime=runtime,
        )
        samples, wrong = asyncio.run(_lead_waits(runtime, executor, trials))
    result.add(
        Figure(
            "child terminal -> wait_terminal returns",
            "ms",
            samples=samples,
            target=Target("p99", "<", 5.0),
            note="the await the task tool uses; lead loop is woken by the transition",
        )
    )
    result.add(
        Figure(
            "children not COMPLETED", "count", value=float(wrong), target=Target("value", "==", 0)
        )
    )
    return result


async def _lead_waits(
    runtime: SubagentRuntime, executor: SubagentExecutor, trials: int
) -> tuple[list[float], int]:
    samples: list[float] = []
    wrong = 0
    for trial in range(trials):
        task_id = executor.execute_async(f"handback-{trial}")
        holder = await runtime.wait_terminal(task_id)
        returned = time.time()
        assert holder.completed_at is not None
        samples.append(ms(returned - holder.completed_at.timestamp()))
        wrong += holder.status is not SubagentStatus.COMPLETED
        runtime.cleanup(task_id)
    return samples, wrong
