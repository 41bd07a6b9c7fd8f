"""The default backend: each sub-agent on its own event loop in a worker thread.

A ``ThreadPoolExecutor`` of ``max_workers * max_depth`` threads (a chain of
lent slots is at most ``max_depth`` long, see ``_runtime.py``). A run gets a
fresh loop, so one blocking sub-agent never slows another one down; its sync
calls run on an :class:`~subagent_exec._threads.AbandoningExecutor`, so a
stuck sync tool never holds a worker after a stop.

Interrupting: ``interrupt`` asks the run's own loop, via
``call_soon_threadsafe``, to cancel the run's asyncio task after
``cancel_grace_seconds``; an interrupted run gets ``cleanup_timeout_seconds``
for its ``finally:`` blocks before it is abandoned and its status written
anyway. The deadline is a ``call_later`` timer on the run's loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._context import current_runtime, current_task_id
from .._result import SubagentResult
from .._status import SubagentStatus
from .._threads import AbandoningExecutor
from .base import Ending, ending_of, finish, log_extra, remaining

if TYPE_CHECKING:
    from .._runtime import RunFunction, RunOutcome, SubagentRuntime, _Task

logger = logging.getLogger("subagent_exec")


@dataclass
class _LoopRun:
    """The live parts of one run, set on its worker thread."""

    loop: asyncio.AbstractEventLoop
    inner: asyncio.Task[RunOutcome]
    abandon: asyncio.Future[Any]
    interrupted: bool = False  # touched only on the run's own loop


class ThreadBackend:
    """Runs each sub-agent on its own event loop in a pool thread (the default)."""

    name = "thread"

    def __init__(self) -> None:
        self._runtime: SubagentRuntime | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._abandoned: set[threading.Thread] = set()
        self._abandoned_total = 0

    @property
    def runtime(self) -> SubagentRuntime:
        if self._runtime is None:
            raise RuntimeError("ThreadBackend is not bound to a SubagentRuntime")
        return self._runtime

    def bind(self, runtime: SubagentRuntime) -> None:
        if self._runtime is not None:
            raise ValueError("a ThreadBackend serves one SubagentRuntime; create a new one")
        self._runtime = runtime
        self._pool = ThreadPoolExecutor(
            max_workers=runtime.max_workers * runtime.max_depth,
            thread_name_prefix=f"{runtime.name}-worker",
        )

    def prepare(self, run: RunFunction, *, subagent_name: str) -> None:
        return None  # the run stays in this process: nothing to check or send

    def start(self, entry: _Task) -> None:
        assert self._pool is not None
        self._pool.submit(self._work, entry)

    def interrupt(self, entry: _Task) -> None:
        with self.runtime._lock:
            run: _LoopRun | None = entry.worker
        if run is None:
            return  # not started yet: the run checks cancel_event before it starts
        try:
            run.loop.call_soon_threadsafe(self._schedule_interrupt, entry, run)
        except RuntimeError:
            pass  # the loop already closed: the run is over

    def shutdown(self, *, wait: bool, deadline: float | None) -> bool:
        assert self._pool is not None
        self._pool.shutdown(wait=False)
        if not wait:
            return True
        for thread in list(getattr(self._pool, "_threads", ())):
            thread.join(remaining(deadline))
            if thread.is_alive():
                return False
        return True

    def stats(self) -> dict[str, int]:
        with self.runtime._lock:
            self._abandoned = {t for t in self._abandoned if t.is_alive()}
            return {
                "worker_threads": len(getattr(self._pool, "_threads", ())),
                "abandoned_threads": len(self._abandoned),
                "abandoned_threads_total": self._abandoned_total,
            }

    # -- on the run's own loop ------------------------------------------------------

    def _schedule_interrupt(self, entry: _Task, run: _LoopRun) -> None:
        """Interrupt now, or after the grace period."""
        grace = self.runtime.cancel_grace_seconds
        if grace > 0:
            run.loop.call_later(grace, self._interrupt, entry, run)
        else:
            self._interrupt(entry, run)

    def _interrupt(self, entry: _Task, run: _LoopRun) -> None:
        """Cancel the run once, and bound its cleanup."""
        if run.interrupted or run.inner.done():
            return
        run.interrupted = True
        run.inner.cancel(f"subagent stop: {entry.holder.cancel_reason}")
        run.loop.call_later(self.runtime.cleanup_timeout_seconds, self._abandon_cleanup, entry, run)

    def _abandon_cleanup(self, entry: _Task, run: _LoopRun) -> None:
        if not run.abandon.done():
            logger.warning(
                "%s cleanup did not finish within %.1fs; abandoning it",
                log_extra(entry.holder),
                self.runtime.cleanup_timeout_seconds,
            )
            run.abandon.set_result(None)

    def _on_deadline(self, entry: _Task, run: _LoopRun) -> None:
        if run.inner.done():
            return  # the run ended before its deadline; its outcome stands
        self.runtime._time_out(entry)

    # -- the worker thread ------------------------------------------------------------

    def _work(self, entry: _Task) -> None:
        """Runs in a pool thread: one fresh event loop for one run."""
        runtime = self.runtime
        holder = entry.holder
        try:
            if not holder._start():
                return  # stopped while queued: never runs
            loop = asyncio.new_event_loop()
            sync_calls = AbandoningExecutor(f"{runtime.name}-{holder.task_id[:8]}")
            loop.set_default_executor(sync_calls)
            asyncio.set_event_loop(loop)  # for libraries that call get_event_loop()
            try:
                loop.run_until_complete(self._drive(entry))
            except BaseException:  # never expected; the holder must still end
                logger.exception("%s driver crashed", log_extra(holder))
                holder._finish(SubagentStatus.FAILED, error="RuntimeError: subagent driver crashed")
            finally:
                _close_loop(loop, holder)
                left = sync_calls.live_threads()
                if left:
                    logger.warning(
                        "%s abandoned %d sync call(s) still running", log_extra(holder), len(left)
                    )
                with runtime._lock:
                    self._abandoned.update(left)
                    self._abandoned_total += len(left)
                    entry.worker = None
        finally:
            runtime._release_slot(entry)

    async def _drive(self, entry: _Task) -> None:
        runtime = self.runtime
        holder = entry.holder
        loop = asyncio.get_running_loop()
        context = (entry.context or contextvars.Context()).copy()
        context.run(current_task_id.set, holder.task_id)
        context.run(current_runtime.set, runtime)
        inner = loop.create_task(entry.run(holder), context=context)
        run = _LoopRun(loop=loop, inner=inner, abandon=loop.create_future())
        with runtime._lock:
            entry.worker = run
            stop_now = holder.cancel_event.is_set()
        if stop_now:
            # Cancelled before its first step, the coroutine body never runs.
            self._interrupt(entry, run)
        deadline = loop.call_later(entry.timeout_seconds, self._on_deadline, entry, run)
        try:
            await asyncio.wait([inner, run.abandon], return_when=asyncio.FIRST_COMPLETED)
        finally:
            deadline.cancel()
        if inner.done():
            finish(holder, ending_of(inner, holder))
        else:
            finish(
                holder,
                Ending(
                    SubagentStatus.CANCELLED,
                    error="CleanupTimeout: the sub-agent did not unwind in time",
                    stop_reason="cleanup_timeout",
                ),
            )


def _close_loop(loop: asyncio.AbstractEventLoop, holder: SubagentResult) -> None:
    """Like asyncio.run's teardown, but bounded and without waiting for the
    default executor (its sync calls are abandoned, see _threads.py)."""
    try:
        leftovers = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in leftovers:
            task.cancel()
        if leftovers:
            loop.run_until_complete(asyncio.wait(leftovers, timeout=1.0))
        if _has_unfinished_asyncgens(loop):
            loop.run_until_complete(loop.shutdown_asyncgens())
    except Exception:
        logger.exception("%s error while closing the sub-agent loop", log_extra(holder))
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def _has_unfinished_asyncgens(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``shutdown_asyncgens`` would have anything to close.

    Usually nothing: a finished or cancelled run leaves at most the graph's
    ``astream`` generator behind, already finished. Running the loop once more
    just to learn that costs ~0.1 ms of GIL-holding work per sub-agent, which a
    whole tree stopped at once pays serially (benchmarks/, scenario stop_tree).
    ``_asyncgens`` is a BaseEventLoop detail; any other loop gets the full path.
    """
    tracked = getattr(loop, "_asyncgens", None)
    if tracked is None:
        return True
    return any(gen.ag_frame is not None for gen in list(tracked))

