"""Scenario 11: the Ray backend on a real two-node cluster, next to the thread pool.

A two-node Ray cluster on this machine (``LocalRayCluster``: a head node and
a worker node, one CPU each, started with ``ray start`` by this scenario and
stopped by process id at its end); this process is the driver, attached to
the head node. It needs its own Ray connection (a driver talks to one
cluster), so Ray must not be initialised when it starts (scenario 10 shuts
down the local Ray it started). Figures:

* stop latency of a RUNNING sub-agent in a long await, per node (``per_node=1``
  pool: ties rotate, so sequential tasks alternate between the nodes), next
  to the thread backend's;
* stop of a 31-node tree (1 + 5 + 25, all RUNNING) spread over both nodes, to
  the last node terminal, next to the thread backend's;
* losing a node: a pool of 2 actors (one per node) with 4 runs on each node;
  the worker node's processes are killed at once (SIGKILL, by pid), and 4 new
  tasks are submitted right then. Time from the kill until the last run of
  the lost node is FAILED, until the 4 new tasks have COMPLETED (some were
  first sent to the lost actor: never started, so sent again), and until the
  pool is back to 2 ready actors (the replacement on the surviving node).
  Each trial starts a fresh worker node. No thread equivalent.

The driver learns that a Ray run is under way from its first AI message, the
only signal that crosses the process boundary; here it names the node.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import time
from typing import Any

from langchain_core.messages import AIMessage
from langgraph.graph import MessagesState

from subagent_exec import (
    SubagentConfig,
    SubagentExecutor,
    SubagentResult,
    SubagentRuntime,
    SubagentStatus,
)

from ..core import Figure, Options, ScenarioResult, Target, ms, wait_until
from .ray_backend import FANOUT, _graph

NAME = "ray_cluster"
TITLE = "11. Ray on a two-node cluster vs thread pool"

#: Stops not counted (one per node: sequential tasks alternate between the nodes).
WARM_UP = 2
LOSS_TARGET_S = 30.0
RECOVERY_TARGET_S = 45.0


def node_graph(seconds: float) -> Any:
    """Says the id of the node it runs on (the thread backend: "thread"),
    then awaits ``seconds``."""

    async def announce(state: MessagesState) -> dict[str, Any]:
        import ray

        context = ray.get_runtime_context()  # in the driver (threads): no actor
        where = context.get_node_id() if context.get_actor_id() else "thread"
        return {"messages": [AIMessage(content=where)]}

    async def work(state: MessagesState) -> dict[str, Any]:
        await asyncio.sleep(seconds)
        return {"messages": [AIMessage(content="done")]}

    return _graph(announce, work)


def _node(holder: SubagentResult) -> str:
    wait_until(lambda: bool(holder.ai_messages), 60.0, "the sub-agent to run")
    return str(holder.ai_messages[0]["text"])


def _executor(rt: SubagentRuntime, seconds: float, name: str) -> SubagentExecutor:
    config = SubagentConfig(name=name, graph_factory=functools.partial(node_graph, seconds))
    return SubagentExecutor(config, runtime=rt)


def _start(executor: SubagentExecutor, task: str, **kw: Any) -> SubagentResult:
    holder = executor.runtime.get(executor.execute_async(task, **kw))
    assert holder is not None
    return holder


def run(options: Options) -> ScenarioResult:
    quick = options.quick
    sizes = {
        "stop_trials": 20 if quick else 100,
        "tree_trials": 3 if quick else 20,
        "loss_trials": 1 if quick else 3,
        "runs_per_node_at_loss": 4,
        "tasks_submitted_at_loss": 4,
    }
    result = ScenarioResult(NAME, TITLE, params=dict(sizes))
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    from subagent_exec import RayBackend, RayWorkerPool
    from subagent_exec._backends.ray.local_cluster import LocalRayCluster

    if ray.is_initialized():
        raise RuntimeError(
            "scenario ray_cluster connects this process to its own two-node cluster; "
            "Ray is already initialised here (a driver talks to one cluster at a time)"
        )
    began = time.perf_counter()
    cluster = LocalRayCluster(workers=1, cpus_per_node=1)
    rng = random.Random(options.seed)
    try:
        cluster.start()
        cluster.connect()
        result.params["cluster_start_s"] = round(time.perf_counter() - began, 2)
        result.params["ray_version"] = ray.__version__
        names = {cluster.head.node_id: "head node", cluster.workers[0].node_id: "worker node"}  # type: ignore[union-attr]

        def runtime(backend: Any, **kwargs: Any) -> SubagentRuntime:
            return SubagentRuntime(name="bench-cluster", backend=backend, **kwargs)

        _stop_latency(result, runtime("thread", max_workers=4), names, sizes, rng)
        pool = RayWorkerPool(per_node=1)
        pool.ready(timeout=120.0)
        try:
            _stop_latency(result, runtime(RayBackend(pool=pool), max_workers=4), names, sizes, rng)
            size = 1 + FANOUT + FANOUT * FANOUT
            for backend in ("thread", RayBackend(pool=pool)):
                rt = runtime(backend, max_workers=size + 1, max_depth=3)
                _tree_stop(result, rt, names, sizes["tree_trials"])
        finally:
            pool.kill()
        _node_loss(result, cluster, sizes)
    finally:
        ray.shutdown()
        cluster.stop()
    return result


def _stop_latency(
    result: ScenarioResult,
    rt: SubagentRuntime,
    names: dict[str | None, str],
    sizes: dict[str, int],
    rng: random.Random,
) -> None:
    by_node: dict[str, list[float]] = {}
    wrong = 0
    with rt:
        executor = _executor(rt, 60.0, "long")
        for trial in range(sizes["stop_trials"] + WARM_UP):
            holder = _start(executor, f"stop {trial}")
            where = names.get(_node(holder), "thread")
            time.sleep(rng.uniform(0.002, 0.05))  # inside its 60 s await
            started = time.perf_counter()
            rt.request_cancel(holder.task_id, "benchmark stop")
            holder.wait()
            if trial >= WARM_UP:  # the first stop on each node opens its connections
                by_node.setdefault(where, []).append(ms(time.perf_counter() - started))
            wrong += holder.status is not SubagentStatus.CANCELLED
            rt.cleanup(holder.task_id)
    for where, samples in sorted(by_node.items()):
        label = "thread" if where == "thread" else f"ray, {where}"
        result.add(
            Figure(
                f"{label}: stop latency, RUNNING in a long await",
                "ms",
                samples=samples,
                target=None if where == "thread" else Target("p99", "<", 30.0),
                note=f"request -> CANCELLED; {wrong} not CANCELLED",
            )
        )


def _tree_stop(
    result: ScenarioResult, rt: SubagentRuntime, names: dict[str | None, str], trials: int
) -> None:
    to_last: list[float] = []
    wrong = 0
    spread: set[str] = set()
    with rt:
        executor = _executor(rt, 60.0, "tree")
        for trial in range(trials):
            root = _start(executor, f"tree {trial}")
            tree, level = [root], [root]
            for _depth in (2, 3):
                level = [
                    _start(executor, f"part {index}", parent_id=parent.task_id)
                    for parent in level
                    for index in range(FANOUT)
                ]
                tree.extend(level)
            spread.update(names.get(_node(holder), "thread") for holder in tree)
            started = time.perf_counter()
            rt.request_cancel(root.task_id, "benchmark stop")
            for holder in tree:
                holder.wait()
            to_last.append(ms(time.perf_counter() - started))
            wrong += sum(h.status is not SubagentStatus.CANCELLED for h in tree)
            for holder in tree:
                rt.cleanup(holder.task_id)
    label = "thread" if spread == {"thread"} else "ray, over both nodes"
    result.add(
        Figure(
            f"{label}: stop a tree of 31, to the last terminal",
            "ms",
            samples=to_last,
            note=f"one request_cancel on the root; ran on {sorted(spread)}; "
            f"{wrong} not CANCELLED",
        )
    )


def _node_loss(result: ScenarioResult, cluster: Any, sizes: dict[str, int]) -> None:
    trials = [_lose_a_node(cluster, sizes, trial) for trial in range(sizes["loss_trials"])]
    note = "; ".join(t[3] for t in trials)
    result.add(
        Figure(
            "ray: node lost -> the last of its runs FAILED",
            "s",
            samples=[t[0] for t in trials],
            target=Target("max", "<", LOSS_TARGET_S),
            note=f"{sizes['runs_per_node_at_loss']} runs on the lost node; {note}",
        )
    )
    result.add(
        Figure(
            "ray: node lost -> new tasks COMPLETED again",
            "s",
            samples=[t[1] for t in trials],
            target=Target("max", "<", RECOVERY_TARGET_S),
            note=f"{sizes['tasks_submitted_at_loss']} tasks submitted at the loss",
        )
    )
    result.add(
        Figure(
            "ray: node lost -> the pool back to full strength",
            "s",
            samples=[t[2] for t in trials],
            note="the lost actor's replacement ready on the surviving node",
        )
    )


def _lose_a_node(
    cluster: Any, sizes: dict[str, int], trial: int
) -> tuple[float, float, float, str]:
    """One trial: seconds from the kill to the lost runs FAILED, to the new
    tasks COMPLETED, to the pool at full strength again; and a note."""
    from subagent_exec import RayBackend, RayWorkerPool

    worker = next((n for n in cluster.workers if n.running), None) or cluster.add_worker()
    head = cluster.head.node_id
    pool = RayWorkerPool(actors=2)  # one per node
    pool.ready(timeout=120.0)
    rt = SubagentRuntime(name="bench-loss", max_workers=32, backend=RayBackend(pool=pool))
    try:
        long, short = _executor(rt, 120.0, "long"), _executor(rt, 0.0, "short")
        running = [_start(long, f"r{i}") for i in range(2 * sizes["runs_per_node_at_loss"])]
        on_lost = [h for h in running if _node(h) == worker.node_id]
        killed_at = cluster.kill(worker)
        fresh = [_start(short, f"new {i}") for i in range(sizes["tasks_submitted_at_loss"])]
        for holder in on_lost:
            holder.wait(120.0)
        failed = time.monotonic() - killed_at
        for holder in fresh:
            holder.wait(120.0)
        recovered = time.monotonic() - killed_at
        wait_until(lambda: pool.actors_by_node() == {head: 2}, 120.0, "the replacement")
        replaced = time.monotonic() - killed_at
        note = (
            f"trial {trial}: {sum(h.status is SubagentStatus.FAILED for h in on_lost)}/"
            f"{len(on_lost)} FAILED, "
            f"{sum(h.status is SubagentStatus.COMPLETED for h in fresh)}/{len(fresh)} new "
            f"COMPLETED, {rt.stats()['ray_resent_runs_total']} sent again"
        )
    finally:
        rt.shutdown(cancel=True, wait=True, timeout=60.0)
        pool.kill()
    return failed, recovered, replaced, note
