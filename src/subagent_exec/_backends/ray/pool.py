"""The pool of async Ray actors that run sub-agents (driver side)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import ray

from ..._checks import check_int
from .worker import SubagentWorker


class RayWorkerPool:
    """N async Ray actors that run sub-agents; shareable by several runtimes.

    ``actors``: how many actor processes. ``max_concurrency``: calls at once
    per actor. Our slots are the real limit of runs; this one is large on
    purpose, because the control calls (``stop``, ``deliver``) share it: an
    actor at its limit would queue a stop behind the runs it should stop
    (runs abandoned after a cleanup timeout still count until they end).
    ``actor_options``: passed to ``.options()`` of each actor (default
    ``{"num_cpus": 0, "scheduling_strategy": "SPREAD"}``; e.g. add
    ``runtime_env`` for a cluster whose nodes lack your code).
    Actors are created on first use (Ray must be initialised by then).
    """

    def __init__(
        self,
        actors: int = 2,
        *,
        max_concurrency: int = 10_000,
        actor_options: Mapping[str, Any] | None = None,
    ) -> None:
        check_int("RayWorkerPool", "actors", actors, minimum=1)
        check_int("RayWorkerPool", "max_concurrency", max_concurrency, minimum=1)
        self.size = actors
        self.max_concurrency = max_concurrency
        self.actor_options: dict[str, Any] = {"num_cpus": 0, "scheduling_strategy": "SPREAD"}
        self.actor_options.update(actor_options or {})
        self._lock = threading.Lock()
        self._actors: list[Any] = []
        self._in_flight: list[int] = []
        self._replaced_total = 0
        self._killed = False

    def _new_actor(self) -> Any:
        actor_class = ray.remote(SubagentWorker)
        return actor_class.options(
            max_concurrency=self.max_concurrency, **self.actor_options
        ).remote()

    def _ensure_locked(self) -> None:
        if self._killed:
            raise RuntimeError("this RayWorkerPool was shut down; create a new one")
        if not self._actors:
            self._actors = [self._new_actor() for _ in range(self.size)]
            self._in_flight = [0] * self.size

    def ready(self, timeout: float | None = 60.0) -> None:
        """Create the actors if needed and block until each has loaded the engine."""
        with self._lock:
            self._ensure_locked()
            actors = list(self._actors)
        ray.get([a.ready.remote() for a in actors], timeout=timeout)

    def acquire(self) -> tuple[int, Any]:
        """The actor with the fewest runs in flight (its index and handle)."""
        with self._lock:
            self._ensure_locked()
            index = min(range(len(self._actors)), key=self._in_flight.__getitem__)
            self._in_flight[index] += 1
            return index, self._actors[index]

    def release(self, index: int) -> None:
        with self._lock:
            if index < len(self._in_flight):
                self._in_flight[index] -= 1

    def replace(self, index: int, dead: Any) -> None:
        """Replace a dead actor (once, however many runs saw it die)."""
        with self._lock:
            if not self._killed and index < len(self._actors) and self._actors[index] is dead:
                self._actors[index] = self._new_actor()
                self._replaced_total += 1

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "ray_actors": len(self._actors),
                "ray_runs_in_flight": sum(self._in_flight),
                "ray_actors_replaced_total": self._replaced_total,
            }

    def kill(self) -> None:
        """Kill every actor (runs still on them die with them)."""
        with self._lock:
            self._killed = True
            actors, self._actors = self._actors, []
        for actor in actors:
            try:
                ray.kill(actor)
            except Exception:  # already dead, or Ray is gone
                pass

