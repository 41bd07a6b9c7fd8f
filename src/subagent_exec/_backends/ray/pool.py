"""The pool of async Ray actors that run sub-agents (driver side): where each
actor is placed, which ones are ready, and replacing the ones lost.

Over 400 lines on purpose: placement, readiness and loss are one state
machine over one lock (an actor's state, its node, the nodes Ray reports and
the nodes we no longer trust); split, each half would reach into the other's
state. The supervision that drives it (one asyncio loop on a daemon thread
per pool) is in the same class for the same reason.

An actor is STARTING until its ``ready`` call returns (it has been placed and
has imported the engine), then READY; only READY actors are handed out. Each
READY actor has one ``lifeline`` call pending that never returns: when it
raises, the actor is LOST (its process, its node, or the way to it is gone),
whether or not it had runs. A lost actor is replaced at once, pinned to a
node we still trust; a node whose actor became *unavailable* (Ray's first
sign of a node going away, ~1.5 s after it died, while Ray keeps reporting
the node alive for ~15 s more) is not trusted for ``SUSPECT_SECONDS``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import ray
from ray.exceptions import RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ..._checks import check_int, check_number
from ..._errors import describe
from .worker import SubagentWorker

logger = logging.getLogger("subagent_exec")

#: How long a node whose actor became unreachable is avoided for new actors
#: (unless it is the only one left), unless Ray reports it dead first or an
#: actor there proves it fine by becoming ready. Longer than Ray's own node
#: failure detection (~15 s by default).
SUSPECT_SECONDS = 60.0

#: Back-off after actors that died before they were ready (a constructor that
#: fails, a runtime_env that cannot be built): doubling from the first, capped.
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0

# ActorUnavailableError (Ray >= 2.30): the actor could not be reached; on a
# lost node this comes first, long before the node is reported dead.
_UNAVAILABLE: tuple[type[BaseException], ...] = tuple(
    t for t in (getattr(ray.exceptions, "ActorUnavailableError", None),) if t is not None
)

_DETACHED = (
    "Ray was shut down (or reconnected elsewhere) under this RayWorkerPool; create a new one"
)

STARTING = "starting"
READY = "ready"
LOST = "lost"


class _SuspectNodes:
    """Nodes not trusted with new actors, for every pool of this process: a
    node one pool lost an actor on is just as unsafe for the next pool made."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: dict[str, float] = {}

    def add(self, node: str) -> None:
        with self._lock:
            self._since[node] = time.monotonic()

    def clear(self, node: str) -> None:
        with self._lock:
            self._since.pop(node, None)

    def holds(self, node: str) -> bool:
        with self._lock:
            since = self._since.get(node)
            return since is not None and time.monotonic() - since <= SUSPECT_SECONDS

    def expire(self, alive: Mapping[str, Any]) -> None:
        """Forget nodes Ray no longer reports alive, and old suspicions."""
        now = time.monotonic()
        with self._lock:
            for node, since in list(self._since.items()):
                if node not in alive or now - since > SUSPECT_SECONDS:
                    del self._since[node]


SUSPECTS = _SuspectNodes()


class RayPlacementError(RuntimeError):
    """No actor of the pool became ready in time to run a task."""


class PoolActor:
    """One actor of a :class:`RayWorkerPool`, as a backend holds it while it
    runs something there (``acquire`` / ``release`` / ``lost``)."""

    __slots__ = ("_node", "actor", "in_flight", "node_id", "number", "state")

    def __init__(self, number: int, actor: Any, node: str | None) -> None:
        self.number = number
        self.actor = actor
        #: The node it was pinned to (None: left to Ray); once ready, where it is.
        self.node_id: str | None = node
        self._node = node
        self.state = STARTING
        self.in_flight = 0

    def __repr__(self) -> str:
        node = self.node_id[:8] if self.node_id else "?"
        return f"<PoolActor {self.number} on {node} {self.state}, {self.in_flight} runs>"


