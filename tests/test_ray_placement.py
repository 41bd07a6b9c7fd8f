"""Placement on the local Ray: which actor a task goes to, and when.

A task is sent only to a READY actor (its ``ready`` call returned), the one
with the fewest runs in flight, ties rotating; an actor that dies is noticed
and replaced even when idle; a run sent to an actor that died before the run
started there is sent again; with no actor ready, tasks wait PENDING and fail
with a clear ``RayPlacementError`` after the pool's placement timeout. The
multi-node side (spread over nodes, node loss) is in tests/ray_cluster/.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
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

from .helpers import graph_of, terminal, wait_until

# -- what the sub-agents run (module level: importable by a Ray worker) ----------


def pid_graph(text: str = "") -> Any:
    """Answers with the id of the process it runs in (which actor)."""

    async def answer(state: MessagesState) -> dict[str, Any]:
        return {"messages": [AIMessage(content=text or str(os.getpid()))]}

    return graph_of(answer)


def blocks_then_dies_graph(seconds: float) -> Any:
    """Announces itself, then blocks its actor's loop (nothing else can start
    there) for ``seconds``, then kills the actor's process."""

    async def announce(state: MessagesState) -> dict[str, Any]:
        return {"messages": [AIMessage(content="working")]}

    async def block_and_die(state: MessagesState) -> dict[str, Any]:
        await asyncio.sleep(0.2)  # "working" leaves first
        time.sleep(seconds)
        os._exit(1)

    return graph_of(announce, block_and_die)


def _start(rt: SubagentRuntime, factory: Callable[[], Any], task: str = "go") -> SubagentResult:
    config = SubagentConfig(name="placed", graph_factory=factory)
    holder = rt.get(SubagentExecutor(config, runtime=rt).execute_async(task))
    assert holder is not None
    return holder


@pytest.fixture
def own_pool(ray_pool: Any) -> Iterator[Callable[..., RayWorkerPool]]:
    """Pools of the test's own on the session's local Ray, killed afterwards."""
    made: list[RayWorkerPool] = []

    def make(**options: Any) -> RayWorkerPool:
        pool = RayWorkerPool(**options)
        made.append(pool)
        return pool

    yield make
    for pool in made:
        pool.kill()


# -- only ready actors, ties rotate ----------------------------------------------


def test_a_task_waits_pending_until_an_actor_is_ready(
    own_pool: Any, make_runtime: Callable[..., SubagentRuntime]
) -> None:
    pool = own_pool(actors=1)  # cold: its actor still has to start and import the engine
    rt = make_runtime(max_workers=2, backend=RayBackend(pool=pool))
    holder = _start(rt, functools.partial(pid_graph, "ran"))
    assert wait_until(lambda: rt.stats()["ray_placement_waiting"] == 1)
    stats = rt.stats()  # an actor takes more than a second to start and import langchain
    assert stats["ray_actors"] == 1 and stats["ray_actors_ready"] == 0
    assert holder.status is SubagentStatus.PENDING and holder.started_at is None
    assert stats["ray_submitted_total"] == 0
    terminal(holder, timeout=60.0)
    assert holder.status is SubagentStatus.COMPLETED and holder.result == "ran"
    assert rt.stats()["ray_actors_ready"] == 1 and rt.stats()["ray_placement_waiting"] == 0


def test_ties_between_idle_actors_rotate(
    ray_pool: Any, make_runtime: Callable[..., SubagentRuntime]
) -> None:
    rt = make_runtime(max_workers=2, backend=RayBackend(pool=ray_pool))
    pids = [terminal(_start(rt, pid_graph)).result for _ in range(6)]  # one after another
    assert len(set(pids)) == 2
    assert all(a != b for a, b in itertools.pairwise(pids)), pids


# -- lost actors -----------------------------------------------------------------


def test_an_idle_actor_that_dies_is_replaced_before_a_task_needs_it(
    own_pool: Any, make_runtime: Callable[..., SubagentRuntime]
) -> None:
    import ray

    pool = own_pool(actors=1)
    pool.ready(timeout=60.0)
    member = pool.acquire()
    assert member is not None
    pool.release(member)
    ray.kill(member.actor)  # no run on it: only its lifeline call can tell
    assert wait_until(lambda: pool.stats()["ray_actors_lost_total"] == 1, timeout=30.0)
    assert pool.stats()["ray_actors_replaced_total"] == 1
    pool.ready(timeout=60.0)
    rt = make_runtime(max_workers=2, backend=RayBackend(pool=pool))
    holder = terminal(_start(rt, functools.partial(pid_graph, "fine")), timeout=30.0)
    assert holder.status is SubagentStatus.COMPLETED and holder.result == "fine"
    assert rt.stats()["ray_resent_runs_total"] == 0  # it went to the replacement at once


