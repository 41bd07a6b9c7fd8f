"""The default backend: each sub-agent on its own event loop in a worker thread.

A ``ThreadPoolExecutor`` with one thread per run that can hold a slot at once
(``BackendSettings.max_concurrent_runs``). Each worker thread keeps one event
loop and runs one sub-agent at a time on it, so one blocking sub-agent never
slows another one down; between two runs the loop is tidied, or replaced,
so that nothing of one run survives into the next (``_loops.py``;
``"thread-fresh-loops"`` makes a fresh loop for every run instead). Sync
calls run on an :class:`~subagent_exec._threads.AbandoningExecutor`, so a
stuck sync tool never holds a worker after a stop.

Interrupting: ``interrupt`` asks the run's own loop, via
``call_soon_threadsafe``, to cancel the run's asyncio task after
``cancel_grace_seconds``; an interrupted run gets ``cleanup_timeout_seconds``
for its ``finally:`` blocks before it is abandoned and its status written
anyway. The deadline is a ``call_later`` timer on the run's loop.

Abandoning: a run whose cleanup outlives its limit gets its status written
(``CleanupTimeout``) and its loop is tidied like ``asyncio.run`` closes one:
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
import functools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .._contract import BackendSettings, RunEnding, RunFunction, RunOutcome, TaskTicket, remaining
from .._loops import LEFTOVER_SECONDS, WorkerLoop
from .._status import SubagentStatus

logger = logging.getLogger("subagent_exec")


@dataclass
class _LoopRun:
    """The live parts of one run, set on its worker thread."""

    loop: asyncio.AbstractEventLoop
    inner: asyncio.Task[RunOutcome]
    interrupted: bool = False  # touched only on the run's own loop
    #: The loop has returned from this run (later callbacks for it do nothing).
    ended: bool = False
    #: The timer that bounds an interrupted run's cleanup (cancelled at its end).
    cleanup_timer: asyncio.TimerHandle | None = None
    #: The run's deadline timer (cancelled at its end).
    deadline: asyncio.TimerHandle | None = None
    #: The run was abandoned (cleanup limit or shutdown deadline passed).
    abandoned: bool = False
    #: How long its leftovers get when its loop closes (none at a shutdown deadline).
    leftover_seconds: float = LEFTOVER_SECONDS


class ThreadBackend:
    """Runs each sub-agent on its own event loop in a pool thread (the default)."""

    name = "thread"
    #: Whether a worker thread keeps its event loop from one run to the next.
    reuse_loops = True
    #: Whether a worker yields the GIL right after writing a terminal status.
    yield_after_finish = True

    def __init__(self) -> None:
        self._settings: BackendSettings | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._lock = threading.Lock()
        # Invariant: the fields below are read and written under self._lock.
        self._runs: dict[str, _LoopRun] = {}
        self._abandoned: set[threading.Thread] = set()
        self._abandoned_total = 0
        self._abandoned_runs = 0
        self._workers: list[WorkerLoop] = []
        self._closing = False

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
        self._close_worker_loops()
        if not wait:
            return True
        threads = list(getattr(self._pool, "_threads", ()))
        for thread in threads:
            thread.join(remaining(deadline))
        if not any(thread.is_alive() for thread in threads):
            self._close_worker_loops()  # those whose last run ended meanwhile
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
                "worker_loops": sum(w.loops_made for w in self._workers),
            }

    def _close_worker_loops(self) -> None:
        """Close every worker's loop now, or (one running a run) once it is tidied."""
        with self._lock:
            self._closing = True
            workers = list(self._workers)
        for worker in workers:
            worker.close_if_idle()

    def _worker_loop(self) -> WorkerLoop:
        """This worker thread's loop keeper (made on its first run)."""
        worker: WorkerLoop | None = getattr(self._local, "worker", None)
        if worker is None:
            worker = self._local.worker = WorkerLoop(reuse=self.reuse_loops)
            with self._lock:
                self._workers.append(worker)
                if self._closing:
                    worker.close_if_idle()
        return worker

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
        run.cleanup_timer = run.loop.call_later(
            ticket.cleanup_timeout_seconds, self._abandon_cleanup, ticket, run
        )

    def _abandon_cleanup(self, ticket: TaskTicket, run: _LoopRun) -> None:
        if not run.ended and not run.inner.done():
            logger.warning(
                "%s cleanup did not finish within %.1fs; abandoning it",
                ticket.log_prefix,
                ticket.cleanup_timeout_seconds,
            )
            self._abandon_now(run)

    @staticmethod
    def _abandon_now(run: _LoopRun, leftover_seconds: float = LEFTOVER_SECONDS) -> None:
        if run.ended:
            return  # a late call: this run is over, another may be on the loop
        run.abandoned = True
        run.leftover_seconds = min(run.leftover_seconds, leftover_seconds)
        run.loop.stop()  # the run returns from run_forever() with its task pending

    def _on_deadline(self, ticket: TaskTicket, run: _LoopRun) -> None:
        if run.inner.done():
            return  # the run ended before its deadline; its outcome stands
        ticket.time_out()

    # -- the worker thread ----------------------------------------------------------

    def _work(self, ticket: TaskTicket) -> None:
        """Runs in a pool thread: one run on this thread's event loop."""
        assert self._settings is not None
        try:
            if not ticket.begin():
                return  # stopped while queued: never runs
            worker = self._worker_loop()
            loop, sync_calls = worker.open(f"{self._settings.runtime_name}-{ticket.task_id[:8]}")
            run: _LoopRun | None = None
            crashed = False
            try:
                run = self._begin_run(ticket, loop)
                loop.run_forever()  # until the run's task is done or it is abandoned
                run.ended = True
                if not run.inner.done() and not run.abandoned:
                    raise RuntimeError("the event loop was stopped during the run")
                ending = _ending(run, ticket)
            except BaseException:  # never expected; the task must still end
                logger.exception("%s driver crashed", ticket.log_prefix)
                crashed = True
                ending = RunEnding(
                    SubagentStatus.FAILED, error="RuntimeError: subagent driver crashed"
                )
            finally:
                if run is not None:
                    run.ended = True
                    for timer in (run.deadline, run.cleanup_timer):
                        if timer is not None:
                            timer.cancel()
            # Counted before the terminal status is written, so whoever it wakes
            # sees them in stats().
            self._count_abandoned(ticket, sync_calls.live_threads())
            ticket.finish(ending)  # terminal status and slot back, together
            if self.yield_after_finish:
                # Let whoever the terminal status woke take the GIL before the
                # tidying below (a waiter otherwise waits for it).
                time.sleep(0)
            # After the status: a caller waiting for it does not wait for this.
            kept = worker.tidy(
                leftover_seconds=run.leftover_seconds if run is not None else LEFTOVER_SECONDS,
                crashed=crashed,
                log_prefix=ticket.log_prefix,
            )
            if kept:
                keep_forever(kept)
                with self._lock:
                    self._abandoned_runs += 1
        finally:
            with self._lock:
                self._runs.pop(ticket.task_id, None)
            ticket.release()  # a no-op after finish(); frees the slot otherwise

    def _begin_run(self, ticket: TaskTicket, loop: asyncio.AbstractEventLoop) -> _LoopRun:
        """Start the run's task on ``loop`` (not running yet) and arm its deadline.

        The loop runs until the task's own done-callback stops it: no driver
        coroutine, no ``asyncio.wait``, so a run that ends (a stopped tree:
        every one of its runs) takes as few loop iterations as possible.
        """
        inner = loop.create_task(ticket.run(ticket), context=ticket.context.copy())
        run = _LoopRun(loop=loop, inner=inner)
        inner.add_done_callback(functools.partial(_stop_after, run))
        with self._lock:
            self._runs[ticket.task_id] = run
        if ticket.cancel_event.is_set():
            # Cancelled before its first step, the coroutine body never runs.
            self._interrupt(ticket, run)
        run.deadline = loop.call_later(ticket.timeout_seconds, self._on_deadline, ticket, run)
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


def _stop_after(run: _LoopRun, task: asyncio.Task[RunOutcome]) -> None:
    if not run.ended:  # not during the tidying of leftovers, after the run
        run.loop.stop()


def _ending(run: _LoopRun, ticket: TaskTicket) -> RunEnding:
    if run.inner.done():
        return RunEnding.of_task(run.inner, ticket)
    return RunEnding.cleanup_timeout()


class FreshLoopThreadBackend(ThreadBackend):
    """``backend="thread-fresh-loops"``: a fresh event loop for every run,
    closed after it (the behaviour before worker loops were reused). For code
    that relies on its loop being closed once its run is over, at ~0.1 ms of
    CPU more per run (docs/performance.md)."""

    name = "thread-fresh-loops"
    reuse_loops = False