class RayWorkerPool:
    """Async Ray actors that run sub-agents; shareable by several runtimes.

    Placement (what each guarantees is in docs/ray.md, "Placement"):

    * ``actors=N`` (the default, 2): N actors, spread evenly over the alive
      nodes when created (each pinned to its node), a lost one replaced on the
      trusted node with the fewest actors. N stays N when nodes come and go.
    * ``per_node=N``: N actors on every alive node that can hold one (its
      total resources cover ``actor_options``); follows nodes joining and
      leaving (checked every ``node_check_seconds``).

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
    pool's placement (no pinning, no avoiding of failed nodes; readiness and
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
            raise TypeError(f"RayWorkerPool.actor_options must be a mapping, got {actor_options!r}")
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
        self._request = _requested_resources(self.actor_options)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        # Invariant: everything below is used under self._lock.
        self._members: list[PoolActor] = []  # STARTING and READY ones
        self._numbered = 0
        self._turn = 0
        self._node_turn = 0
        self._in_flight = 0
        self._replaced_total = 0
        self._lost_total = 0
        self._owed: dict[str | None, int] = {}  # replacements owed, by node
        self._nodes: dict[str, dict[str, Any]] = {}  # alive nodes, as Ray reports them
        self._failures = 0  # actors in a row that died before they were ready
        self._backoff_until = 0.0
        self._last_error: str | None = None
        self._listeners: list[Callable[[], None]] = []
        self._started = False
        self._killed = False
        self._detached: str | None = None
        self._ray_session: tuple[str, str] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- what a backend uses ------------------------------------------------------------

    def acquire(self) -> PoolActor | None:
        """A READY actor with the fewest runs in flight (ties rotate), counted
        as running one more; None when no actor is ready."""
        with self._lock:
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
        with self._lock:
            member.in_flight -= 1
            self._in_flight -= 1

    def lost(self, member: PoolActor, exc: BaseException) -> None:
        """A call on ``member``'s actor raised ``RayActorError``: it is gone.
        Idempotent; its replacement is started at once."""
        self._on_lost(member, exc)

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` (from the pool's thread; it must not block) when
        an actor becomes ready or the pool can no longer serve. Returns the
        unsubscribe function."""
        with self._lock:
            self._listeners.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)

        return unsubscribe

    def placement_problem(self) -> str:
        """Why no actor is ready, in words (for the error of a task that waited)."""
        with self._lock:
            return self._placement_problem_locked()

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
                        f"it wants; {self._placement_problem_locked()}"
                    )
                self._changed.wait(0.5 if left is None else min(left, 0.5))

    def actors_by_node(self) -> dict[str, int]:
        """READY actors per Ray node id."""
        with self._lock:
            counts: dict[str, int] = {}
            for member in self._members:
                if member.state == READY and member.node_id is not None:
                    counts[member.node_id] = counts.get(member.node_id, 0) + 1
            return counts

    def stats(self) -> dict[str, int]:
        with self._lock:
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
            loop, self._loop = self._loop, None
            listeners = list(self._listeners)
            same_ray = self._detached is None and self._same_ray_locked()
            self._changed.notify_all()
        if loop is not None:
            try:
                loop.call_soon_threadsafe(_stop_loop, loop)
            except RuntimeError:
                pass  # already closed
        if same_ray:  # a handle of an earlier Ray session must not reach this one
            for member in members:
                _kill_quietly(member.actor)
        for callback in listeners:
            callback()

    # -- starting and placing -----------------------------------------------------------

    def _ensure_started_locked(self) -> None:
        if self._killed:
            raise RuntimeError("this RayWorkerPool was shut down; create a new one")
        if self._detached is not None:
            raise RuntimeError(self._detached)
        if self._started:
            return
        self._ray_session = _ray_session()
        self._refresh_nodes_locked(_ray_nodes())
        loop = self._loop = asyncio.new_event_loop()
        threading.Thread(
            target=_run_loop, args=(loop,), name="subagent-exec-ray-pool", daemon=True
        ).start()
        self._started = True
        loop.call_soon_threadsafe(lambda: loop.create_task(self._watch_nodes()))
        self._reconcile_locked()

    def _reconcile_locked(self) -> None:
        """Start the actors the pool is missing, where they should go."""
        if self._killed or self._detached is not None or not self._started:
            return
        if not self._same_ray_locked():
            # Never create an actor through another connection (``.remote()``
            # would even start a new local Ray if there is none).
            self._detached = _DETACHED
            return
        now = time.monotonic()
        if now < self._backoff_until:
            self._call_later(self._backoff_until - now, self._reconcile)
            return
        if self.per_node is not None:
            for node in self._trusted_nodes_locked():
                have = sum(m._node == node for m in self._members)
                for _ in range(self.per_node - have):
                    self._spawn_locked(node)
            return
        for _ in range(self.size - len(self._members)):
            self._spawn_locked(self._choose_node_locked())

    def _reconcile(self) -> None:
        with self._lock:
            self._reconcile_locked()

    def _choose_node_locked(self) -> str | None:
        """For ``actors=N``: the trusted node with the fewest of our actors
        (ties rotate); a suspect node only if no other can hold one."""
        if not self._pinned:
            return None
        nodes = self._trusted_nodes_locked() or [
            n for n in self._nodes if _fits(self._request, self._nodes[n])
        ]
        if not nodes:
            return None  # nothing known can hold one: let Ray place it (or keep it pending)
        counts = {n: sum(m._node == n for m in self._members) for n in nodes}
        fewest = min(counts.values())
        tied = [n for n in nodes if counts[n] == fewest]
        self._node_turn += 1
        return tied[self._node_turn % len(tied)]

    def _trusted_nodes_locked(self) -> list[str]:
        return [
            n for n in self._nodes
            if not SUSPECTS.holds(n) and _fits(self._request, self._nodes[n])
        ]

    def _spawn_locked(self, node: str | None) -> None:
        options = dict(self.actor_options)
        if node is not None:
            # Hard: "soft" would let Ray fall back to any node, the dying one included.
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
        try:
            actor = (
                ray.remote(SubagentWorker)
                .options(max_concurrency=self.max_concurrency, **options)
                .remote()
            )
        except Exception as exc:  # Ray refused the options or is gone
            self._last_error = f"creating an actor failed: {describe(exc)}"
            self._start_failed_locked()
            return
        self._numbered += 1
        member = PoolActor(self._numbered, actor, node)
        self._members.append(member)
        owed_key = node if self.per_node is not None else None
        if self._owed.get(owed_key, 0) > 0:
            self._owed[owed_key] -= 1
            self._replaced_total += 1
        self._post(lambda: self._loop_create_task(self._watch(member)))

    def _full_strength_locked(self) -> bool:
        ready = [m for m in self._members if m.state == READY]
        if len(ready) != len(self._members):
            return False
        if self.per_node is None:
            return len(ready) == self.size
        nodes = self._trusted_nodes_locked()
        return bool(nodes) and all(
            sum(m._node == n for m in ready) >= self.per_node for n in nodes
        )

    # -- supervision (on the pool's loop) -----------------------------------------------

    async def _watch(self, member: PoolActor) -> None:
        """STARTING -> READY when its ``ready`` call returns, then LOST when
        its lifeline call raises."""
        try:
            where = await member.actor.ready.remote()
        except Exception as exc:
            self._on_lost(member, exc, before_ready=True)
            return
        with self._changed:
            if member.state != STARTING:
                return
            member.state = READY
            member.node_id = str(where["node_id"])
            SUSPECTS.clear(member.node_id)  # it works there
            self._failures = 0
            self._changed.notify_all()
            listeners = list(self._listeners)
        for callback in listeners:
            callback()
        try:
            await member.actor.lifeline.remote()
        except Exception as exc:
            self._on_lost(member, exc)

    def _on_lost(self, member: PoolActor, exc: BaseException, before_ready: bool = False) -> None:
        with self._changed:
            if member.state == LOST or self._killed:
                return
            member.state = LOST
            if member in self._members:
                self._members.remove(member)
            self._lost_total += 1
            self._owe_locked(member)
            node = member.node_id
            if node is not None and _node_is_suspect(exc):
                SUSPECTS.add(node)
            if before_ready:
                self._last_error = f"an actor died before it was ready: {_first_line(exc)}"
                self._start_failed_locked()
            logger.warning(
                "Ray actor %d of the pool lost (node %s): %s",
                member.number, (node or "?")[:8], _first_line(exc),
            )
            self._reconcile_locked()
            self._changed.notify_all()
        if isinstance(exc, _UNAVAILABLE):
            # Unreachable is not always dead: make sure it can never come back
            # with runs we have already written off.
            self._post(functools.partial(_kill_quietly, member.actor))

    def _owe_locked(self, member: PoolActor) -> None:
        """The next actor started in ``member``'s place counts as its replacement."""
        key = member._node if self.per_node is not None else None
        self._owed[key] = self._owed.get(key, 0) + 1

    def _start_failed_locked(self) -> None:
        self._failures += 1
        delay = min(FIRST_BACKOFF_SECONDS * 2 ** (self._failures - 1), MAX_BACKOFF_SECONDS)
        self._backoff_until = time.monotonic() + delay

    async def _watch_nodes(self) -> None:
        """Follow the cluster's nodes (joining, leaving) every node_check_seconds."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.node_check_seconds)
            try:
                nodes = await loop.run_in_executor(None, self._read_nodes)
            except Exception as exc:  # Ray gone, or a GCS hiccup: try again later
                logger.debug("RayWorkerPool could not read the nodes: %s", describe(exc))
                continue
            with self._changed:
                if self._killed:
                    return
                if nodes is None:
                    self._detached = _DETACHED
                    listeners = list(self._listeners)
                else:
                    self._refresh_nodes_locked(nodes)
                    self._reconcile_locked()
                    listeners = []
                self._changed.notify_all()
            for callback in listeners:
                callback()
            if nodes is None:
                return

    def _read_nodes(self) -> list[dict[str, Any]] | None:
        """Ray's node table, or None if this is no longer the Ray we started in."""
        with self._lock:
            same = self._same_ray_locked()
        return _ray_nodes() if same else None

    def _same_ray_locked(self) -> bool:
        return ray.is_initialized() and _ray_session() == self._ray_session

    def _refresh_nodes_locked(self, nodes: list[dict[str, Any]]) -> None:
        alive = {
            str(n["NodeID"]): dict(n.get("Resources") or {}) for n in nodes if n.get("Alive")
        }
        SUSPECTS.expire(alive)
        gone = [m for m in self._members if m._node is not None and m._node not in alive]
        self._nodes = alive
        for member in gone:  # its node left: it cannot be there any more
            member.state = LOST
            self._members.remove(member)
            self._lost_total += 1
            self._owe_locked(member)
            self._post(functools.partial(_kill_quietly, member.actor))

    def _placement_problem_locked(self) -> str:
        if self._killed:
            return "the pool was shut down"
        if self._detached is not None:
            return self._detached
        waiting = sum(m.state == STARTING for m in self._members)
        request = {k: v for k, v in self._request.items() if v}
        words = [f"no actor of the Ray worker pool is ready ({waiting} waiting for Ray to "
                 f"place and start them"]
        if request:
            words.append(f", each requesting {request}")
        words.append(f"; {len(self._nodes)} alive node(s)")
        if self._pinned and self._nodes and not any(
            _fits(self._request, r) for r in self._nodes.values()
        ):
            have = sorted({
                str({k: r.get(k, 0.0) for k in request}) for r in self._nodes.values()
            })
            words.append(f", none of which can hold one (they have {', '.join(have)})")
        avoided = sum(SUSPECTS.holds(n) for n in self._nodes)
        if avoided:
            words.append(f", {avoided} avoided after an actor there was lost")
        words.append(")")
        if self._last_error:
            words.append(f"; {self._last_error}")
        words.append(
            ". Check the pool's actor_options against the cluster's resources, or raise "
            "RayWorkerPool(placement_timeout_seconds=...)"
        )
        return "".join(words)

    # -- the pool's loop ----------------------------------------------------------------

    def _post(self, callback: Callable[[], Any]) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(callback)
        except RuntimeError:
            pass  # the pool was killed: nothing to supervise any more

    def _call_later(self, delay: float, callback: Callable[[], Any]) -> None:
        self._post(lambda: asyncio.get_running_loop().call_later(delay, callback))

    def _loop_create_task(self, coroutine: Any) -> None:
        asyncio.get_running_loop().create_task(coroutine)


