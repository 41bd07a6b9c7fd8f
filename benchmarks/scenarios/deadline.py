"""Scenario 4: deadline precision and how fast the worker is released.

A chain of sub-agents with ``timeout_seconds`` each sits in an await far
longer than its deadline, queued through a pool of one slot, so each one
starts when the previous one released its worker.

* precision: ``completed_at - (started_at + timeout_seconds)`` of each
  TIMED_OUT task (its deadline counts from RUNNING);
* release: ``started_at`` of the next task minus ``completed_at`` of the
  previous one, i.e. from TIMED_OUT until the freed worker runs the next
  sub-agent (loop closed, slot handed over, thread picked it up).
"""

from __future__ import annotations

from subagent_exec import SubagentConfig, SubagentExecutor, SubagentRuntime, SubagentStatus

from ..agents import sleep_graph
from ..core import Figure, Options, ScenarioResult, Target, ms

NAME = "deadline"
TITLE = "4. deadline precision"


def run(options: Options) -> ScenarioResult:
    trials = 20 if options.quick else 200
    timeout = 0.05 if options.quick else 0.1
    result = ScenarioResult(NAME, TITLE, params={"trials": trials, "timeout_seconds": timeout})
    with SubagentRuntime(max_workers=1, name="bench-deadline") as runtime:
        executor = SubagentExecutor(
            SubagentConfig(
                name="overrunning", graph_factory=sleep_graph(30.0), timeout_seconds=timeout
            ),
            runtime=runtime,
        )
        ids = [executor.execute_async(f"deadline-{i}") for i in range(trials)]
        holders = [runtime.get(task_id) for task_id in ids]
        for holder in holders:
            assert holder is not None
            holder.wait(timeout + 30.0)

    lateness: list[float] = []
    release: list[float] = []
    wrong = 0
    previous_end = None
    for holder in holders:
        assert holder is not None
        if holder.status is not SubagentStatus.TIMED_OUT:
            wrong += 1
        assert holder.started_at is not None and holder.completed_at is not None
        lateness.append(ms((holder.completed_at - holder.started_at).total_seconds() - timeout))
        if previous_end is not None:
            release.append(ms((holder.started_at - previous_end).total_seconds()))
        previous_end = holder.completed_at

    result.add(
        Figure(
            "TIMED_OUT minus deadline",
            "ms",
            samples=lateness,
            target=Target("p99", "<", 10.0),
            note=f"timeout_seconds={timeout:g}, task awaits 30 s",
        )
    )
    result.add(
        Figure(
            "worker released (next task started)",
            "ms",
            samples=release,
            target=Target("p99", "<", 20.0),
            note="from TIMED_OUT to the next queued task RUNNING, pool of 1",
        )
    )
    result.add(
        Figure("tasks not TIMED_OUT", "count", value=float(wrong), target=Target("value", "==", 0))
    )
    return result
