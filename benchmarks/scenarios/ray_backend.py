"""Scenario 10: the Ray backend, next to the thread pool in the same run.

A local Ray (2 CPUs, no dashboard; started here unless this process already
initialised Ray, and shut down afterwards if started here) with one pool of
2 async actors shared by every Ray runtime of the scenario, warmed up first
(an actor imports langchain once, when it is created). Each figure is
measured on both backends with the same sub-agents:

* stop latency of a RUNNING sub-agent in a long await (target p99 < 30 ms on
  Ray): from ``request_cancel`` to ``wait()`` returning;
* stop of a 31-node tree (1 + 5 + 25, all RUNNING), to the last node
  terminal. The children are started from the host with ``parent_id`` on
  both backends, so both register the same tree the same way (a sub-agent
  on Ray can also delegate through its ``task`` tool; that path goes
  through the driver too);
* dispatch overhead: trivial sub-agents run one after another with
  ``execute()``, per task;
* throughput: 1,000 short sub-agents (one 10 ms await each) submitted at once.

The driver learns that a Ray run is under way from its first AI message
("working"), the only signal that crosses the process boundary.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

from langchain_core.messages import AIMessage
from langgraph.graph import END, START, MessagesState, StateGraph

from subagent_exec import (
    SubagentConfig,
    SubagentExecutor,
    SubagentResult,
    SubagentRuntime,
    SubagentStatus,
)

from ..core import Figure, Options, ScenarioResult, Target, median, ms, wait_until

NAME = "ray"
TITLE = "10. Ray backend vs thread pool"

FANOUT = 5


# -- sub-agents (module level, so Ray workers import them by reference) ------------------


def _graph(*nodes: Callable[[MessagesState], Any]) -> Any:
    builder = StateGraph(MessagesState)
    previous = START
    for index, node in enumerate(nodes):
        builder.add_node(f"n{index}", node)  # type: ignore[call-overload]
        builder.add_edge(previous, f"n{index}")
        previous = f"n{index}"
    builder.add_edge(previous, END)
    return builder.compile()


def answer_graph(delay: float) -> Any:
    async def answer(state: MessagesState) -> dict[str, Any]:
        if delay:
            await asyncio.sleep(delay)
        return {"messages": [AIMessage(content="done")]}

    return _graph(answer)


def working_graph(seconds: float) -> Any:
    async def announce(state: MessagesState) -> dict[str, Any]:
        return {"messages": [AIMessage(content="working")]}

    async def work(state: MessagesState) -> dict[str, Any]:
        await asyncio.sleep(seconds)
        return {"messages": [AIMessage(content="slept")]}

    return _graph(announce, work)


def _is_working(holder: SubagentResult) -> bool:
    return bool(holder.ai_messages)


def _all_working(holders: list[SubagentResult]) -> bool:
    return all(_is_working(h) for h in holders)


# -- the scenario -------------------------------------------------------------------------------


def run(options: Options) -> ScenarioResult:
    quick = options.quick
    sizes = {
        "stop_trials": 20 if quick else 100,
        "tree_trials": 3 if quick else 20,
        "dispatch_tasks": 30 if quick else 200,
        "throughput_tasks": 1000,
        "throughput_workers": 32,
    }
    result = ScenarioResult(NAME, TITLE, params=dict(sizes))
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    from subagent_exec import RayBackend, RayWorkerPool

    started_ray = not ray.is_initialized()
    began = time.perf_counter()
    if started_ray:
        # Session files in a short temp dir of our own (not /tmp/ray), removed after.
        ray_dir = tempfile.mkdtemp(prefix="sx-bench-ray-")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=ray_dir)
    pool = RayWorkerPool(actors=2)
    pool.ready(timeout=120.0)
    result.params["ray_start_and_warm_up_s"] = round(time.perf_counter() - began, 2)
    result.params["ray_version"] = ray.__version__
    rng = random.Random(options.seed)

    def runtime(backend: str, **kwargs: Any) -> SubagentRuntime:
        chosen: Any = RayBackend(pool=pool) if backend == "ray" else "thread"
        return SubagentRuntime(name=f"bench-{backend}", backend=chosen, **kwargs)

    try:
        for backend in ("thread", "ray"):
            _stop_latency(result, runtime(backend, max_workers=4), backend, sizes, rng)
        for backend in ("thread", "ray"):
            size = 1 + FANOUT + FANOUT * FANOUT
            rt = runtime(backend, max_workers=size + 1, max_depth=3)
            _tree_stop(result, rt, backend, sizes["tree_trials"])
        for backend in ("thread", "ray"):
            _dispatch(result, runtime(backend, max_workers=8), backend, sizes["dispatch_tasks"])
        for backend in ("thread", "ray"):
            rt = runtime(backend, max_workers=sizes["throughput_workers"])
            _throughput(result, rt, backend, sizes["throughput_tasks"])
    finally:
        pool.kill()
        if started_ray:
            ray.shutdown()
            shutil.rmtree(ray_dir, ignore_errors=True)
    return result


def _executor(rt: SubagentRuntime, factory: Callable[[], Any], name: str) -> SubagentExecutor:
    return SubagentExecutor(SubagentConfig(name=name, graph_factory=factory), runtime=rt)


def _stop_latency(
    result: ScenarioResult,
    rt: SubagentRuntime,
    backend: str,
    sizes: dict[str, int],
    rng: random.Random,
) -> None:
    samples: list[float] = []
    wrong = 0
    with rt:
        executor = _executor(rt, functools.partial(working_graph, 60.0), "long")
        for trial in range(sizes["stop_trials"]):
            holder = rt.get(executor.execute_async(f"stop {trial}"))
            assert holder is not None
            wait_until(functools.partial(_is_working, holder), 30.0, "the sub-agent to run")
            time.sleep(rng.uniform(0.002, 0.05))  # inside its 60 s await
            began = time.perf_counter()
            rt.request_cancel(holder.task_id, "benchmark stop")
            holder.wait()
            samples.append(ms(time.perf_counter() - began))
            wrong += holder.status is not SubagentStatus.CANCELLED
            rt.cleanup(holder.task_id)
    result.add(
        Figure(
            f"{backend}: stop latency, RUNNING in a long await",
            "ms",
            samples=samples,
            target=Target("p99", "<", 30.0) if backend == "ray" else None,
            note=f"request -> CANCELLED; {wrong} not CANCELLED",
        )
    )


def _tree_stop(result: ScenarioResult, rt: SubagentRuntime, backend: str, trials: int) -> None:
    to_last: list[float] = []
    wrong = 0
    with rt:
        executor = _executor(rt, functools.partial(working_graph, 60.0), "tree")
        for trial in range(trials):
            root = rt.get(executor.execute_async(f"tree {trial}"))
            assert root is not None
            tree = [root]
            level = [root]
            for _depth in (2, 3):
                below = []
                for parent in level:
                    for index in range(FANOUT):
                        task_id = executor.execute_async(f"part {index}", parent_id=parent.task_id)
                        child = rt.get(task_id)
                        assert child is not None
                        below.append(child)
                tree.extend(below)
                level = below
            wait_until(functools.partial(_all_working, tree), 60.0, "the tree to run")
            began = time.perf_counter()
            rt.request_cancel(root.task_id, "benchmark stop")
            for holder in tree:
                holder.wait()
            to_last.append(ms(time.perf_counter() - began))
            wrong += sum(h.status is not SubagentStatus.CANCELLED for h in tree)
            for holder in tree:
                rt.cleanup(holder.task_id)
    result.add(
        Figure(
            f"{backend}: stop a tree of 31, to the last terminal",
            "ms",
            samples=to_last,
            note=f"one request_cancel on the root; {wrong} not CANCELLED",
        )
    )


def _dispatch(result: ScenarioResult, rt: SubagentRuntime, backend: str, tasks: int) -> None:
    samples: list[float] = []
    with rt:
        executor = _executor(rt, functools.partial(answer_graph, 0.0), "trivial")
        for i in range(tasks + 5):
            began = time.perf_counter()
            holder = executor.execute(f"trivial {i}")
            if i >= 5:  # the first runs warm caches on both sides
                samples.append((time.perf_counter() - began) * 1e6)
            if holder.status is not SubagentStatus.COMPLETED:
                raise RuntimeError(f"a trivial sub-agent ended {holder.status}: {holder.error}")
            rt.cleanup(holder.task_id)
    result.add(
        Figure(
            f"{backend}: execute() of a trivial sub-agent, one after another",
            "µs",
            samples=samples,
            note=f"median {median(samples) / 1000:.2f} ms per task, submit to COMPLETED",
        )
    )


def _throughput(result: ScenarioResult, rt: SubagentRuntime, backend: str, tasks: int) -> None:
    with rt:
        executor = _executor(rt, functools.partial(answer_graph, 0.01), "short")
        began = time.perf_counter()
        holders = [rt.get(executor.execute_async(f"short {i}")) for i in range(tasks)]
        for holder in holders:
            assert holder is not None
            holder.wait(300.0)
        elapsed = time.perf_counter() - began
        done = sum(h is not None and h.status is SubagentStatus.COMPLETED for h in holders)
    result.add(
        Figure(
            f"{backend}: throughput, {tasks} short sub-agents at once",
            "tasks/s",
            value=tasks / elapsed,
            note=f"max_workers={rt.max_workers}, 10 ms await each; {done} COMPLETED "
            f"in {elapsed:.2f} s",
        )
    )
