"""The pool of async Ray actors that run sub-agents (driver side): how many,
on which nodes, which are ready, and replacing the ones lost.

An actor is STARTING until its ``ready`` call returns (placed, engine
imported), then READY; only READY actors are handed out. Each READY actor has
one ``lifeline`` call pending that never returns: when it raises, the actor
is LOST (its process, its node, or the way to it is gone), whether or not it
had runs, and is replaced at once on a node still trusted (nodes.py). The
supervision thread that reports all this is supervisor.py.

A little over 400 lines: ``RayWorkerPool`` is one state machine under one
lock (members, their states and nodes, replacements owed, back-off), and its
docstrings carry the user-facing contract; what could stand apart already
does (nodes.py, supervisor.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ..._checks import check_int, check_number
from ..._errors import describe
from .nodes import (
    SUSPECTS,
    UNAVAILABLE,
    NodeTable,
    node_is_suspect,
    placement_problem,
    ray_session,
    read_nodes,
    requested_resources,
)
from .supervisor import Supervisor, kill_quietly
from .worker import SubagentWorker

logger = logging.getLogger("subagent_exec")

#: Back-off after actors that died before they were ready (a constructor that
#: fails, a runtime_env that cannot be built): doubling from the first, capped.
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0

DETACHED = (
    "Ray was shut down (or reconnected elsewhere) under this RayWorkerPool; create a new one"
)

STARTING = "starting"
READY = "ready"
LOST = "lost"


class PoolActor:
    """One actor of a :class:`RayWorkerPool`, as a backend holds it while it
    runs something there (``acquire`` / ``release`` / ``lost``)."""

    __slots__ = ("actor", "in_flight", "node_id", "number", "pinned_to", "state")

    def __init__(self, number: int, actor: Any, node: str | None) -> None:
        self.number = number
        self.actor = actor
        #: The node it was pinned to (None: placed by Ray).
        self.pinned_to = node
        #: Where it runs, once ready (until then: where it was pinned).
        self.node_id: str | None = node
        self.state = STARTING
        self.in_flight = 0

    def __repr__(self) -> str:
        node = self.node_id[:8] if self.node_id else "?"
        return f"<PoolActor {self.number} on {node} {self.state}, {self.in_flight} runs>"


class RayWorkerPool:
    """Async Ray actors that run sub-agents; shareable by several runtimes.

    Placement (what each guarantees: docs/ray.md, "Placement"):

    * ``actors=N`` (the default, 2): N actors, spread evenly over the alive
      nodes when created (each pinned to its node), a lost one replaced on the
      trusted node with the fewest of them. N stays N when nodes come and go.
    * ``per_node=N``: N actors on every alive node that can hold one (its
      total resources cover ``actor_options``); follows nodes joining and
      leaving (Ray's node table is read every ``node_check_seconds``).

    A task goes only to a READY actor (its ``ready`` call returned), the one
    with the fewest runs in flight; ties rotate. When none is ready, the
    backend keeps its tasks PENDING, and fails them with a
    ``RayPlacementError`` after ``placement_timeout_seconds``.

    ``max_concurrency``: calls at once per actor. Our slots are the real limit
    of runs; this one is large on purpose, because the control calls
    (``stop``, ``deliver``, ``lifeline``) share it: an actor at its limit
    would queue a stop behind the runs it should stop. ``actor_options``:
    passed to ``.options()`` of each actor (default ``{"num_cpus": 0}``; add
    e.g. ``runtime_env``). A ``scheduling_strategy`` of yours replaces the
    pool's placement (no pinning, no avoiding of lost nodes; readiness and
    replacement still hold); it cannot be combined with ``per_node``.
    Actors are created on first use (Ray must be initialised by then).
    """

    def __init__(
        self,
        actors: int | None = None,
        *,
        per_node: int | None = None,
        max_concurrency: int = 10_000,
        actor_options: Mapping[str, Any] | None = None,
        placement_timeout_seconds: float = 120.0,
        node_check_seconds: float = 1.0,
    ) -> None:
        if actors is not None and per_node is not None:
            raise ValueError("RayWorkerPool: give either actors=N or per_node=N, not both")
        if actors is not None:
            check_int("RayWorkerPool", "actors", actors, minimum=1)
        if per_node is not None:
            check_int("RayWorkerPool", "per_node", per_node, minimum=1)
        check_int("RayWorkerPool", "max_concurrency", max_concurrency, minimum=1)
        self.placement_timeout_seconds = check_number(
            "RayWorkerPool", "placement_timeout_seconds", placement_timeout_seconds,
            positive=True, finite=True,
        )
        self.node_check_seconds = check_number(
            "RayWorkerPool", "node_check_seconds", node_check_seconds, positive=True,
            finite=True,
        )
        if actor_options is not None and not isinstance(actor_options, Mapping):
            raise TypeError(
                f"RayWorkerPool.actor_options must be a mapping, got {actor_options!r}"
            )
        self.per_node = per_node
        self.size = actors if actors is not None else (2 if per_node is None else 0)
        self.max_concurrency = max_concurrency
        self.actor_options: dict[str, Any] = {"num_cpus": 0, **(actor_options or {})}
        self._pinned = "scheduling_strategy" not in self.actor_options
        if per_node is not None and not self._pinned:
            raise ValueError(
                "RayWorkerPool: per_node places each actor on its node itself; it cannot be "
                "combined with actor_options['scheduling_strategy']"
            )
        self._changed = threading.Condition(threading.Lock())
        # Invariant: everything below is used under self._changed (the pool's lock).
        self._nodes = NodeTable(requested_resources(self.actor_options))
        self._members: list[PoolActor] = []  # the STARTING and READY ones
        self._numbered = 0
        self._turn = 0
        self._in_flight = 0
        self._replaced_total = 0
        self._lost_total = 0
        self._owed: dict[str | None, int] = {}  # replacements owed (per node with per_node)
        self._failures = 0  # actors in a row that died before they were ready
        self._backoff_until = 0.0
        self._last_error: str | None = None
        self._listeners: list[Callable[[], None]] = []
        self._supervisor: Supervisor | None = None
        self._ray_session: tuple[str, str] | None = None
        self._killed = False
        self._detached = False

    # -- what a backend uses ------------------------------------------------------------

    def acquire(self) -> PoolActor | None:
        """A READY actor with the fewest runs in flight (ties rotate), counted
        as running one more; None when no actor is ready."""
        with self._changed:
            self._ensure_started_locked()
            ready = [m for m in self._members if m.state == READY]
            if not ready:
                return None
            fewest = min(m.in_flight for m in ready)
            tied = [m for m in ready if m.in_flight == fewest]
            member = tied[self._turn % len(tied)]
            self._turn += 1
            member.in_flight += 1
            self._in_flight += 1
            return member

    def release(self, member: PoolActor) -> None:
        """A run acquired on ``member`` is over (once per ``acquire``)."""
        with self._changed:
            member.in_flight -= 1
            self._in_flight -= 1

    def lost(self, member: PoolActor, exc: BaseException) -> None:
        """A call on ``member``'s actor raised ``RayActorError``: it is gone.
        Idempotent; its replacement is started at once."""
        self._on_lost(member, exc, False)

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` (on the pool's thread; it must not block) when
        an actor becomes ready or the pool can no longer serve. Returns the
        unsubscribe function."""
        with self._changed:
            self._listeners.append(callback)

        def unsubscribe() -> None:
            with self._changed:
                if callback in self._listeners:
                    self._listeners.remove(callback)

        return unsubscribe

    def placement_problem(self) -> str:
        """Why no actor is ready, in words (for the error of a task that waited)."""
        with self._changed:
            return self._problem_locked()

    # -- what a user uses ---------------------------------------------------------------

    def ready(self, timeout: float | None = 60.0) -> None:
        """Create the actors if needed and block until the pool is at full
        strength (every actor it wants is READY); ``TimeoutError`` otherwise."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            self._ensure_started_locked()
            while not self._full_strength_locked():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    ready = sum(m.state == READY for m in self._members)
                    raise TimeoutError(
                        f"RayWorkerPool: {ready} actor(s) ready after {timeout:g}s, not all "
                        f"it wants; {self._problem_locked()}"
                    )
                self._changed.wait(0.5 if left is None else min(left, 0.5))

    def actors_by_node(self) -> dict[str, int]:
        """READY actors per Ray node id."""
        with self._changed:
            counts: dict[str, int] = {}
            for member in self._members:
                if member.state == READY and member.node_id is not None:
                    counts[member.node_id] = counts.get(member.node_id, 0) + 1
            return counts

    def stats(self) -> dict[str, int]:
        with self._changed:
            ready = [m for m in self._members if m.state == READY]
            return {
                "ray_actors": len(self._members),
                "ray_actors_ready": len(ready),
                "ray_nodes_used": len({m.node_id for m in ready}),
                "ray_runs_in_flight": self._in_flight,
                "ray_actors_lost_total": self._lost_total,
                "ray_actors_replaced_total": self._replaced_total,
            }

    def kill(self) -> None:
        """Kill every actor (runs still on them die with them) and stop the
        pool's thread; backends waiting on it are told at once."""
        with self._changed:
            if self._killed:
                return
            self._killed = True
            members, self._members = self._members, []
            supervisor, self._supervisor = self._supervisor, None
            listeners = list(self._listeners)
            same_ray = not self._detached and self._same_ray_locked()
            self._changed.notify_all()
        if supervisor is not None:
            supervisor.stop()
        if same_ray:  # a handle of an earlier Ray connection must not reach this one
            for member in members:
                kill_quietly(member.actor)
        for callback in listeners:
            callback()

    # -- placing ------------------------------------------------------------------------

    def _ensure_started_locked(self) -> None:
        if self._killed:
            raise RuntimeError("this RayWorkerPool was shut down; create a new one")
        if self._detached:
            raise RuntimeError(DETACHED)
        if self._supervisor is not None:
            return
        self._ray_session = ray_session()
        self._nodes.update(read_nodes())
        self._supervisor = Supervisor(
            on_ready=self._on_ready,
            on_lost=self._on_lost,
            read_nodes=self._read_nodes,
            on_nodes=self._on_nodes,
            node_check_seconds=self.node_check_seconds,
        )
        self._supervisor.start()
        self._reconcile_locked()

    def _reconcile_locked(self) -> None:
        """Start the actors the pool is missing, where they should go."""
        if self._killed or self._detached or self._supervisor is None:
            return
        if not self._same_ray_locked():
            # Never create an actor through another connection (``.remote()``
            # would even start a new local Ray if there is none).
            self._detached = True
            return
        now = time.monotonic()
        if now < self._backoff_until:
            self._supervisor.call_later(self._backoff_until - now, self._reconcile)
            return
        if self.per_node is not None:
            for node in self._nodes.trusted():
                for _ in range(self.per_node - self._actors_on(node)):
                    self._spawn_locked(node)
            return
        for _ in range(self.size - len(self._members)):
            self._spawn_locked(self._nodes.choose(self._actors_on) if self._pinned else None)

    def _reconcile(self) -> None:
        with self._changed:
            self._reconcile_locked()

    def _actors_on(self, node: str) -> int:
        return sum(m.pinned_to == node for m in self._members)

    def _spawn_locked(self, node: str | None) -> None:
        options = dict(self.actor_options)
        if node is not None:
            # Hard: "soft" would let Ray fall back to any node, a dying one included.
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
        try:
            actor = (
                ray.remote(SubagentWorker)
                .options(max_concurrency=self.max_concurrency, **options)
                .remote()
            )
        except Exception as exc:  # Ray refused the options, or is gone
            self._last_error = f"creating an actor failed: {describe(exc)}"
            self._start_failed_locked()
            return
        self._numbered += 1
        member = PoolActor(self._numbered, actor, node)
        self._members.append(member)
        key = node if self.per_node is not None else None
        if self._owed.get(key, 0) > 0:
            self._owed[key] -= 1
            self._replaced_total += 1
        assert self._supervisor is not None
        self._supervisor.watch(member)

    def _full_strength_locked(self) -> bool:
        ready = [m for m in self._members if m.state == READY]
        if len(ready) != len(self._members):
            return False
        if self.per_node is None:
            return len(ready) == self.size
        nodes = self._nodes.trusted()
        return bool(nodes) and all(
            sum(m.pinned_to == n for m in ready) >= self.per_node for n in nodes
        )

    def _problem_locked(self) -> str:
        if self._killed:
            return "the pool was shut down"
        if self._detached:
            return DETACHED
        waiting = sum(m.state == STARTING for m in self._members)
        return placement_problem(waiting=waiting, nodes=self._nodes, last_error=self._last_error)

    def _same_ray_locked(self) -> bool:
        return ray.is_initialized() and ray_session() == self._ray_session

    # -- what the supervisor reports (on its thread) ------------------------------------

    def _on_ready(self, member: PoolActor, where: dict[str, Any]) -> bool:
        """``member``'s ready call returned; False if it no longer matters."""
        with self._changed:
            if member.state != STARTING or self._killed:
                return False
            member.state = READY
            member.node_id = str(where["node_id"])
            SUSPECTS.clear(member.node_id)  # an actor works there
            self._failures = 0
            self._changed.notify_all()
            listeners = list(self._listeners)
        for callback in listeners:
            callback()
        return True

    def _on_lost(self, member: PoolActor, exc: BaseException, before_ready: bool) -> None:
        with self._changed:
            if member.state == LOST or self._killed:
                return
            self._forget_locked(member)
            if member.node_id is not None and node_is_suspect(exc):
                SUSPECTS.add(member.node_id)
            if before_ready:
                self._last_error = f"an actor died before it was ready: {_first_line(exc)}"
                self._start_failed_locked()
            logger.warning(
                "Ray actor %d of the pool lost (node %s): %s",
                member.number, (member.node_id or "?")[:8], _first_line(exc),
            )
            self._reconcile_locked()
            self._changed.notify_all()
        if isinstance(exc, UNAVAILABLE) and self._supervisor is not None:
            # Unreachable is not always dead: make sure it can never come back
            # with runs we have already written off.
            self._supervisor.kill_quietly(member.actor)

    def _read_nodes(self) -> list[dict[str, Any]] | None:
        """Ray's node table, or None if this is no longer the Ray we started in."""
        with self._changed:
            same = self._same_ray_locked()
        return read_nodes() if same else None

    def _on_nodes(self, nodes: list[dict[str, Any]] | None) -> bool:
        """Ray's node table was read; False to stop reading it."""
        with self._changed:
            if self._killed:
                return False
            if nodes is None:
                self._detached = True
                listeners = list(self._listeners)
            else:
                self._nodes.update(nodes)
                for member in [m for m in self._members if m.pinned_to is not None]:
                    if member.pinned_to not in self._nodes.alive:
                        self._forget_locked(member)  # its node left: it cannot be there now
                        if self._supervisor is not None:
                            self._supervisor.kill_quietly(member.actor)
                self._reconcile_locked()
                listeners = []
            self._changed.notify_all()
        for callback in listeners:
            callback()
        return nodes is not None

    def _forget_locked(self, member: PoolActor) -> None:
        member.state = LOST
        if member in self._members:
            self._members.remove(member)
        self._lost_total += 1
        key = member.pinned_to if self.per_node is not None else None
        self._owed[key] = self._owed.get(key, 0) + 1  # the next actor there replaces it

    def _start_failed_locked(self) -> None:
        self._failures += 1
        delay = min(FIRST_BACKOFF_SECONDS * 2 ** (self._failures - 1), MAX_BACKOFF_SECONDS)
        self._backoff_until = time.monotonic() + delay


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
