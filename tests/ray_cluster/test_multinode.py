"""The Ray backend on a real two-node cluster (fixtures: conftest.py here).

Placement (one actor per node, ties rotating, N actors spread evenly), a
tree spread over both nodes stopped as a whole, the loss of a node in the
middle of a run (its runs FAILED with ``RayActorError``, their subtrees
cancelled on the other node, the driver going on, new tasks completing on
the surviving node, no actor placed on the lost node), a per-node pool
following nodes that join and leave, and a placement that cannot be
satisfied. Sub-agents say which node they run on (their first AI message),
the one signal that crosses processes.

Bounds are generous (a shared 2-core machine) but finite: a lost node's runs
are FAILED within ``LOSS_BOUND`` s, new tasks complete within ``RECOVERY_BOUND``
s of the loss.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import ray
from langchain_core.messages import AIMessage
from langgraph.graph import MessagesState

from subagent_exec import (
    RayBackend,
    RayWorkerPool,
    SubagentConfig,
    SubagentExecutor,
    SubagentResult,
    SubagentRuntime,
    SubagentStatus,
)

from ..helpers import graph_of, terminal, wait_until

LOSS_BOUND = 30.0
RECOVERY_BOUND = 45.0

# -- what the sub-agents run (module level: importable by the workers) ------------------


def where_graph(seconds: float = 0.0) -> Any:
    """Says the id of the node it runs on, awaits ``seconds``, says it again."""

    async def announce(state: MessagesState) -> dict[str, Any]:
        return {"messages": [AIMessage(content=ray.get_runtime_context().get_node_id())]}

    async def work(state: MessagesState) -> dict[str, Any]:
        await asyncio.sleep(seconds)
        return {"messages": [AIMessage(content=ray.get_runtime_context().get_node_id())]}

    return graph_of(announce, work)


def node_of(holder: SubagentResult, timeout: float = 30.0) -> str:
    """The node a task runs on (from its first AI message)."""
    assert wait_until(lambda: bool(holder.ai_messages), timeout=timeout), holder
    return str(holder.ai_messages[0]["text"])


@pytest.fixture
def pools() -> Iterator[Callable[..., RayWorkerPool]]:
    """Make pools on the cluster, warmed up; every one is killed after the test."""
    made: list[RayWorkerPool] = []

    def make(**options: Any) -> RayWorkerPool:
        pool = RayWorkerPool(**options)
        made.append(pool)
        return pool

    yield make
    for pool in made:
        pool.kill()


def _executor(rt: SubagentRuntime, seconds: float, name: str = "where") -> SubagentExecutor:
    config = SubagentConfig(name=name, graph_factory=functools.partial(where_graph, seconds))
    return SubagentExecutor(config, runtime=rt)


def _start(executor: SubagentExecutor, task: str, **kw: Any) -> SubagentResult:
    holder = executor.runtime.get(executor.execute_async(task, **kw))
    assert holder is not None
    return holder


# -- placement ------------------------------------------------------------------------------


def test_one_actor_per_node_and_tasks_rotate_between_them(
    ray_cluster: Any, worker_node: Any, pools: Any, make_runtime: Any
) -> None:
    head, worker = ray_cluster.head.node_id, worker_node.node_id
    pool = pools(per_node=1)
    pool.ready(timeout=60.0)
    assert pool.actors_by_node() == {head: 1, worker: 1}
    rt = make_runtime(max_workers=4, backend=RayBackend(pool=pool))
    executor = _executor(rt, 0.0)
    nodes = []
    for index in range(6):  # one after another: every actor idle, a tie each time
        holder = executor.execute(f"t{index}", timeout=30.0)
        assert holder.status is SubagentStatus.COMPLETED, holder.error
        nodes.append(holder.result)
    assert set(nodes) == {head, worker}
    assert all(a != b for a, b in itertools.pairwise(nodes)), nodes  # ties rotate
    assert rt.stats()["ray_nodes_used"] == 2


def test_n_actors_are_spread_evenly_over_the_nodes(
    ray_cluster: Any, worker_node: Any, pools: Any
) -> None:
    head, worker = ray_cluster.head.node_id, worker_node.node_id
    for size, each in ((2, 1), (4, 2)):
        pool = pools(actors=size)
        pool.ready(timeout=60.0)
        assert pool.actors_by_node() == {head: each, worker: each}


# -- a tree over both nodes -----------------------------------------------------------------


def test_a_tree_spread_over_both_nodes_stops_as_a_whole(
    ray_cluster: Any, worker_node: Any, pools: Any, make_runtime: Any
) -> None:
    pool = pools(per_node=1)
    pool.ready(timeout=60.0)
    rt = make_runtime(max_workers=16, backend=RayBackend(pool=pool))
    executor = _executor(rt, 60.0)
    root = _start(executor, "root")
    tree, level = [root], [root]
    for _depth in (2, 3):  # 1 + 3 + 9
        level = [
            _start(executor, f"part {i}", parent_id=parent.task_id)
            for parent in level
            for i in range(3)
        ]
        tree.extend(level)
    assert {node_of(h) for h in tree} == {ray_cluster.head.node_id, worker_node.node_id}
    began = time.monotonic()
    assert rt.request_cancel(root.task_id, "stop the tree")
    for holder in tree:
        terminal(holder, timeout=10.0)
    assert time.monotonic() - began < 5.0
    assert [h.status for h in tree] == [SubagentStatus.CANCELLED] * len(tree)
    assert wait_until(lambda: rt.stats()["free_slots"] == 16)


# -- a placement that cannot be satisfied ---------------------------------------------------


def test_a_placement_no_node_can_satisfy_fails_clearly_and_never_runs(
    ray_cluster: Any, pools: Any, make_runtime: Any
) -> None:
    pool = pools(per_node=1, actor_options={"num_cpus": 2}, placement_timeout_seconds=2.0)
    rt = make_runtime(max_workers=2, backend=RayBackend(pool=pool))
    kinds: list[str] = []
    rt.subscribe(lambda event: kinds.append(event.kind))
    executor = _executor(rt, 0.0)
    holders = [_start(executor, f"t{i}") for i in range(3)]  # 2 hold slots, 1 queued
    time.sleep(0.5)
    assert [h.status for h in holders] == [SubagentStatus.PENDING] * 3
    assert rt.stats()["ray_placement_waiting"] == 2
    for holder in holders:
        terminal(holder, timeout=15.0)  # 2 s each, the third after the first two
        assert holder.status is SubagentStatus.FAILED and holder.started_at is None
        assert holder.error is not None and holder.error.startswith("RayPlacementError:")
        assert "placement_timeout_seconds=2" in holder.error
        assert "none of which can hold one" in holder.error and "'CPU': 2.0" in holder.error
    assert "started" not in kinds
    assert rt.stats()["ray_placement_failures_total"] == 3
    assert rt.stats()["free_slots"] == 2


# -- nodes joining and leaving -------------------------------------------------------------


def test_a_per_node_pool_follows_nodes_joining_and_leaving(
    ray_cluster: Any, worker_node: Any, pools: Any, make_runtime: Any
) -> None:
    pool = pools(per_node=1)
    pool.ready(timeout=60.0)
    before = pool.actors_by_node()
    rt = make_runtime(max_workers=4, backend=RayBackend(pool=pool))
    executor = _executor(rt, 0.0)

    joined = ray_cluster.add_worker()
    assert wait_until(lambda: joined.node_id in pool.actors_by_node(), timeout=RECOVERY_BOUND)
    landed = {executor.execute(f"t{i}", timeout=30.0).result for i in range(len(before) + 1)}
    assert joined.node_id in landed

    ray_cluster.kill(joined)
    assert wait_until(lambda: pool.actors_by_node() == before, timeout=LOSS_BOUND)
    for index in range(3):
        holder = executor.execute(f"after {index}", timeout=RECOVERY_BOUND)
        assert holder.status is SubagentStatus.COMPLETED and holder.result in before
    assert rt.stats()["ray_actors"] == len(before)  # none waiting on the lost node


# -- losing a node --------------------------------------------------------------------------


def test_losing_a_node_mid_run(
    ray_cluster: Any, worker_node: Any, pools: Any, make_runtime: Any
) -> None:
    """Its runs FAILED with RayActorError within LOSS_BOUND, their descendants on
    the other node CANCELLED, the driver goes on, new tasks complete on the
    surviving node within RECOVERY_BOUND, and no actor goes to the lost node."""
    head, lost = ray_cluster.head.node_id, worker_node.node_id
    pool = pools(actors=2)  # one per node
    pool.ready(timeout=60.0)
    rt = make_runtime(max_workers=16, backend=RayBackend(pool=pool))
    long, short = _executor(rt, 60.0, "long"), _executor(rt, 0.0, "short")
    roots = [_start(long, f"root {i}") for i in range(2)]  # ties rotate: one per node
    parent = next(r for r in roots if node_of(r) == lost)
    bystander = next(r for r in roots if node_of(r) == head)
    children = [_start(long, f"child {i}", parent_id=parent.task_id) for i in range(4)]
    on_head = [c for c in children if node_of(c) == head]
    on_lost = [c for c in children if node_of(c) == lost]
    assert on_head and on_lost

    killed_at = ray_cluster.kill(worker_node)
    fresh = [_start(short, f"after {i}") for i in range(4)]  # some go to the lost actor first

    for holder in [parent, *on_lost]:
        terminal(holder, timeout=LOSS_BOUND)
    failed_after = time.monotonic() - killed_at
    assert parent.status is SubagentStatus.FAILED
    assert parent.error is not None and parent.error.startswith(
        "RayActorError: the Ray worker running this sub-agent died before it finished"
    )
    for child in on_lost:  # failed with its node, or cancelled by its parent's end first
        assert child.status in (SubagentStatus.FAILED, SubagentStatus.CANCELLED)
    for child in on_head:  # alive, on the other node: cancelled by the cascade
        terminal(child, timeout=10.0)
        assert child.status is SubagentStatus.CANCELLED
        assert f"ancestor {parent.task_id}" in (child.cancel_reason or "")
        assert "failed without waiting for it" in (child.cancel_reason or "")

    for holder in fresh:
        terminal(holder, timeout=RECOVERY_BOUND)
        assert holder.status is SubagentStatus.COMPLETED, holder.error
        assert holder.result == head
    recovered_after = time.monotonic() - killed_at
    assert bystander.status is SubagentStatus.RUNNING  # the driver's other work goes on
    assert rt.request_cancel(bystander.task_id)
    assert terminal(bystander, timeout=5.0).status is SubagentStatus.CANCELLED

    # The lost actor is replaced on the surviving node, never on the lost one.
    assert wait_until(lambda: pool.actors_by_node() == {head: 2}, timeout=30.0)
    stats = rt.stats()
    assert stats["ray_actors_lost_total"] == 1 and stats["ray_actors_replaced_total"] == 1
    print(f"\nnode loss: FAILED after {failed_after:.1f} s, new tasks done {recovered_after:.1f} s")


def test_losing_a_node_whose_actor_cannot_be_replaced_anywhere(
    ray_cluster: Any, worker_node: Any, pools: Any, make_runtime: Any
) -> None:
    """Actors of one CPU on one-CPU nodes: the lost actor's replacement cannot
    be placed (the surviving node's CPU is taken). It is never used: new tasks
    go to the ready actor and complete; none is left RUNNING on it."""
    head = ray_cluster.head.node_id
    pool = pools(actors=2, actor_options={"num_cpus": 1})
    pool.ready(timeout=60.0)
    assert pool.actors_by_node() == {head: 1, worker_node.node_id: 1}
    rt = make_runtime(max_workers=8, backend=RayBackend(pool=pool))
    short = _executor(rt, 0.0, "short")
    ray_cluster.kill(worker_node)
    fresh = [_start(short, f"after {i}") for i in range(4)]  # half to the lost actor first
    for holder in fresh:
        terminal(holder, timeout=RECOVERY_BOUND)
        assert holder.status is SubagentStatus.COMPLETED, holder.error
        assert holder.result == head
    stats = rt.stats()
    assert stats["ray_actors"] == 2 and stats["ray_actors_ready"] == 1  # one waits for a CPU
    assert stats["ray_resent_runs_total"] >= 1
    assert pool.actors_by_node() == {head: 1}


def test_a_pool_refuses_work_once_ray_is_reconnected_elsewhere(
    ray_cluster: Any, pools: Any
) -> None:
    """A pool belongs to the Ray connection it was made in: after
    ``ray.shutdown()`` and a new ``ray.init`` it starts no actor through the
    new connection (this is what keeps the suite's local Ray pool inert)."""
    pool = pools(actors=1)
    pool.ready(timeout=60.0)
    ray.shutdown()
    ray.init(address=ray_cluster.address, log_to_driver=False)

    def refuses() -> bool:
        try:
            pool.acquire()
        except RuntimeError as exc:
            return "Ray was shut down (or reconnected elsewhere)" in str(exc)
        return False

    assert wait_until(refuses, timeout=10.0)
    assert pool.stats()["ray_actors_replaced_total"] == 0
