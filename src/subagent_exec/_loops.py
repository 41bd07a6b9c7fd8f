"""A worker thread's event loop, reused run after run, and the hygiene between
two runs: nothing of one run survives into the next.

Making, closing and re-making a loop for every run cost ~0.1 ms of CPU per
sub-agent, paid serially under the GIL when a whole tree stops at once
(docs/performance.md). A worker thread runs one sub-agent at a time, so it
can keep one loop: isolation is unchanged (still one loop per running
sub-agent). What a run may leave on its loop, and what happens to it once
the run's terminal status is written (:meth:`WorkerLoop.tidy`):

* tasks it started and did not wait for: cancelled and given
  ``leftover_seconds`` to unwind (as ``asyncio.run`` does); one that swallows
  even that is handed back to be kept forever, and the loop is replaced;
* async generators not closed: closed (``aclose``, bounded) without
  ``shutdown_asyncgens``, which would forbid new ones on this loop;
* timers (``call_later``) and callbacks still queued: cancelled;
* an exception handler, a task factory, debug settings: reset;
* sync calls still running in the loop's default executor (abandoned by a
  stop, see ``_threads.py``): they may still call back into "their" loop,
  so the loop is replaced;
* I/O still registered (an unclosed transport or reader): the loop is
  replaced;
* a loop found closed, stopped or running when the next run starts, or
  whose run crashed the driver, is replaced.

Context variables never cross: every run starts in its own copy of its
task's context. ``asyncio.get_event_loop()`` on the worker thread returns the
run's loop. With ``reuse=False`` every run gets a fresh loop, closed after
it (the behaviour before loops were reused; ``backend="thread-fresh-loops"``).
The hygiene relies on ``BaseSelectorEventLoop`` details (``_scheduled``,
``_ready``, ``_selector``, ``_asyncgens``); a loop of any other kind is
never reused.
"""

from __future__ import annotations

import asyncio
import logging
import selectors
import threading
from typing import Any

from ._threads import AbandoningExecutor

logger = logging.getLogger("subagent_exec")

#: How long a finished run's leftover tasks get to unwind.
LEFTOVER_SECONDS = 1.0
#: How long a run's unclosed async generators get to close.
ASYNCGEN_CLOSE_SECONDS = 1.0


#: How many polls in a row a worker loop may skip while callbacks are ready.
SKIPPED_POLLS_MAX = 16


class LazySelector(selectors.DefaultSelector):
    """The default selector, but a poll without waiting (``timeout=0``: asyncio
    has callbacks ready to run) is skipped up to :data:`SKIPPED_POLLS_MAX`
    times in a row.

    Why: each poll is a system call that releases the GIL, so each iteration of
    a busy loop hands the GIL to another thread that wants it. When many
    sub-agents start or unwind at once (a tree stopped, 256 started), every
    one of them passes through ~20 iterations, and the hand-offs add to the
    work (docs/performance.md). Work posted from other threads is not delayed
    (``call_soon_threadsafe`` queues it directly); I/O readiness is seen at
    the latest after ``SKIPPED_POLLS_MAX`` busy iterations, and at once
    whenever the loop has nothing ready and would wait.
    """

    _skipped = 0

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is not None and timeout <= 0 and self._skipped < SKIPPED_POLLS_MAX:
            self._skipped += 1
            return []
        self._skipped = 0
        return super().select(timeout)


