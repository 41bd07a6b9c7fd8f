"""Scenario 7: dispatch overhead. Trivial sub-agents (``create_agent`` over a
ScriptedChatModel that answers at once) run one after the other

* through the executor: ``SubagentExecutor.execute`` from a plain thread, and
  ``aexecute`` awaited from a lead loop;
* directly: the same agent built and awaited with ``await graph.ainvoke`` in
  one event loop (the executor builds the agent per run too, so both sides do
  the same work).

The floor, in the same rounds: the same agent run on one persistent event
loop in a worker thread, handed over from the caller's thread with
``run_coroutine_threadsafe`` (``benchmarks/floors.py``, :class:`LoopThread`):
what running on a loop of its own in another thread costs at least.

All sides alternate in rounds so machine noise hits them alike. The ratio
of medians is the relative cost; the difference of medians is the absolute
per-task overhead of running a sub-agent through the executor (own loop,
worker thread, registry, events, stop checkpoints).
"""

from __future__ import annotations

import asyncio
import time

from langchain.agents import create_agent
from langchain_core.messages import HumanMessage

from subagent_exec import SubagentConfig, SubagentExecutor, SubagentRuntime, SubagentStatus
from subagent_exec.testing import ScriptedChatModel

from ..core import Figure, Options, ScenarioResult, Target, median
from ..floors import LoopThread

NAME = "dispatch"
TITLE = "7. dispatch overhead"


def run(options: Options) -> ScenarioResult:
    rounds = 4 if options.quick else 10
    per_round = 25 if options.quick else 100
    result = ScenarioResult(NAME, TITLE, params={"rounds": rounds, "tasks_per_round": per_round})
    model = ScriptedChatModel(default="done", latency=0.0)
    direct: list[float] = []
    executed: list[float] = []
    awaited: list[float] = []
    floor: list[float] = []
    # CPU seconds of the whole process per round, divided by the tasks of the
    # round: the work itself, without time spent waiting for a core (on a VM
    # it still rises when other tenants steal time from the same vCPUs).
    cpu: dict[str, list[float]] = {"direct": [], "execute": []}
    worker = LoopThread("bench-dispatch-floor")
    with SubagentRuntime(max_workers=8, name="bench-dispatch") as runtime:
        executor = SubagentExecutor(SubagentConfig(name="trivial", model=model), runtime=runtime)
        # Warm-up: first runs pay imports and caches on every path.
        asyncio.run(_direct(model, 10, []))
        _through_executor(executor, 10, [])
        _on_worker_loop(worker, model, 10, [])
        for _ in range(rounds):
            cpu_started = time.process_time()
            asyncio.run(_direct(model, per_round, direct))
            cpu["direct"].append((time.process_time() - cpu_started) / per_round)
            cpu_started = time.process_time()
            _through_executor(executor, per_round, executed)
            cpu["execute"].append((time.process_time() - cpu_started) / per_round)
            asyncio.run(_through_aexecute(executor, per_round, awaited))
            _on_worker_loop(worker, model, per_round, floor)
    worker.close()

    base = median(direct)
    result.add(Figure("direct: await graph.ainvoke", "µs", samples=[s * 1e6 for s in direct]))
    result.add(Figure("executor: execute()", "µs", samples=[s * 1e6 for s in executed]))
    result.add(Figure("executor: await aexecute()", "µs", samples=[s * 1e6 for s in awaited]))
    result.add(
        Figure(
            "floor: persistent loop in a worker thread",
            "µs",
            samples=[s * 1e6 for s in floor],
            note="benchmarks/floors.py LoopThread, run_coroutine_threadsafe from the caller",
        )
    )
    result.add(Figure("floor / direct (medians)", "ratio", value=median(floor) / base))
    result.add(
        Figure(
            "execute() / direct (medians)",
            "ratio",
            value=median(executed) / base,
            target=Target("value", "<=", 1.2),
        )
    )
    result.add(
        Figure("execute() / floor (medians)", "ratio", value=median(executed) / median(floor))
    )
    result.add(
        Figure(
            "per-task overhead, execute()",
            "µs",
            value=(median(executed) - base) * 1e6,
            note="median(executor) - median(direct)",
        )
    )
    result.add(
        Figure(
            "CPU per task, execute() / direct (medians)",
            "ratio",
            value=median(cpu["execute"]) / median(cpu["direct"]),
            note=f"{(median(cpu['execute']) - median(cpu['direct'])) * 1e6:.0f} µs more CPU "
            "per task (process CPU time per round)",
        )
    )
    result.add(
        Figure(
            "aexecute() / direct (medians)",
            "ratio",
            value=median(awaited) / base,
            target=Target("value", "<=", 1.2),
        )
    )
    result.add(
        Figure(
            "per-task overhead, aexecute()",
            "µs",
            value=(median(awaited) - base) * 1e6,
        )
    )
    return result


async def _direct(model: ScriptedChatModel, count: int, into: list[float], first: int = 0) -> None:
    for i in range(first, first + count):
        started = time.perf_counter()
        graph = create_agent(model, tools=[])
        await graph.ainvoke({"messages": [HumanMessage(content=f"trivial {i}")]})
        into.append(time.perf_counter() - started)


def _on_worker_loop(
    worker: LoopThread, model: ScriptedChatModel, count: int, into: list[float]
) -> None:
    for i in range(count):
        started = time.perf_counter()
        worker.run(_direct(model, 1, [], first=i))
        into.append(time.perf_counter() - started)


def _through_executor(executor: SubagentExecutor, count: int, into: list[float]) -> None:
    runtime = executor.runtime
    for i in range(count):
        started = time.perf_counter()
        holder = executor.execute(f"trivial {i}")
        into.append(time.perf_counter() - started)
        _check(holder.status, holder.error)
        runtime.cleanup(holder.task_id)


async def _through_aexecute(executor: SubagentExecutor, count: int, into: list[float]) -> None:
    runtime = executor.runtime
    for i in range(count):
        started = time.perf_counter()
        holder = await executor.aexecute(f"trivial {i}")
        into.append(time.perf_counter() - started)
        _check(holder.status, holder.error)
        runtime.cleanup(holder.task_id)


def _check(status: SubagentStatus, error: str | None) -> None:
    if status is not SubagentStatus.COMPLETED:
        raise RuntimeError(f"a trivial sub-agent ended {status.value}: {error}")
