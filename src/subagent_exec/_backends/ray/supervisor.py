"""A pool's supervision: one asyncio loop on one daemon thread per pool that
awaits each actor's ``ready`` call, then its ``lifeline`` call (which only
ever ends by raising, when the actor is gone), and reads Ray's node table
every ``node_check_seconds``. It only observes and reports to the pool
through the callbacks it is given; the pool decides."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import ray

from ..._errors import describe

logger = logging.getLogger("subagent_exec")


class Supervisor:
    """Watches actors and nodes for one pool (see the module docstring)."""

    def __init__(
        self,
        *,
        on_ready: Callable[[Any, dict[str, Any]], bool],
        on_lost: Callable[[Any, BaseException, bool], None],
        read_nodes: Callable[[], list[dict[str, Any]] | None],
        on_nodes: Callable[[list[dict[str, Any]] | None], bool],
        node_check_seconds: float,
    ) -> None:
        self._on_ready = on_ready
        self._on_lost = on_lost
        self._read_nodes = read_nodes
        self._on_nodes = on_nodes
        self._node_check_seconds = node_check_seconds
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run, name="subagent-exec-ray-pool", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        self.post(lambda: self._loop.create_task(self._watch_nodes()))

    def post(self, callback: Callable[[], Any]) -> None:
        """Run ``callback`` on the supervision loop (from any thread)."""
        try:
            self._loop.call_soon_threadsafe(callback)
        except RuntimeError:
            pass  # stopped: nothing to supervise any more

    def call_later(self, delay: float, callback: Callable[[], Any]) -> None:
        self.post(lambda: self._loop.call_later(delay, callback))

    def watch(self, member: Any) -> None:
        """Follow ``member`` (it has ``actor``): its ready call, then its lifeline."""
        self.post(lambda: self._loop.create_task(self._watch(member)))

    def kill_quietly(self, actor: Any) -> None:
        """``ray.kill`` an actor, on the supervision thread (never blocks the caller)."""
        self.post(lambda: kill_quietly(actor))

    def stop(self) -> None:
        self.post(self._stop)

    async def _watch(self, member: Any) -> None:
        try:
            where = await member.actor.ready.remote()
        except Exception as exc:
            self._on_lost(member, exc, True)
            return
        if not self._on_ready(member, where):
            return
        try:
            await member.actor.lifeline.remote()
        except Exception as exc:
            self._on_lost(member, exc, False)

    async def _watch_nodes(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._node_check_seconds)
            try:
                nodes = await loop.run_in_executor(None, self._read_nodes)
            except Exception as exc:  # a GCS hiccup: try again later
                logger.debug("a Ray worker pool could not read the nodes: %s", describe(exc))
                continue
            if not self._on_nodes(nodes):
                return

    def _stop(self) -> None:
        for task in asyncio.all_tasks(self._loop):
            task.cancel()
        self._loop.stop()

    def _run(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            # Stopped: let the watches see their cancellation, then close.
            watches = asyncio.all_tasks(loop)
            if watches:
                loop.run_until_complete(asyncio.wait(watches, timeout=2.0))
        finally:
            loop.close()


def kill_quietly(actor: Any) -> None:
    try:
        ray.kill(actor, no_restart=True)
    except Exception:  # already dead, or Ray is gone
        pass