class WorkerLoop:
    """The event loop of one worker thread (used only by that thread, except
    :meth:`close_if_idle`, which a shutting-down backend calls)."""

    #: Worker loops skip polls while busy (:class:`LazySelector`).
    lazy_polls = True

    def __init__(self, *, reuse: bool) -> None:
        self.reuse = reuse
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sync_calls: AbandoningExecutor | None = None
        self._debug = False
        self._slow_callback_duration = 0.1
        #: Runs on this loop so far (a fresh loop starts at 0).
        self.runs = 0
        #: Loops made by this worker (the first one included).
        self.loops_made = 0
        self._state_lock = threading.Lock()
        # Invariant: read and written under _state_lock.
        self._busy = False
        self._closing = False

    # -- on the worker thread -----------------------------------------------------------

    def open(self, name: str) -> tuple[asyncio.AbstractEventLoop, AbandoningExecutor]:
        """The loop (set as this thread's current loop) and the sync-call
        executor for the next run; ``name`` prefixes the sync-call threads."""
        with self._state_lock:
            self._busy = True
        loop = self._loop
        if loop is None or loop.is_closed() or loop.is_running():
            loop = self._new_loop()
        sync_calls = self._sync_calls
        if sync_calls is None:
            sync_calls = self._sync_calls = AbandoningExecutor(name)
        else:
            sync_calls.rename(name)
        loop.set_default_executor(sync_calls)
        asyncio.set_event_loop(loop)  # for libraries that call get_event_loop()
        self.runs += 1
        return loop, sync_calls

    def tidy(
        self, *, leftover_seconds: float, crashed: bool, log_prefix: str
    ) -> list[asyncio.Task[Any]]:
        """After a run (its status already written): clear what it left on the
        loop, or close the loop. Returns the tasks that swallowed every cancel
        (the caller keeps them forever; see ``_backends/thread.py``)."""
        loop = self._loop
        assert loop is not None, "tidy() without open()"
        kept: list[asyncio.Task[Any]] = []
        dirty = "its run crashed the driver" if crashed else None
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            if pending:
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.wait(pending, timeout=leftover_seconds))
                kept = [t for t in pending if not t.done()]  # they swallow cancels
                if kept:
                    dirty = dirty or "tasks that swallow cancellation"
            if not kept and _has_unfinished_asyncgens(loop):
                if self.reuse and dirty is None:
                    if not loop.run_until_complete(_close_asyncgens(loop)):
                        dirty = "async generators that do not close"
                else:
                    loop.run_until_complete(loop.shutdown_asyncgens())
        except Exception:
            logger.exception("%s error while tidying the sub-agent loop", log_prefix)
            dirty = dirty or "an error while tidying it"
        if self.reuse and dirty is None:
            dirty = self._why_not_reusable(loop)
        if not self.reuse or dirty is not None:
            if self.reuse:
                logger.debug("%s event loop replaced: %s", log_prefix, dirty)
            self._drop_loop()
        else:
            self._reset(loop)
        with self._state_lock:
            self._busy = False
            closing = self._closing
        if closing:
            self._drop_loop()
        return kept

    # -- from the backend (any thread) --------------------------------------------------

    def close_if_idle(self) -> None:
        """The backend shuts down: close the loop now if no run is on it,
        else when the run on it has been tidied."""
        with self._state_lock:
            self._closing = True
            if self._busy:
                return
        self._drop_loop(on_worker=False)

    # -- internals ------------------------------------------------------------------------

    def _new_loop(self) -> asyncio.AbstractEventLoop:
        self._drop_loop()
        if self.lazy_polls and type(asyncio.get_event_loop_policy()) is (
            asyncio.DefaultEventLoopPolicy
        ):
            # (A custom policy, e.g. uvloop's, makes its own loops.)
            loop: asyncio.AbstractEventLoop = asyncio.SelectorEventLoop(LazySelector())
        else:
            loop = asyncio.new_event_loop()
        self._loop = loop
        self._debug = loop.get_debug()
        self._slow_callback_duration = loop.slow_callback_duration
        self.loops_made += 1
        self.runs = 0
        return loop

    def _drop_loop(self, *, on_worker: bool = True) -> None:
        """Close the loop (not the sync calls' threads: they are abandoned)."""
        with self._state_lock:
            loop, self._loop, self._sync_calls = self._loop, None, None
        if on_worker:
            asyncio.set_event_loop(None)
        if loop is not None and not loop.is_closed() and not loop.is_running():
            loop.close()

    def _why_not_reusable(self, loop: asyncio.AbstractEventLoop) -> str | None:
        if loop.is_closed() or loop.is_running():
            return "it was closed or is still running"
        if not _is_known_selector_loop(loop):
            return f"{type(loop).__name__} is not a selector loop this module knows"
        sync_calls = self._sync_calls
        if sync_calls is not None and sync_calls.live_threads():
            return "sync calls abandoned on it are still running"
        registered = len(loop._selector.get_map())  # type: ignore[attr-defined]
        if registered > 1:  # the loop's own self-pipe
            return f"{registered - 1} file descriptor(s) still registered (unclosed I/O)"
        return None

    def _reset(self, loop: asyncio.AbstractEventLoop) -> None:
        """Cancel what is still scheduled and undo settings a run may change."""
        base: Any = loop
        for timer in base._scheduled:
            timer.cancel()
        base._scheduled.clear()
        base._timer_cancelled_count = 0
        for handle in base._ready:
            handle.cancel()
        base._ready.clear()
        base._asyncgens.clear()  # only finished ones are left (closed above)
        if loop.get_exception_handler() is not None:
            loop.set_exception_handler(None)
        if loop.get_task_factory() is not None:
            loop.set_task_factory(None)
        if loop.get_debug() != self._debug:
            loop.set_debug(self._debug)
        loop.slow_callback_duration = self._slow_callback_duration


def _is_known_selector_loop(loop: asyncio.AbstractEventLoop) -> bool:
    return isinstance(loop, asyncio.BaseEventLoop) and all(
        hasattr(loop, name) for name in ("_scheduled", "_ready", "_selector", "_asyncgens")
    )


def _has_unfinished_asyncgens(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether a run left async generators that are not finished.

    Usually none: a finished or cancelled run leaves at most the graph's
    ``astream`` generator behind, already finished. Running the loop once more
    just to learn that costs ~0.1 ms of GIL-holding work per sub-agent, which a
    whole tree stopped at once pays serially (benchmarks/, scenario stop_tree).
    ``_asyncgens`` is a BaseEventLoop detail; any other loop gets the full path.
    """
    tracked = getattr(loop, "_asyncgens", None)
    if tracked is None:
        return True
    return any(gen.ag_frame is not None for gen in list(tracked))


async def _close_asyncgens(loop: asyncio.AbstractEventLoop) -> bool:
    """``shutdown_asyncgens`` without forbidding new generators on the loop
    afterwards. False if one did not close in time."""
    tracked: Any = loop._asyncgens  # type: ignore[attr-defined]
    open_gens = [gen for gen in list(tracked) if gen.ag_frame is not None]
    tracked.clear()
    if not open_gens:
        return True
    closing = asyncio.gather(*(gen.aclose() for gen in open_gens), return_exceptions=True)
    try:
        results = await asyncio.wait_for(closing, ASYNCGEN_CLOSE_SECONDS)
    except TimeoutError:
        return False
    for gen, result in zip(open_gens, results, strict=True):
        if isinstance(result, Exception):
            loop.call_exception_handler(
                {
                    "message": f"an error occurred while closing async generator {gen!r}",
                    "exception": result,
                    "asyncgen": gen,
                }
            )
    return True