def _requested_resources(options: Mapping[str, Any]) -> dict[str, float]:
    """What one actor asks Ray for, in the names of a node's resources."""
    request: dict[str, float] = {}
    for option, resource in (("num_cpus", "CPU"), ("num_gpus", "GPU"), ("memory", "memory")):
        if options.get(option):
            request[resource] = float(options[option])
    for name, amount in dict(options.get("resources") or {}).items():
        request[str(name)] = float(amount)
    return request


def _fits(request: Mapping[str, float], resources: Mapping[str, Any]) -> bool:
    """Whether a node with these total resources could ever hold the actor."""
    return all(float(resources.get(name, 0.0)) >= amount for name, amount in request.items())


def _node_is_suspect(exc: BaseException) -> bool:
    """Whether a loss says more about the node than about the actor: the
    actor unreachable (a node going away looks like this first), or Ray
    saying its node died. A process that died on a healthy node does not."""
    if isinstance(exc, _UNAVAILABLE):
        return True
    return isinstance(exc, RayActorError) and "node has died" in str(exc)


def _ray_nodes() -> list[dict[str, Any]]:
    return list(ray.nodes())  # type: ignore[no-untyped-call]


def _ray_session() -> tuple[str, str]:
    """Which Ray connection this is: job ids restart at 1 in every cluster,
    so the driver's node id (random) tells two connections apart."""
    context = ray.get_runtime_context()
    return context.get_job_id(), context.get_node_id()


def _kill_quietly(actor: Any) -> None:
    try:
        ray.kill(actor, no_restart=True)
    except Exception:  # already dead, or Ray is gone
        pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
        # Stopped by kill(): let the watches see their cancellation, then close.
        watches = asyncio.all_tasks(loop)
        if watches:
            loop.run_until_complete(asyncio.wait(watches, timeout=2.0))
    finally:
        loop.close()


def _stop_loop(loop: asyncio.AbstractEventLoop) -> None:
    for task in asyncio.all_tasks(loop):
        task.cancel()
    loop.stop()