def test_a_run_sent_to_an_actor_that_died_before_starting_it_is_sent_again(
    own_pool: Any, make_runtime: Callable[..., SubagentRuntime]
) -> None:
    pool = own_pool(actors=1)
    pool.ready(timeout=60.0)
    rt = make_runtime(max_workers=2, backend=RayBackend(pool=pool))
    first = _start(rt, functools.partial(blocks_then_dies_graph, 2.5))
    assert wait_until(lambda: bool(first.ai_messages), timeout=30.0)
    time.sleep(0.6)  # the actor's loop is blocked now
    second = _start(rt, functools.partial(pid_graph, "second"))  # the same, blocked actor
    assert wait_until(lambda: second.status is SubagentStatus.RUNNING)
    terminal(first, timeout=30.0)
    assert first.status is SubagentStatus.FAILED  # it had started: never run twice
    assert first.error is not None and first.error.startswith("RayActorError: the Ray worker")
    terminal(second, timeout=60.0)
    assert second.status is SubagentStatus.COMPLETED, second.error
    assert [m["text"] for m in second.ai_messages] == ["second"]
    stats = rt.stats()
    assert stats["ray_resent_runs_total"] == 1
    assert stats["ray_submitted_total"] == 3  # first, second, second again
    assert stats["ray_actors_replaced_total"] == 1


# -- nothing can be placed -------------------------------------------------------


def _unplaceable(own_pool: Any, timeout: float) -> RayWorkerPool:
    pool: RayWorkerPool = own_pool(
        actors=1, actor_options={"num_cpus": 64}, placement_timeout_seconds=timeout
    )
    return pool


def test_with_no_actor_ready_tasks_wait_pending_then_fail_clearly(
    own_pool: Any, make_runtime: Callable[..., SubagentRuntime]
) -> None:
    rt = make_runtime(max_workers=1, backend=RayBackend(pool=_unplaceable(own_pool, 1.0)))
    kinds: list[str] = []
    rt.subscribe(lambda event: kinds.append(event.kind))
    waiting = _start(rt, pid_graph)  # holds the slot, waits for an actor
    queued = _start(rt, pid_graph)  # waits for the slot, as always
    time.sleep(0.3)
    assert waiting.status is SubagentStatus.PENDING and queued.status is SubagentStatus.PENDING
    assert rt.stats()["ray_placement_waiting"] == 1 and rt.stats()["queued"] == 1
    began = time.monotonic()
    terminal(waiting, timeout=10.0)
    assert 0.6 < time.monotonic() - began < 5.0
    assert waiting.status is SubagentStatus.FAILED and waiting.started_at is None
    assert waiting.error is not None
    assert waiting.error.startswith(
        "RayPlacementError: the task waited placement_timeout_seconds=1 for a Ray actor: "
        "no actor of the Ray worker pool is ready (1 waiting for Ray to place and start them, "
        "each requesting {'CPU': 64.0}"
    )
    assert "none of which can hold one" in waiting.error
    assert "raise RayWorkerPool(placement_timeout_seconds=...)" in waiting.error
    # The queued task got the slot and waits in turn; a stop ends it at once.
    assert wait_until(lambda: rt.stats()["ray_placement_waiting"] == 1)
    assert rt.request_cancel(queued.task_id)
    assert queued.status is SubagentStatus.CANCELLED and queued.started_at is None
    assert wait_until(lambda: rt.stats()["free_slots"] == 1)
    assert rt.stats()["ray_placement_waiting"] == 0
    assert "started" not in kinds and rt.stats()["ray_submitted_total"] == 0


def test_tasks_waiting_for_a_pool_that_is_killed_fail_at_once(
    own_pool: Any, make_runtime: Callable[..., SubagentRuntime]
) -> None:
    pool = _unplaceable(own_pool, 60.0)
    rt = make_runtime(max_workers=2, backend=RayBackend(pool=pool))
    holder = _start(rt, pid_graph)
    assert wait_until(lambda: rt.stats()["ray_placement_waiting"] == 1)
    pool.kill()
    terminal(holder, timeout=5.0)
    assert holder.status is SubagentStatus.FAILED
    assert holder.error == "RuntimeError: this RayWorkerPool was shut down; create a new one"


# -- arguments -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "expected"),
    [
        ({"actors": 2, "per_node": 1}, ValueError, "either actors=N or per_node=N"),
        ({"per_node": 0}, ValueError, "RayWorkerPool.per_node must be an int >= 1"),
        ({"per_node": 1.5}, TypeError, "RayWorkerPool.per_node must be an int >= 1"),
        ({"actors": 0}, ValueError, "RayWorkerPool.actors must be an int >= 1"),
        (
            {"placement_timeout_seconds": 0},
            ValueError,
            "RayWorkerPool.placement_timeout_seconds must be a finite number > 0",
        ),
        (
            {"placement_timeout_seconds": "1"},
            TypeError,
            "RayWorkerPool.placement_timeout_seconds must be a finite number > 0",
        ),
        (
            {"node_check_seconds": float("inf")},
            ValueError,
            "RayWorkerPool.node_check_seconds must be a finite number > 0",
        ),
        ({"actor_options": ["num_cpus"]}, TypeError, "RayWorkerPool.actor_options must be a"),
        (
            {"per_node": 1, "actor_options": {"scheduling_strategy": "SPREAD"}},
            ValueError,
            "cannot be combined with actor_options",
        ),
    ],
)
def test_pool_arguments_are_checked(
    kwargs: dict[str, Any], error: type[Exception], expected: str
) -> None:
    with pytest.raises(error, match=expected.replace("(", r"\(").replace(")", r"\)")):
        RayWorkerPool(**kwargs)

