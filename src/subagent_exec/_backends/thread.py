"""The default backend: each sub-agent on its own event loop in a worker thread.

A ``ThreadPoolExecutor`` with one thread per run that can hold a slot at once
(``BackendSettings.max_concurrent_runs``). A run gets a fresh loop, so one
blocking sub-agent never slows another one down; its sync calls run on an
:class:`~subagent_exec._threads.AbandoningExecutor`, so a stuck sync tool
never holds a worker after a stop.

Interrupting: ``interrupt`` asks the run's own loop, via
``call_soon_threadsafe``, to cancel the run's asyncio task after
``cancel_grace_seconds``; an interrupted run gets ``cleanup_timeout_seconds``
for its ``finally:`` blocks before it is abandoned and its status written
anyway. The deadline is a ``call_later`` timer on the run's loop.

Abandoning: a run whose cleanup outlives its limit gets its status written
(``CleanupTimeout``) and its loop is closed like ``asyncio.run`` closes one:
what is still pending is cancelled once more and given a second to unwind.
Tasks that swallow even that are kept, never destroyed (destroying them
would print "Task was destroyed but it is pending" or "coroutine ignored
GeneratorExit"), and counted in ``stats()["abandoned_runs"]``; the only trace
is one warning naming the task. ``shutdown(wait=True, deadline=...)``
abandons what is still unwinding at the deadline, so interpreter exit is
bounded (``_exit.py``).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .._contract import BackendSettings, RunEnding, RunFunction, RunOutcome, TaskTicket, remaining
from .._status import SubagentStatus
from .._threads import AbandoningExecutor

logger = logging.getLogger("subagent_exec")


#: How long a finished run's leftover tasks get to unwind when its loop closes.
LEFTOVER_SECONDS = 1.0


@dataclass
class _LoopRun:
    """The live parts of one run, set on its worker thread."""

    loop: asyncio.AbstractEventLoop
    inner: asyncio.Task[RunOutcome]
    abandon: asyncio.Future[Any]
    interrupted: bool = False  # touched only on the run's own loop
    #: The run was abandoned (cleanup limit or shutdown deadline passed).
    abandoned: bool = False
    #: How long its leftovers get when its loop closes (none at a shutdown deadline).
    leftover_seconds: float = LEFTOVER_SECONDS


class ThreadBackend:
    """Runs each sub-agent on its own event loop in a pool thread (the default)."""

    name = "thread"

    def __init__(self) -> None:
        self._settings: BackendSettings | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        # Invariant: the fields below are read and written under self._lock.
        self._runs: dict[str, _LoopRun] = {}
        self._abandoned: set[threading.Thread] = set()
        self._abandoned_total = 0
        self._abandoned_runs = 0

    def bind(self, settings: BackendSettings) -> None:
        if self._settings is not None:
            raise ValueError("a ThreadBackend serves one SubagentRuntime; create a new one")
        self._settings = settings
        self._pool = ThreadPoolExecutor(
            max_workers=settings.max_concurrent_runs,
            thread_name_prefix=f"{settings.runtime_name}-worker",
        )

    def prepare(self, run: RunFunction, *, subagent_name: str) -> None:
        return None  # the run stays in this process: nothing to check or send

    def start(self, ticket: TaskTicket) -> None:
        assert self._pool is not None
        self._pool.submit(self._work, ticket)

    def interrupt(self, ticket: TaskTicket) -> None:
        with self._lock:
            run = self._runs.get(ticket.task_id)
        if run is None:
            return  # not started yet: the run checks cancel_event before it starts
        try:
            run.loop.call_soon_threadsafe(self._schedule_interrupt, ticket, run)
        except RuntimeError:
            pass  # the loop already closed: the run is over

    def shutdown(self, *, wait: bool, deadline: float | None) -> bool:
        assert self._pool is not None
        self._pool.shutdown(wait=False)
        if not wait:
            return True
        threads = list(getattr(self._pool, "_threads", ()))
        for thread in threads:
            thread.join(remaining(deadline))
        if not any(thread.is_alive() for thread in threads):
            return True
        # The deadline passed with runs still unwinding: abandon them, so the
        # worker threads are let go at once (their statuses are written).
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            try:
                run.loop.call_soon_threadsafe(self._abandon_now, run, 0.0)
            except RuntimeError:
                pass  # its loop already closed
        for thread in threads:
            thread.join(LEFTOVER_SECONDS)
        return False

    def stats(self) -> dict[str, int]:
        with self._lock:
            self._abandoned = {t for t in self._abandoned if t.is_alive()}
            return {
                "worker_threads": len(getattr(self._pool, "_threads", ())),
                "abandoned_threads": len(self._abandoned),
                "abandoned_threads_total": self._abandoned_total,
                "abandoned_runs": self._abandoned_runs,
            }

    # -- on the run's own loop ------------------------------------------------------

    def _schedule_interrupt(self, ticket: TaskTicket, run: _LoopRun) -> None:
        """Interrupt now, or after the grace period."""
        grace = ticket.cancel_grace_seconds
        if grace > 0:
            run.loop.call_later(grace, self._interrupt, ticket, run)
        else:
            self._interrupt(ticket, run)

    def _interrupt(self, ticket: TaskTicket, run: _LoopRun) -> None:
        """Cancel the run once, and bound its cleanup."""
        if run.interrupted or run.inner.done():
            return
        run.interrupted = True
        run.inner.cancel(f"subagent stop: {ticket.cancel_reason}")
        run.loop.call_later(ticket.cleanup_timeout_seconds, self._abandon_cleanup, ticket, run)

    def _abandon_cleanup(self, ticket: TaskTicket, run: _LoopRun) -> None:
        if not run.abandon.done():
            logger.warning(
                "%s cleanup did not finish within %.1fs; abandoning it",
                ticket.log_prefix,
                ticket.cleanup_timeout_seconds,
            )
            self._abandon_now(run)

    @staticmethod
    def _abandon_now(run: _LoopRun, leftover_seconds: float = LEFTOVER_SECONDS) -> None:
        run.abandoned = True
        run.leftover_seconds = min(run.leftover_seconds, leftover_seconds)
        if not run.abandon.done():
            run.abandon.set_result(None)

    def _on_deadline(self, ticket: TaskTicket, run: _LoopRun) -> None:
        if run.inner.done():
            return  # the run ended before its deadline; its outcome stands
        ticket.time_out()

    # -- the worker thread ----------------------------------------------------------

    def _work(self, ticket: TaskTicket) -> None:
        """Runs in a pool thread: one fresh event loop for one run."""
        assert self._settings is not None
        try:
            if not ticket.begin():
                return  # stopped while queued: never runs
            loop = asyncio.new_event_loop()
            sync_calls = AbandoningExecutor(
                f"{self._settings.runtime_name}-{ticket.task_id[:8]}"
            )
            loop.set_default_executor(sync_calls)
            asyncio.set_event_loop(loop)  # for libraries that call get_event_loop()
            run: _LoopRun | None = None
            try:
                run = loop.run_until_complete(self._drive(ticket, sync_calls))
            except BaseException:  # never expected; the task must still end
                logger.exception("%s driver crashed", ticket.log_prefix)
                self._count_abandoned(ticket, sync_calls.live_threads())
                ticket.finish(
                    RunEnding(SubagentStatus.FAILED, error="RuntimeError: subagent driver crashed")
                )
            kept = self._close_loop(loop, run, ticket)
            if kept:
                keep_forever(kept)
                with self._lock:
                    self._abandoned_runs += 1
        finally:
            with self._lock:
                self._runs.pop(ticket.task_id, None)
            ticket.release()  # a no-op after finish(); frees the slot otherwise

    async def _drive(self, ticket: TaskTicket, sync_calls: AbandoningExecutor) -> _LoopRun:
        loop = asyncio.get_running_loop()
        inner = loop.create_task(ticket.run(ticket), context=ticket.context.copy())
        run = _LoopRun(loop=loop, inner=inner, abandon=loop.create_future())
        with self._lock:
            self._runs[ticket.task_id] = run
        if ticket.cancel_event.is_set():
            # Cancelled before its first step, the coroutine body never runs.
            self._interrupt(ticket, run)
        deadline = loop.call_later(ticket.timeout_seconds, self._on_deadline, ticket, run)
        try:
            await asyncio.wait([inner, run.abandon], return_when=asyncio.FIRST_COMPLETED)
        finally:
            deadline.cancel()
        # Counted before the terminal status is written, so whoever it wakes
        # sees them in stats().
        self._count_abandoned(ticket, sync_calls.live_threads())
        # Written while this loop still runs: its next select() hands the GIL
        # to whoever the terminal status woke (measured: ~40 us sooner).
        ticket.finish(_ending(run, ticket))  # terminal status and slot back, together
        return run

    def _count_abandoned(self, ticket: TaskTicket, threads: list[threading.Thread]) -> None:
        if not threads:
            return
        logger.warning(
            "%s abandoned %d sync call(s) still running", ticket.log_prefix, len(threads)
        )
        with self._lock:
            self._abandoned.update(threads)
            self._abandoned_total += len(threads)

    def _close_loop(
        self, loop: asyncio.AbstractEventLoop, run: _LoopRun | None, ticket: TaskTicket
    ) -> list[asyncio.Task[Any]]:
        """Like asyncio.run's teardown, but bounded, without waiting for the
        default executor (its sync calls are abandoned, see _threads.py), and
        without destroying what was abandoned. Returns the tasks to keep."""
        kept: list[asyncio.Task[Any]] = []
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            if pending:
                # As asyncio.run does; for an abandoned run this comes after
                # its cleanup limit, so it never cuts a cleanup short.
                for task in pending:
                    task.cancel()
                leftover = run.leftover_seconds if run is not None else LEFTOVER_SECONDS
                loop.run_until_complete(asyncio.wait(pending, timeout=leftover))
                kept = [t for t in pending if not t.done()]  # they swallow cancels
            if not kept and _has_unfinished_asyncgens(loop):
                loop.run_until_complete(loop.shutdown_asyncgens())
        except Exception:
            logger.exception("%s error while closing the sub-agent loop", ticket.log_prefix)
        finally:
            asyncio.set_event_loop(None)
            loop.close()
        return kept


def keep_forever(tasks: list[asyncio.Task[Any]]) -> None:
    """Never destroy these tasks: they swallowed every cancel and their loop is
    closed, so they can never run again. Destroying one would run its code a
    last time, outside any loop (a GeneratorExit thrown into it, which library
    code such as langgraph's retry wrapper turns into "Exception ignored" and
    "coroutine ignored GeneratorExit" noise, at any later garbage collection or
    at interpreter exit). Like an abandoned thread, an abandoned task is kept
    for the life of the process: one extra reference each, never given back.
    """
    for task in tasks:
        task._log_destroy_pending = False  # type: ignore[attr-defined]
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(task))


def _ending(run: _LoopRun, ticket: TaskTicket) -> RunEnding:
    if run.inner.done():
        return RunEnding.of_task(run.inner, ticket)
    return RunEnding.cleanup_timeout()


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
