"""What a pool knows about Ray's nodes: which are alive and could hold one of
its actors, which are not trusted with new actors (for every pool of the
process), where the next actor goes, and why no actor could be placed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import ray
from ray.exceptions import RayActorError

#: How long a node whose actor became unreachable is avoided for new actors
#: (unless no other node can take one), unless Ray reports it dead first or
#: an actor there proves it fine by becoming ready. Longer than Ray's own node
#: failure detection (~15 s by default), during which Ray still reports the
#: node alive and would place actors there.
SUSPECT_SECONDS = 60.0

# ActorUnavailableError (Ray >= 2.30): the actor could not be reached. On a
# lost node this comes first (~1.5 s), long before the node is reported dead.
UNAVAILABLE: tuple[type[BaseException], ...] = tuple(
    t for t in (getattr(ray.exceptions, "ActorUnavailableError", None),) if t is not None
)


class RayPlacementError(RuntimeError):
    """No actor of the pool was ready in time to run a task."""


class SuspectNodes:
    """Nodes not trusted with new actors, shared by every pool of this
    process: a node one pool just lost an actor on is as unsafe for the next."""

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
        """Forget the nodes Ray no longer reports alive, and old suspicions."""
        now = time.monotonic()
        with self._lock:
            for node, since in list(self._since.items()):
                if node not in alive or now - since > SUSPECT_SECONDS:
                    del self._since[node]


SUSPECTS = SuspectNodes()


class NodeTable:
    """The alive nodes as Ray last reported them, seen by one pool."""

    def __init__(self, request: Mapping[str, float]) -> None:
        #: What one of the pool's actors asks Ray for.
        self.request = dict(request)
        #: Alive node id -> its total resources.
        self.alive: dict[str, dict[str, Any]] = {}
        self._turn = 0

    def update(self, nodes: list[dict[str, Any]]) -> None:
        self.alive = {
            str(n["NodeID"]): dict(n.get("Resources") or {}) for n in nodes if n.get("Alive")
        }
        SUSPECTS.expire(self.alive)

    def can_hold(self, node: str) -> bool:
        return fits(self.request, self.alive.get(node, {}))

    def trusted(self) -> list[str]:
        """Alive nodes that could hold an actor and are not suspect."""
        return [n for n in self.alive if self.can_hold(n) and not SUSPECTS.holds(n)]

    def choose(self, actors_on: Callable[[str], int]) -> str | None:
        """Where the next actor goes: the trusted node with the fewest of the
        pool's actors (ties rotate); a suspect node only when no trusted one
        can hold it; None when no alive node can (Ray keeps it pending)."""
        nodes = self.trusted() or [n for n in self.alive if self.can_hold(n)]
        if not nodes:
            return None
        counts = {n: actors_on(n) for n in nodes}
        fewest = min(counts.values())
        tied = [n for n in nodes if counts[n] == fewest]
        self._turn += 1
        return tied[self._turn % len(tied)]

    def shortfall(self) -> str:
        """What the nodes say about placing an actor, for an error message."""
        words = [f"{len(self.alive)} alive node(s)"]
        wanted = {k: v for k, v in self.request.items() if v}
        if self.alive and not any(self.can_hold(n) for n in self.alive):
            have = sorted({
                str({k: r.get(k, 0.0) for k in wanted}) for r in self.alive.values()
            })
            words.append(f", none of which can hold one (they have {', '.join(have)})")
        avoided = sum(SUSPECTS.holds(n) for n in self.alive)
        if avoided:
            words.append(f", {avoided} avoided after an actor there was lost")
        return "".join(words)


def placement_problem(
    *, waiting: int, nodes: NodeTable, last_error: str | None
) -> str:
    """Why no actor of a pool is ready, and what to do about it."""
    wanted = {k: v for k, v in nodes.request.items() if v}
    each = f", each requesting {wanted}" if wanted else ""
    text = (
        f"no actor of the Ray worker pool is ready ({waiting} waiting for Ray to place and "
        f"start them{each}; {nodes.shortfall()})"
    )
    if last_error:
        text += f"; {last_error}"
    return (
        text + ". Check the pool's actor_options against the cluster's resources, or raise "
        "RayWorkerPool(placement_timeout_seconds=...)"
    )


def requested_resources(options: Mapping[str, Any]) -> dict[str, float]:
    """What one actor asks Ray for, in the names of a node's resources."""
    request: dict[str, float] = {}
    for option, resource in (("num_cpus", "CPU"), ("num_gpus", "GPU"), ("memory", "memory")):
        if options.get(option):
            request[resource] = float(options[option])
    for name, amount in dict(options.get("resources") or {}).items():
        request[str(name)] = float(amount)
    return request


def fits(request: Mapping[str, float], resources: Mapping[str, Any]) -> bool:
    """Whether a node with these total resources could ever hold the actor."""
    return all(float(resources.get(name, 0.0)) >= amount for name, amount in request.items())


def node_is_suspect(exc: BaseException) -> bool:
    """Whether an actor's loss says more about its node than about the actor:
    the actor unreachable (how a node going away looks first), or Ray saying
    its node died. A process that died on a healthy node does not."""
    if isinstance(exc, UNAVAILABLE):
        return True
    return isinstance(exc, RayActorError) and "node has died" in str(exc)


def read_nodes() -> list[dict[str, Any]]:
    """Ray's node table (a GCS call, ~1 ms)."""
    return list(ray.nodes())  # type: ignore[no-untyped-call]


def ray_session() -> tuple[str, str]:
    """Which Ray connection this process has: job ids restart at 1 in every
    cluster, so the driver's node id (random) tells two connections apart."""
    context = ray.get_runtime_context()
    try:
        node = context.get_node_id()
    except Exception:  # e.g. a Ray Client connection: the job id has to do
        node = ""
    return context.get_job_id(), node
