"""A seeded, time-bounded race harness (issue 10): several threads submit,
cancel, clean up, read and shut down, on trees up to depth 3 whose sub-agents
sleep, fail, time out, spawn children with and without waiting for them, and
get evicted by retention while they are middle nodes.

Checked, for every task the harness saw: exactly one terminal status, never
changed once seen; ``completed_at`` set iff terminal (read under the lock);
exactly one terminal event; nothing still running well after an ancestor
ended; every task terminal in the end; threads back to their baseline; and
nothing reaching ``threading.excepthook``, ``sys.unraisablehook`` or asyncio's
error log.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langgraph.graph import MessagesState

from subagent_exec import SubagentResult, SubagentRuntime, SubagentStatus, TaskEvent

from .helpers import executor, graph_of, leaked_threads, thread_snapshot

#: Seconds of chaos per round, and rounds (each with its own seed and runtime).
CHAOS_SECONDS = 2.0
SEEDS = (11, 23, 47)
#: How long a descendant may still run after its ancestor ended (its own
#: unwinding: the stop is latched at once, cleanup is bounded below).
CLEANUP_SECONDS = 0.5
GRACE_SECONDS = CLEANUP_SECONDS + 1.5
#: How long after an ancestor's end a descendant may still show no stop
#: (the stop is latched in the same critical section; this is slack for a
#: reader that does not take the lock).
ORPHAN_SECONDS = 0.3


@dataclass
class World:
    runtime: SubagentRuntime
    rng: random.Random
    lock: threading.Lock = field(default_factory=threading.Lock)
    holders: dict[str, SubagentResult] = field(default_factory=dict)
    first_terminal: dict[str, SubagentStatus] = field(default_factory=dict)
    events: list[TaskEvent] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def keep(self, holder: SubagentResult) -> None:
        with self.lock:
            self.holders[holder.task_id] = holder

    def some_ids(self, count: int) -> list[str]:
        with self.lock:
            ids = list(self.holders)
        return self.rng.sample(ids, min(count, len(ids)))


def behaviour_graph(world: World, depth: int, seed: int) -> Any:
    """A graph_factory whose node does what its seed says."""

    def factory() -> Any:
        rng = random.Random(seed)

        async def node(state: MessagesState) -> dict[str, Any]:
            await asyncio.sleep(rng.uniform(0, 0.05))
            if depth < 3:
                for _ in range(rng.randint(0, 2)):
                    child = executor(
                        world.runtime,
                        behaviour_graph(world, depth + 1, rng.randrange(2**32)),
                        name=f"d{depth + 1}",
                        timeout_seconds=rng.choice([0.1, 0.3, 30.0]),
                    )
                    try:
                        holder = child.start("child")
                        world.keep(holder)
                        if rng.random() < 0.5:
                            await world.runtime.wait_terminal(holder)
                    except Exception as exc:  # capacity, closed runtime: allowed
                        if type(exc).__name__ not in ("CapacityError", "RuntimeClosedError"):
                            raise
            roll = rng.random()
            if roll < 0.15:
                raise ValueError("a tool failed")
            if roll < 0.3:
                await asyncio.sleep(5)  # ended by a deadline or a stop
            return {"messages": [AIMessage(content=f"done at depth {depth}")]}

        return graph_of(node)

    return factory


def submitter(world: World, stop: threading.Event) -> None:
    rng = random.Random(world.rng.random())
    while not stop.is_set():
        ex = executor(
            world.runtime,
            behaviour_graph(world, 1, rng.randrange(2**32)),
            name="root",
            timeout_seconds=rng.choice([0.2, 0.5, 30.0]),
        )
        try:
            world.keep(ex.start("root task"))
        except Exception as exc:
            if type(exc).__name__ not in ("CapacityError", "RuntimeClosedError"):
                world.problems.append(f"submit: {exc!r}")
        time.sleep(rng.uniform(0, 0.03))


def meddler(world: World, stop: threading.Event) -> None:
    """Cancels, cleans up, reads and lists; remembers the first terminal status seen."""
    rng = random.Random(world.rng.random())
    runtime = world.runtime
    while not stop.is_set():
        for task_id in world.some_ids(3):
            action = rng.random()
            if action < 0.3:
                runtime.request_cancel(task_id, "meddler")
            elif action < 0.5:
                runtime.cleanup(task_id)
            else:
                runtime.get(task_id)
        runtime.list_tasks(status=["running", "pending"])
        runtime.stats()
        observe(world)
        time.sleep(rng.uniform(0, 0.01))


def observe(world: World) -> None:
    with world.lock:
        holders = list(world.holders.values())
    by_id = {h.task_id: h for h in holders}
    now = time.time()
    for holder in holders:
        # An ancestor that ended a while ago has stopped this task too.
        ancestor = by_id.get(holder.parent_id or "")
        while ancestor is not None:
            ended = ancestor.completed_at
            if (
                ended is not None
                and now - ended.timestamp() > ORPHAN_SECONDS
                and not holder.is_terminal
                and not holder.cancel_event.is_set()
            ):
                world.problems.append(f"{holder!r} runs on after {ancestor!r} ended")
                break
            ancestor = by_id.get(ancestor.parent_id or "")
        snapshot = holder.to_dict()  # under the runtime's lock: consistent
        status = SubagentStatus(snapshot["status"])
        if status.is_terminal != (snapshot["completed_at"] is not None):
            world.problems.append(f"completed_at vs status: {snapshot}")
        if status.is_terminal:
            seen = world.first_terminal.setdefault(holder.task_id, status)
            if seen is not status:
                world.problems.append(f"{holder.task_id} changed {seen} -> {status}")


@pytest.mark.parametrize("seed", SEEDS)
def test_racing_threads_keep_every_invariant(seed: int) -> None:
    # Garbage of earlier tests (an SDK client's __del__ schedules its aclose()
    # on whatever loop runs where it is collected) must not land in our window.
    gc.collect()
    baseline = thread_snapshot()
    reached_hooks: list[str] = []
    previous_excepthook, previous_unraisable = threading.excepthook, sys.unraisablehook
    threading.excepthook = lambda args: reached_hooks.append(f"thread: {args.exc_value!r}")
    sys.unraisablehook = lambda u: reached_hooks.append(f"unraisable: {u.exc_value!r}")

    class AsyncioErrors(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            reached_hooks.append(f"asyncio: {record.getMessage()}")

    asyncio_errors = AsyncioErrors(level=logging.ERROR)
    logging.getLogger("asyncio").addHandler(asyncio_errors)
    runtime = SubagentRuntime(
        max_workers=6,
        max_pending=40,
        max_depth=3,
        retain_max=15,  # finished middle nodes get evicted while their children run
        cleanup_timeout_seconds=CLEANUP_SECONDS,
        name=f"race{seed}",
    )
    world = World(runtime=runtime, rng=random.Random(seed))
    runtime.subscribe(world.events.append)
    stop = threading.Event()
    workers = [
        threading.Thread(target=submitter, args=(world, stop), name="submitter"),
        threading.Thread(target=submitter, args=(world, stop), name="submitter-2"),
        threading.Thread(target=meddler, args=(world, stop), name="meddler"),
        threading.Thread(target=meddler, args=(world, stop), name="meddler-2"),
    ]
    try:
        for worker in workers:
            worker.start()
        time.sleep(CHAOS_SECONDS)
        # Someone shuts the runtime down while everything is still going on.
        runtime.shutdown(cancel=world.rng.random() < 0.5, wait=False)
        time.sleep(0.2)
        stop.set()
        for worker in workers:
            worker.join(10)
        assert runtime.shutdown(cancel=True, wait=True, timeout=30)
        observe(world)
    finally:
        stop.set()
        threading.excepthook, sys.unraisablehook = previous_excepthook, previous_unraisable
        logging.getLogger("asyncio").removeHandler(asyncio_errors)

    holders = list(world.holders.values())
    assert len(holders) > 30, "the harness did too little to mean anything"
    assert world.problems == []
    assert reached_hooks == []
    not_terminal = [h for h in holders if not h.is_terminal]
    assert not_terminal == []
    terminal_events = Counter(e.task_id for e in world.events if e.is_terminal)
    created = {e.task_id for e in world.events if e.kind == "created"}
    assert {t: n for t, n in terminal_events.items() if n != 1} == {}
    assert created == set(terminal_events)  # every task that began also ended, once
    by_id = {h.task_id: h for h in holders}
    for holder in holders:
        ancestor = by_id.get(holder.parent_id or "")
        while ancestor is not None:
            assert holder.completed_at is not None and ancestor.completed_at is not None
            late = (holder.completed_at - ancestor.completed_at).total_seconds()
            assert late < GRACE_SECONDS, f"{holder} ended {late:.2f}s after {ancestor}"
            ancestor = by_id.get(ancestor.parent_id or "")
    assert leaked_threads(baseline) == []
    statuses = Counter(h.status.value for h in holders)
    assert len(statuses) >= 3, statuses  # the mix really happened
