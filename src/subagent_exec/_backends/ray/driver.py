""":class:`RayBackend`, the driver side: the Backend protocol, connecting to
Ray, and the driver loop (one asyncio loop on one daemon thread per backend;
no thread per task) on which dispatch.py does everything else.

``start`` and ``interrupt`` only post to that loop, so a stop can never
overtake the submission of the run it stops; the per-task state is touched on
that loop only.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import ray

from ..._checks import check_int
from ..._contract import BackendSettings, RunFunction, TaskTicket, remaining
from .dispatch import Dispatcher
from .payload import PreparedRun, prepare_run
from .pool import RayWorkerPool

logger = logging.getLogger("subagent_exec")



class RayBackend:
    """Runs each sub-agent on a Ray actor; statuses and stops as with threads.

    How Ray is reached is the user's choice:

    * Ray already initialised in this process (``ray.init(...)`` called by
      you): used as is, whatever the arguments below.
    * ``address="auto"``, ``"ray://host:10001"`` or ``"host:6379"``: connect to
      that cluster with ``ray.init(address=..., **init_kwargs)``.
    * ``start_local=True``: start a local Ray with ``num_cpus`` and no
      dashboard (``ray.init(num_cpus=..., include_dashboard=False, **init_kwargs)``).

    Otherwise binding the backend to a runtime fails with a ``RuntimeError``
    saying how to choose. The backend never calls ``ray.shutdown()``: other
    code in the process may use Ray.

    ``pool``: a shared :class:`RayWorkerPool` (not killed when the runtime
    shuts down); by default the backend makes its own with ``actors`` actors
    (default: ``min(max_workers, 4)``) and kills it at shutdown.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        init_kwargs: Mapping[str, Any] | None = None,
        start_local: bool = False,
        num_cpus: int | None = None,
        pool: RayWorkerPool | None = None,
        actors: int | None = None,
    ) -> None:
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise ValueError(
                f"RayBackend.address must be 'auto', 'ray://host:port' or 'host:port', "
                f"got {address!r}"
            )
        if address is not None and start_local:
            raise ValueError("RayBackend: give either address=... or start_local=True, not both")
        if num_cpus is not None and not start_local:
            raise ValueError("RayBackend.num_cpus is only used with start_local=True")
        if num_cpus is not None:
            check_int("RayBackend", "num_cpus", num_cpus, minimum=1)
        if pool is not None and actors is not None:
            raise ValueError("RayBackend: give either pool=... or actors=..., not both")
        if pool is not None and not isinstance(pool, RayWorkerPool):
            raise TypeError(f"RayBackend.pool must be a RayWorkerPool, got {pool!r}")
        if actors is not None:
            check_int("RayBackend", "actors", actors, minimum=1)
        self.address = address
        self.init_kwargs = dict(init_kwargs or {})
        self.start_local = start_local
        self.num_cpus = num_cpus
        self._pool = pool
        self._owns_pool = pool is None
        self._actors = actors
        self._settings: BackendSettings | None = None
        # Created in bind(): a backend that never gets bound leaves no loop behind.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._dispatcher: Dispatcher | None = None

    @property
    def pool(self) -> RayWorkerPool:
        if self._pool is None:
            raise RuntimeError("RayBackend is not bound to a SubagentRuntime yet")
        return self._pool

    @property
    def dispatcher(self) -> Dispatcher:
        if self._dispatcher is None:
            raise RuntimeError("RayBackend is not bound to a SubagentRuntime yet")
        return self._dispatcher

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("RayBackend is not bound to a SubagentRuntime yet")
        return self._loop

    # -- the Backend protocol ------------------------------------------------------------

    def bind(self, settings: BackendSettings) -> None:
        if self._settings is not None:
            raise ValueError("a RayBackend serves one SubagentRuntime; create a new one")
        self._connect()
        self._settings = settings
        if self._pool is None:
            size = self._actors if self._actors is not None else min(settings.max_workers, 4)
            self._pool = RayWorkerPool(actors=size)
        loop = self._loop = asyncio.new_event_loop()
        self._dispatcher = Dispatcher(self._pool, loop)
        self._unsubscribe = self._pool.subscribe(self._on_pool_change)
        self._thread = threading.Thread(
            target=self._run_loop, args=(loop,), name=f"{settings.runtime_name}-ray-driver",
            daemon=True,
        )
        self._thread.start()

    def prepare(self, run: RunFunction, *, subagent_name: str) -> PreparedRun:
        return prepare_run(run, subagent_name=subagent_name)

    def start(self, ticket: TaskTicket) -> None:
        self.loop.call_soon_threadsafe(self.dispatcher.launch, ticket)

    def interrupt(self, ticket: TaskTicket) -> None:
        try:
            self.loop.call_soon_threadsafe(self.dispatcher.stop, ticket)
        except RuntimeError:
            pass  # the driver loop is closed: every run is over

    def forward_notes(self, tickets: list[TaskTicket]) -> None:
        """Budget notes the runtime put in these tasks' inboxes: send them to
        the runs on their actors (read before their next model call)."""
        try:
            self.loop.call_soon_threadsafe(self.dispatcher.send_notes, tickets)
        except RuntimeError:
            pass  # the driver loop is closed: every run is over

    def shutdown(self, *, wait: bool, deadline: float | None) -> bool:
        if self._thread is None or self._settings is None:
            return True
        settle = (
            self._settings.cancel_grace_seconds + self._settings.cleanup_timeout_seconds + 1.0
        )
        try:
            done = asyncio.run_coroutine_threadsafe(self._close(settle), self.loop)
        except RuntimeError:
            return True  # already closed
        if not wait:
            return True
        try:
            done.result(remaining(deadline))
        except TimeoutError:
            return False
        self._thread.join(remaining(deadline))
        return not self._thread.is_alive()

    def stats(self) -> dict[str, int]:
        pool_stats = self._pool.stats() if self._pool is not None else {}
        dispatcher = self._dispatcher
        if dispatcher is None:
            return pool_stats
        # Counters written on the driver loop, read here without a lock: each
        # is one int, read once (a stale value by a moment at worst).
        return {
            **pool_stats,
            "ray_submitted_total": dispatcher.submitted_total,
            "ray_abandoned_runs_total": dispatcher.abandoned_total,
            "ray_placement_waiting": dispatcher.waiting,
            "ray_resent_runs_total": dispatcher.resent_total,
            "ray_placement_failures_total": dispatcher.placement_failures_total,
        }

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.close()

    # -- connecting --------------------------------------------------------------------------

    def _connect(self) -> None:
        if ray.is_initialized():
            return
        if self.address is not None:
            ray.init(address=self.address, **self.init_kwargs)
        elif self.start_local:
            options: dict[str, Any] = {"include_dashboard": False, **self.init_kwargs}
            if self.num_cpus is not None:
                options["num_cpus"] = self.num_cpus
            ray.init(**options)
        else:
            raise RuntimeError(
                "Ray is not initialised. Call ray.init(...) before creating the runtime, or "
                "pass RayBackend(address='auto' or 'ray://host:10001') to connect to a cluster, "
                "or RayBackend(start_local=True, num_cpus=N) to start a local Ray"
            )

    def _on_pool_change(self) -> None:
        """An actor became ready, or the pool can no longer serve (pool's thread)."""
        dispatcher = self._dispatcher
        if dispatcher is None:
            return
        try:
            self.loop.call_soon_threadsafe(dispatcher.place_waiting)
        except RuntimeError:
            pass  # the driver loop is closed

    async def _close(self, settle: float) -> None:
        """Let the runs still unwinding finish (bounded), then let the workers go."""
        if self._dispatcher is not None:
            await self._dispatcher.close(settle)
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._owns_pool and self._pool is not None:
            self._pool.kill()
        self.loop.call_soon(self.loop.stop)
