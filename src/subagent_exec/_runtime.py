"""The runtime: a registry of tasks, their tree, and the pool that runs them.

One :class:`SubagentRuntime` owns

* one ``threading.RLock`` under which every status write, every tree change
  and every slot hand-over happens (so "is my parent stopped?" and "register
  the child" cannot be separated by a cancel);
* a *backend* that runs the tasks granted a slot (``_backends/``): by default
  a ``ThreadPoolExecutor`` in which each running sub-agent gets its own event
  loop (one blocking sub-agent never slows another one down); ``"ray"`` runs
  them as async actor methods on a Ray cluster (docs/ray.md);
* ``max_workers`` *slots*. A RUNNING task holds one. A task that waits for its
  own child in the ``task`` tool lends its slot to that child, so nested
  delegation cannot deadlock when every worker is a parent waiting for a
  child: the child runs on the slot of the parent that waits for it. A chain
  of lent slots is at most ``max_depth`` long, so the pool never needs more
  than ``max_workers * max_depth`` threads, and at most ``max_workers``
  sub-agents are doing work at once;
* the event hub (``subscribe``) and the retention of finished results.

Cancellation path (see docs/cancellation.md): ``request_cancel`` latches the
stop under the lock, sets ``cancel_event`` (the cooperative checks see it at
once), cascades to every descendant, and asks the backend to interrupt each
running sub-agent (the thread backend cancels the run's asyncio task on its
own loop, via ``call_soon_threadsafe``, after ``cancel_grace_seconds``). The
status is written when the run has unwound.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
import uuid
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Coroutine, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ._backends.base import Backend, log_extra, remaining
from ._backends.thread import ThreadBackend
from ._context import current_task_id
from ._errors import (
    CapacityError,
    DepthError,
    RuntimeClosedError,
    UnknownTaskError,
)
from ._events import TERMINAL_EVENT_KINDS, EventCallback, EventHub, TaskEvent
from ._result import SubagentResult
from ._status import SubagentStatus

logger = logging.getLogger("subagent_exec")


@dataclass(frozen=True)
class RunOutcome:
    """What a sub-agent run returns when it ends on its own."""

    text: str
    stop_reason: str | None = None


#: The coroutine of one run, given the holder it reports into.
RunFunction = Callable[[SubagentResult], Coroutine[Any, Any, RunOutcome]]



@dataclass
class _Task:
    """Runtime-private bookkeeping of one task (the holder is the public part)."""

    holder: SubagentResult
    run: RunFunction
    timeout_seconds: float
    context: contextvars.Context | None
    # Slot: None (not started), "pool", or "lent" (we run on our lender.s slot).
    slot: str | None = None
    lender: _Task | None = None
    queued: bool = False  # in the pending queue (counts toward max_pending)
    lending: int = 0  # how many of our own waits for children are in progress
    lent_to: _Task | None = None  # the child currently running on our slot
    pending_children: deque[str] = field(default_factory=deque)
    #: What the backend's ``prepare`` returned for this task (e.g. the
    #: serialised run for a remote worker); None for the thread backend.
    payload: Any = None
    #: The backend's own state of the running task (None when not running).
    worker: Any = None


_log_extra = log_extra


class SubagentRuntime:
    """The pool and registry that run sub-agents. Thread-safe; use one per app.

    ``max_workers``: sub-agents doing work at once (each on its own loop).
    ``max_pending``: queued tasks allowed before ``execute_async`` refuses.
    ``max_depth``: how deep a tree may nest (a top-level sub-agent has depth 1).
    ``retain_max`` / ``retain_ttl_seconds``: how many / how long finished
    results are kept. ``cancel_grace_seconds``: how long a cancelled run may
    finish its current await before it is interrupted (0 = at once).
    ``cleanup_timeout_seconds``: how long an interrupted run may spend in its
    ``finally:`` blocks before it is abandoned and its status written anyway.
    ``backend``: what runs the sub-agents: ``"thread"`` (the default: one
    event loop per sub-agent in a thread of this process), ``"ray"`` (a
    ``RayBackend()`` with default options, see docs/ray.md), or a backend
    object such as ``RayBackend(address=...)``.
    """

    def __init__(
        self,
        max_workers: int = 8,
        max_pending: int | None = None,
        max_depth: int = 3,
        retain_max: int = 1000,
        retain_ttl_seconds: float | None = None,
        cancel_grace_seconds: float = 0.0,
        cleanup_timeout_seconds: float = 10.0,
        name: str = "subagent",
        backend: str | Backend = "thread",
    ) -> None:
        _check_int("max_workers", max_workers, minimum=1)
        if max_pending is not None:
            _check_int("max_pending", max_pending, minimum=0)
        _check_int("max_depth", max_depth, minimum=1)
        _check_int("retain_max", retain_max, minimum=0)
        if retain_ttl_seconds is not None:
            _check_number("retain_ttl_seconds", retain_ttl_seconds, positive=True)
        _check_number("cancel_grace_seconds", cancel_grace_seconds, positive=False)
        _check_number("cleanup_timeout_seconds", cleanup_timeout_seconds, positive=True)
        self.max_workers = max_workers
        self.max_pending = max_pending
        self.max_depth = max_depth
        self.retain_max = retain_max
        self.retain_ttl_seconds = retain_ttl_seconds
        self.cancel_grace_seconds = float(cancel_grace_seconds)
        self.cleanup_timeout_seconds = float(cleanup_timeout_seconds)
        self.name = name

        self._lock = threading.RLock()
        self._events = EventHub(name=f"{name}-events")
        self._tasks: dict[str, _Task] = {}
        self._pending: deque[str] = deque()
        self._pending_count = 0
        self._free_slots = max_workers
        self._active = 0  # tasks holding a slot and not lending it
        self._terminal_order: OrderedDict[str, None] = OrderedDict()
        self._backend = _make_backend(backend)
        self._backend.bind(self)
        self._closed = False
        self._submitted_total = 0
        _register_exit_hook(self)

    # -- public API --------------------------------------------------------------

    def request_cancel(self, task_id: str, reason: str | None = None) -> bool:
        """Stop a task and its whole subtree. False if unknown or already terminal.

        Returns True when the task was not terminal: it is now stopping (or was
        already). The status turns CANCELLED once the run has unwound.
        """
        reason = reason or "cancelled by request"
        with self._lock:
            entry = self._tasks.get(task_id)
            if entry is None or entry.holder.is_terminal:
                return False
            to_interrupt: list[_Task] = []
            if entry.holder._latch_stop(SubagentStatus.CANCELLED, reason):
                to_interrupt.append(entry)
                logger.info("%s cancel requested: %s", _log_extra(entry.holder), reason)
            to_interrupt.extend(self._cascade_locked(entry, f"cancelled: {reason}"))
        for target in to_interrupt:
            self._backend.interrupt(target)
        return True

    def get(self, task_id: str) -> SubagentResult | None:
        """The result holder of a task, or None if unknown / cleaned up."""
        with self._lock:
            self._evict_expired_locked()
            entry = self._tasks.get(task_id)
            return entry.holder if entry is not None else None

    def list_tasks(
        self,
        parent_id: str | None = None,
        status: SubagentStatus | str | Iterable[SubagentStatus | str] | None = None,
    ) -> list[SubagentResult]:
        """Registered tasks in creation order, optionally filtered."""
        wanted = _status_filter(status)
        with self._lock:
            self._evict_expired_locked()
            return [
                e.holder
                for e in self._tasks.values()
                if (parent_id is None or e.holder.parent_id == parent_id)
                and (wanted is None or e.holder.status in wanted)
            ]

    def cleanup(self, task_id: str) -> bool:
        """Forget a terminal task. False if unknown or not terminal yet."""
        with self._lock:
            entry = self._tasks.get(task_id)
            if entry is None or not entry.holder.is_terminal:
                return False
            self._forget_locked(task_id)
            return True

    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        """Receive every task event (created, started, ai_message, cancel_requested,
        and one terminal event per task) on a dispatcher thread. Returns unsubscribe."""
        if self._closed:
            raise RuntimeClosedError(
                f"runtime {self.name!r} is shut down; subscribe to a new SubagentRuntime"
            )
        return self._events.subscribe(callback)

    @property
    def last_event_seq(self) -> int:
        """The ``seq`` of the latest task event published. A subscriber that has
        received this seq has every event published since it subscribed."""
        return self._events.last_seq

    def stats(self) -> dict[str, int]:
        """Counts for monitoring: tasks by status, slots, and the backend's own
        counters (thread backend: live and abandoned threads)."""
        with self._lock:
            by_status = {s.value: 0 for s in SubagentStatus}
            for entry in self._tasks.values():
                by_status[entry.holder.status.value] += 1
            return {
                **by_status,
                "registered": len(self._tasks),
                "submitted_total": self._submitted_total,
                "active": self._active,
                "free_slots": self._free_slots,
                "queued": self._pending_count,
                **self._backend.stats(),
            }

    @property
    def backend(self) -> Backend:
        """The backend that runs this runtime's sub-agents."""
        return self._backend

    # The same operations under the names of the module-level functions.
    def request_cancel_background_task(self, task_id: str, reason: str | None = None) -> bool:
        return self.request_cancel(task_id, reason)

    def get_background_task_result(self, task_id: str) -> SubagentResult | None:
        return self.get(task_id)

    def list_background_tasks(
        self,
        parent_id: str | None = None,
        status: SubagentStatus | str | Iterable[SubagentStatus | str] | None = None,
    ) -> list[SubagentResult]:
        return self.list_tasks(parent_id=parent_id, status=status)

    def cleanup_background_task(self, task_id: str) -> bool:
        return self.cleanup(task_id)

    @property
    def closed(self) -> bool:
        return self._closed

    def shutdown(
        self, cancel: bool = True, wait: bool = True, timeout: float | None = None
    ) -> bool:
        """Refuse new tasks; cancel every unfinished one (``cancel=True``); with
        ``wait``, return once all tasks are terminal and the backend's workers
        have finished (thread backend: every worker thread has exited).
        Returns False if ``timeout`` ran out first."""
        with self._lock:
            self._closed = True
            unfinished = [e.holder for e in self._tasks.values() if not e.holder.is_terminal]
        if cancel:
            for holder in unfinished:
                self.request_cancel(holder.task_id, "runtime shut down")
        if not wait:
            self._backend.shutdown(wait=False, deadline=None)
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        for holder in unfinished:
            if not holder.wait(remaining(deadline)):
                return False
        if not self._backend.shutdown(wait=True, deadline=deadline):
            return False
        self._events.close(remaining(deadline))
        return True

    def __enter__(self) -> SubagentRuntime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown(cancel=True, wait=True)

    # -- submission (used by SubagentExecutor) ------------------------------------

    def submit(
        self,
        *,
        subagent_name: str,
        task: str,
        run: RunFunction,
        timeout_seconds: float,
        task_id: str | None = None,
        parent_id: str | None = None,
        trace_id: str | None = None,
        owner: str | None = None,
        context: contextvars.Context | None = None,
    ) -> SubagentResult:
        """Register a task and start it when a slot is free. Returns its holder.

        Raises ``ValueError`` (bad id, unknown parent), ``DepthError``,
        ``CapacityError`` or ``RuntimeClosedError``; then nothing is registered.
        """
        if task_id is not None and (not isinstance(task_id, str) or not task_id.strip()):
            raise ValueError(f"task_id must be a non-empty string, got {task_id!r}")
        # Outside the lock: a remote backend serialises the run here and
        # refuses what it cannot send, before anything is registered.
        payload = self._backend.prepare(run, subagent_name=subagent_name)
        with self._lock:
            if self._closed:
                raise RuntimeClosedError(
                    f"runtime {self.name!r} is shut down; create a new SubagentRuntime "
                    "or call subagent_exec.configure()"
                )
            if task_id is not None and task_id in self._tasks:
                raise ValueError(f"task_id {task_id!r} is already registered")
            parent: _Task | None = None
            if parent_id is not None:
                parent = self._tasks.get(parent_id)
                if parent is None:
                    raise ValueError(f"parent_id {parent_id!r} is not a registered task")
            depth = 1 if parent is None else parent.holder.depth + 1
            if depth > self.max_depth:
                raise DepthError(
                    f"sub-agent {subagent_name!r} would run at depth {depth}, deeper than "
                    f"max_depth={self.max_depth}; finish this work without delegating or "
                    "raise SubagentRuntime(max_depth=...)"
                )
            starts_now = self._free_slots > 0 or (
                parent is not None and parent.lending > 0 and parent.lent_to is None
            )
            if (
                self.max_pending is not None
                and not starts_now
                and self._pending_count >= self.max_pending
            ):
                raise CapacityError(
                    f"{self._pending_count} tasks are already waiting (max_pending="
                    f"{self.max_pending}); wait for some to finish or raise max_pending"
                )
            task_id = task_id or uuid.uuid4().hex
            trace = trace_id or (parent.holder.trace_id if parent else None) or uuid.uuid4().hex
            holder = SubagentResult(
                task_id=task_id,
                subagent_name=subagent_name,
                task=task,
                trace_id=trace,
                parent_id=parent_id,
                depth=depth,
                lock=self._lock,
                on_event=self._on_holder_event,
                owner=owner if owner is not None else (parent.holder.owner if parent else None),
            )
            entry = _Task(
                holder=holder,
                run=run,
                timeout_seconds=timeout_seconds,
                context=context,
                payload=payload,
            )
            self._tasks[task_id] = entry
            self._submitted_total += 1
            if parent is not None:
                parent.holder.children.append(task_id)
            self._events.publish("created", holder, {"task": task, "depth": depth})
            parent_stopped = parent is not None and (
                parent.holder.is_terminal or parent.holder.cancel_event.is_set()
            )
            if parent is not None and parent_stopped:
                # Checked and written under the same lock as the parent's stop:
                # a child spawned while its ancestor is being stopped never runs.
                holder._latch_stop(
                    SubagentStatus.CANCELLED,
                    f"parent {parent_id} ({parent.holder.subagent_name}) was already stopped",
                )
                return holder
            self._pending.append(task_id)
            self._pending_count += 1
            entry.queued = True
            if parent is not None:
                parent.pending_children.append(task_id)
            self._dispatch_locked(parent)
            logger.debug("%s submitted %s (depth %d)", _log_extra(holder), subagent_name, depth)
            return holder

    async def wait_terminal(
        self, task: str | SubagentResult, *, forward_cancel: bool = True
    ) -> SubagentResult:
        """Await a task's terminal status on the caller's loop, without polling.

        The caller's loop is woken by the terminal transition itself. When
        called from inside a sub-agent, that sub-agent lends its slot to its
        children while it waits. With ``forward_cancel``, a ``CancelledError``
        in the caller cancels the task, waits (shielded, bounded by
        ``cleanup_timeout_seconds`` + 1 s) for it to unwind, then propagates.
        """
        waiter = self.terminal_waiter(task)
        task_id = task if isinstance(task, str) else task.task_id
        try:
            with self._lending(current_task_id.get()):
                try:
                    await asyncio.shield(waiter)
                except asyncio.CancelledError:
                    if not forward_cancel:
                        raise
                    self.request_cancel(task_id, "the caller was cancelled")
                    try:
                        await asyncio.wait_for(
                            asyncio.shield(waiter), self.cleanup_timeout_seconds + 1.0
                        )
                    except (TimeoutError, asyncio.CancelledError):
                        pass
                    raise
        finally:
            if not waiter.done():
                waiter.cancel()
        return waiter.result()

    def terminal_waiter(
        self, task: str | SubagentResult, on_event: EventCallback | None = None
    ) -> asyncio.Future[SubagentResult]:
        """A future on the running loop, resolved by the task's terminal event.

        Given the holder (not just the id), a task already evicted by
        retention still resolves: only terminal tasks are ever evicted.

        ``on_event`` (optional) is called on the caller's loop for each later
        event of the task, in order (used by the ``task`` tool for progress).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[SubagentResult] = loop.create_future()
        task_id = task if isinstance(task, str) else task.task_id
        with self._lock:
            entry = self._tasks.get(task_id)
            if isinstance(task, SubagentResult) and (entry is None or entry.holder is not task):
                entry = None
                if task.is_terminal:
                    future.set_result(task)
                    return future
            if entry is None:
                raise UnknownTaskError(f"no task {task_id!r} in runtime {self.name!r}")
            holder = entry.holder

            def deliver(event: TaskEvent) -> None:
                if on_event is not None:
                    on_event(event)
                if event.is_terminal and not future.done():
                    future.set_result(holder)
                    unwatch()

            def handoff(event: TaskEvent) -> None:
                try:
                    loop.call_soon_threadsafe(deliver, event)
                except RuntimeError:  # the waiting loop is closed: nobody to tell
                    unwatch()

            unwatch = self._events.watch(task_id, handoff)
            if holder.is_terminal:
                unwatch()
                future.set_result(holder)
        future.add_done_callback(lambda _f: unwatch())
        return future

    # -- slots and dispatch (all *_locked methods run under self._lock) ----------

    @contextmanager
    def _lending(self, task_id: str | None) -> Iterator[None]:
        entry = None
        if task_id is not None:
            with self._lock:
                entry = self._tasks.get(task_id)
                if entry is not None and entry.slot is not None:
                    entry.lending += 1
                    if entry.lending == 1:
                        self._active -= 1
                    self._dispatch_locked(entry)
                else:
                    entry = None
        try:
            yield
        finally:
            if entry is not None:
                with self._lock:
                    entry.lending -= 1
                    if entry.lending == 0 and entry.slot is not None:
                        self._active += 1

    def _dispatch_locked(self, parent: _Task | None = None) -> None:
        """Start every pending task that has a slot: a lending parent's slot
        first (for its own children), then free pool slots in FIFO order."""
        if parent is not None and parent.lending and parent.lent_to is None:
            child = self._pop_pending_locked(parent.pending_children)
            if child is not None:
                parent.lent_to = child
                child.lender = parent
                self._start_locked(child, slot="lent")
        while self._free_slots > 0:
            entry = self._pop_pending_locked(self._pending)
            if entry is None:
                return
            self._free_slots -= 1
            self._start_locked(entry, slot="pool")

    def _pop_pending_locked(self, queue: deque[str]) -> _Task | None:
        # Lazy deletion: a queued id may have been started through another
        # queue, cancelled while pending, or cleaned up.
        while queue:
            entry = self._tasks.get(queue.popleft())
            if (
                entry is not None
                and entry.slot is None
                and entry.holder.status is SubagentStatus.PENDING
            ):
                return entry
        return None

    def _start_locked(self, entry: _Task, *, slot: str) -> None:
        entry.slot = slot
        entry.queued = False
        self._pending_count -= 1
        self._active += 1
        self._backend.start(entry)

    def _release_slot(self, entry: _Task) -> None:
        with self._lock:
            slot, lender = entry.slot, entry.lender
            entry.slot, entry.lender = None, None
            if slot is None:
                return
            if entry.lending == 0:
                self._active -= 1
            borrower, entry.lent_to = entry.lent_to, None
            if borrower is not None and borrower.slot == "lent":
                # We end while a child still runs on our slot: the slot passes
                # down to it instead of being freed while still in use.
                borrower.slot, borrower.lender = slot, lender
                if lender is not None:
                    lender.lent_to = borrower
                return
            if slot == "pool":
                self._free_slots += 1
                self._dispatch_locked()
            elif lender is not None:
                lender.lent_to = None
                self._dispatch_locked(lender)

    def _on_holder_event(self, kind: str, holder: SubagentResult, data: dict[str, Any]) -> None:
        # Runs under the lock, inside the holder's transition.
        if kind == "cancel_requested":
            entry = self._tasks.get(holder.task_id)
            if entry is not None and entry.queued:
                entry.queued = False
                self._pending_count -= 1  # it will never be started
        self._events.publish(kind, holder, data)
        if kind in TERMINAL_EVENT_KINDS:
            self._terminal_order[holder.task_id] = None
            self._evict_locked()

    # -- retention ---------------------------------------------------------------

    def _evict_locked(self) -> None:
        while len(self._terminal_order) > self.retain_max:
            oldest = next(iter(self._terminal_order))
            self._forget_locked(oldest)
        self._evict_expired_locked()

    def _evict_expired_locked(self) -> None:
        if self.retain_ttl_seconds is None:
            return
        horizon = datetime.now(UTC) - timedelta(seconds=self.retain_ttl_seconds)
        while self._terminal_order:
            oldest = next(iter(self._terminal_order))
            entry = self._tasks.get(oldest)
            completed = entry.holder.completed_at if entry else None
            if completed is not None and completed > horizon:
                return
            self._forget_locked(oldest)

    def _forget_locked(self, task_id: str) -> None:
        self._terminal_order.pop(task_id, None)
        entry = self._tasks.pop(task_id, None)
        if entry is not None:
            entry.run = _forgotten_run  # drop references to user objects
            entry.context = None
            entry.payload = None

    # -- cancellation ------------------------------------------------------------

    def _cascade_locked(self, root: _Task, why: str) -> list[_Task]:
        """Latch CANCELLED on every unfinished descendant of ``root``."""
        stopped: list[_Task] = []
        stack = list(root.holder.children)
        reason = f"ancestor {root.holder.task_id} ({root.holder.subagent_name}) was {why}"
        while stack:
            entry = self._tasks.get(stack.pop())
            if entry is None:
                continue
            stack.extend(entry.holder.children)
            if entry.holder._latch_stop(SubagentStatus.CANCELLED, reason):
                stopped.append(entry)
        return stopped

    def _time_out(self, entry: _Task) -> None:
        """Called by the backend when a running task's deadline has passed:
        latch TIMED_OUT (unless a stop was latched first), cascade, interrupt."""
        holder = entry.holder
        reason = (
            f"sub-agent {holder.subagent_name!r} exceeded "
            f"timeout_seconds={entry.timeout_seconds:g}"
        )
        with self._lock:
            if not holder._latch_stop(SubagentStatus.TIMED_OUT, reason):
                return
            others = self._cascade_locked(entry, "timed out")
        logger.info("%s %s", _log_extra(holder), reason)
        self._backend.interrupt(entry)
        for other in others:
            self._backend.interrupt(other)


# -- helpers -------------------------------------------------------------------------


def _make_backend(backend: str | Backend) -> Backend:
    if backend == "thread":
        return ThreadBackend()
    if backend == "ray":
        # Imported only when asked for: the core never imports ray.
        from ._backends.ray import RayBackend

        ray_backend: Backend = RayBackend()
        return ray_backend
    if isinstance(backend, str) or not isinstance(backend, Backend):
        raise ValueError(
            "SubagentRuntime.backend must be 'thread', 'ray' or a backend object "
            f"(e.g. subagent_exec.RayBackend(...)), got {backend!r}"
        )
    return backend


async def _forgotten_run(holder: SubagentResult) -> RunOutcome:  # pragma: no cover
    raise RuntimeError("this task was cleaned up")


def _status_filter(
    status: SubagentStatus | str | Iterable[SubagentStatus | str] | None,
) -> frozenset[SubagentStatus] | None:
    if status is None:
        return None
    items: Iterable[SubagentStatus | str] = (
        [status] if isinstance(status, SubagentStatus | str) else status
    )
    try:
        return frozenset(SubagentStatus(s) for s in items)
    except ValueError:
        allowed = ", ".join(s.value for s in SubagentStatus)
        raise ValueError(f"status must be one of: {allowed}; got {status!r}") from None


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"SubagentRuntime.{name} must be an int >= {minimum}, got {value!r}")


def _check_number(name: str, value: object, *, positive: bool) -> None:
    ok = not isinstance(value, bool) and isinstance(value, int | float)
    if ok:
        ok = value > 0 if positive else value >= 0  # type: ignore[operator]
    if not ok:
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"SubagentRuntime.{name} must be a number {bound}, got {value!r}")


_live_runtimes: weakref.WeakSet[SubagentRuntime] = weakref.WeakSet()
_exit_hook_lock = threading.Lock()
_exit_hook_installed = False


def _register_exit_hook(runtime: SubagentRuntime) -> None:
    """Cancel live runtimes at interpreter exit, before threads are joined.

    concurrent.futures joins pool threads from a ``threading`` exit hook, which
    runs before ``atexit``; a plain atexit handler would come too late and the
    interpreter would hang until every running sub-agent finished.
    """
    global _exit_hook_installed
    with _exit_hook_lock:
        _live_runtimes.add(runtime)
        if _exit_hook_installed:
            return
        _exit_hook_installed = True
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        register(_cancel_live_runtimes)


def _cancel_live_runtimes() -> None:
    for runtime in list(_live_runtimes):
        if not runtime.closed:
            runtime.shutdown(cancel=True, wait=True, timeout=5.0)
