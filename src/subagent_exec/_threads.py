"""Threads for sync calls inside a sub-agent, which we may have to abandon.

Sync tools (and sync graph nodes) run in the loop's default executor. Nothing
in Python can interrupt them, and ``asyncio.run`` would wait for them at
shutdown, so a cancelled sub-agent would keep its worker until the sync call
returned. Instead each sync call gets its own daemon thread: a cancel unwinds
the coroutine at once, the status goes terminal, the worker slot is freed, and
a call still running is *abandoned* and counted (like anyio's
``abandon_on_cancel``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class AbandoningExecutor(ThreadPoolExecutor):
    """A loop default executor: one daemon thread per call, never waited for.

    Subclasses ThreadPoolExecutor only because ``loop.set_default_executor``
    requires one; none of the pool machinery is used.
    """

    def __init__(self, name: str) -> None:
        super().__init__(max_workers=1, thread_name_prefix=name)
        self._name = name
        self._live: set[threading.Thread] = set()
        self._live_lock = threading.Lock()
        self._count = 0

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()

        def run() -> None:
            outcome: tuple[bool, Any] | None = None
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        outcome = (True, fn(*args, **kwargs))
                    except BaseException as exc:
                        outcome = (False, exc)
            finally:
                # No longer live *before* the caller can see the result: a run
                # that ends on this result must not count this call as abandoned.
                with self._live_lock:
                    self._live.discard(threading.current_thread())
            if outcome is not None:
                if outcome[0]:
                    future.set_result(outcome[1])
                else:
                    future.set_exception(outcome[1])

        with self._live_lock:
            self._count += 1
            name = f"{self._name}-sync-{self._count}"
            thread = threading.Thread(target=run, name=name, daemon=True)
            self._live.add(thread)
        thread.start()
        return future

    def rename(self, name: str) -> None:
        """Name the threads of later calls ``<name>-sync-<n>`` (the executor
        is reused by the next run on the same worker loop)."""
        with self._live_lock:
            self._name = name

    def live_threads(self) -> list[threading.Thread]:
        with self._live_lock:
            return [t for t in self._live if t.is_alive()]

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        # Never wait: a sync call still running here is abandoned by design.
        super().shutdown(wait=False, cancel_futures=cancel_futures)
