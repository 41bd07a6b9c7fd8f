"""The runtime: the registry of tasks, their tree, stops and cascades,
retention, and waiting for a task to end.

One :class:`SubagentRuntime` owns one ``threading.RLock``. Every status write,
every tree change and every slot hand-over happens under it, so "is my parent
stopped?" and "register the child" cannot be separated by a cancel. What runs
the tasks is a *backend* (``_contract.py``; by default one event loop per
sub-agent in a worker thread), which sees each task through a
:class:`~subagent_exec._tasks.RegisteredTask` ticket; slots are decided by
``_slots.SlotPool``.

Stop path (docs/cancellation.md): ``request_cancel`` latches the stop under
the lock (``cancel_event`` is set, so every cooperative check sees it at
once), latches CANCELLED on every unfinished descendant, then asks the backend
to interrupt each run concerned. The status is written by the backend once
the run has unwound.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from ._backends import load_backend
from ._checks import (
    check_callable,
    check_int,
    check_number,
    check_optional_text,
    check_task_id,
    check_text,
)
from ._context import TaskScope, current_scope, task_in_scope
from ._contract import Backend, BackendSettings, RunFunction, remaining
from ._errors import CapacityError, DepthError, RuntimeClosedError, UnknownTaskError
from ._events import TERMINAL_EVENT_KINDS, EventCallback, EventHub, TaskEvent
from ._exit import register_exit_hook
from ._registry import Registry
from ._result import SubagentResult
from ._slots import SlotPool
from ._status import SubagentStatus, status_filter
from ._tasks import RegisteredTask, TaskSettings
from ._waiting import CALLER_CANCELLED, TaskWaiter, nothing_to_undo

logger = logging.getLogger("subagent_exec")

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
        owner = "SubagentRuntime"
        self.max_workers = check_int(owner, "max_workers", max_workers, minimum=1)
        self.max_pending = (
            None if max_pending is None else check_int(owner, "max_pending", max_pending, minimum=0)
        )
        self.max_depth = check_int(owner, "max_depth", max_depth, minimum=1)
        self.retain_max = check_int(owner, "retain_max", retain_max, minimum=0)
        self.retain_ttl_seconds = (
            None
            if retain_ttl_seconds is None
            else check_number(
                owner, "retain_ttl_seconds", retain_ttl_seconds, positive=True, finite=True
            )
        )
        # Finite: an infinite grace would mean a stop never interrupts, an
        # infinite cleanup limit that a stuck finally: holds its worker forever.
        self.cancel_grace_seconds = check_number(
            owner, "cancel_grace_seconds", cancel_grace_seconds, positive=False, finite=True
        )
        self.cleanup_timeout_seconds = check_number(
            owner, "cleanup_timeout_seconds", cleanup_timeout_seconds, positive=True, finite=True
        )
        self.name = check_text(owner, "name", name)

        self._lock = threading.RLock()
        self._events = EventHub(name=f"{name}-events")
        # Invariant: the fields below are read and written under self._lock.
        self._tasks = Registry(retain_max=retain_max, retain_ttl_seconds=self.retain_ttl_seconds)
        self._slots: SlotPool[RegisteredTask] = SlotPool(max_workers)
        self._closed = False
        #: shutdown(wait=False) left the backend running for queued tasks.
        self._backend_to_close = False
        self._backend = load_backend(backend)
        self._backend.bind(
            BackendSettings(
                runtime_name=name,
                max_concurrent_runs=max_workers * max_depth,
                max_workers=max_workers,
                cancel_grace_seconds=self.cancel_grace_seconds,
                cleanup_timeout_seconds=self.cleanup_timeout_seconds,
            )
        )
        self._task_settings = TaskSettings(
            lock=self._lock,
            cancel_grace_seconds=self.cancel_grace_seconds,
            cleanup_timeout_seconds=self.cleanup_timeout_seconds,
            time_out=self._time_out,
            release=self._release_locked,
            ended=self._ended,
            interrupt=self._interrupt,
        )
        self._waiter = TaskWaiter(
            watch=self._watch,
            lending=self._lending,
            request_cancel=self.request_cancel,
            cleanup_timeout_seconds=self.cleanup_timeout_seconds,
        )
        register_exit_hook(self)

    # -- stopping ----------------------------------------------------------------------

    def request_cancel(self, task_id: str, reason: str | None = None) -> bool:
        """Stop a task and its whole subtree. False if unknown or already terminal.

        Returns True when the task was not terminal: it is now stopping (or was
        already). The status turns CANCELLED once the run has unwound.
        """
        check_task_id("request_cancel", "task_id", task_id)
        if reason is not None and not isinstance(reason, str):
            raise TypeError(f"request_cancel.reason must be a string or None, got {reason!r}")
        reason = reason or "cancelled by request"
        with self._lock:
            entry = self._tasks.get(task_id)
            if entry is None or entry.holder.is_terminal:
                return False
            to_interrupt: list[RegisteredTask] = []
            if entry.holder._latch_stop(SubagentStatus.CANCELLED, reason):
                to_interrupt.append(entry)
                logger.info("%s cancel requested: %s", entry.log_prefix, reason)
            to_interrupt.extend(self._cascade_locked(entry, f"was cancelled: {reason}"))
        self._interrupt(to_interrupt)
        return True

    def _cascade_locked(self, root: RegisteredTask, what: str) -> list[RegisteredTask]:
        """Latch CANCELLED on every unfinished descendant of ``root`` (found
        through the registry's tree, which survives forgotten middle nodes)."""
        reason = f"ancestor {root.task_id} ({root.subagent_name}) {what}"
        return [
            entry
            for entry in self._tasks.descendants(root.task_id)
            if entry.holder._latch_stop(SubagentStatus.CANCELLED, reason)
        ]

    def _ended(self, entry: RegisteredTask) -> list[RegisteredTask]:
        """``entry`` has just become terminal (under the lock). Stop means the
        whole tree: descendants it left running are stopped too."""
        status = entry.holder.status
        if status in (SubagentStatus.COMPLETED, SubagentStatus.FAILED):
            return self._cascade_locked(entry, f"{status.value} without waiting for it")
        return []  # a stop latched on the descendants when it was requested

    def _interrupt(self, entries: list[RegisteredTask]) -> None:
        for entry in entries:
            self._backend.interrupt(entry)

    def _time_out(self, entry: RegisteredTask) -> None:
        """A running task's deadline passed (its backend says so): latch
        TIMED_OUT unless a stop was latched first, cascade, interrupt."""
        holder = entry.holder
        reason = (
            f"sub-agent {holder.subagent_name!r} exceeded "
            f"timeout_seconds={entry.timeout_seconds:g}"
        )
        with self._lock:
            if not holder._latch_stop(SubagentStatus.TIMED_OUT, reason):
                return
            others = self._cascade_locked(entry, "timed out")
        logger.info("%s %s", entry.log_prefix, reason)
        self._interrupt([entry, *others])

    # -- reading ---------------------------------------------------------------------------

    def get(self, task_id: str) -> SubagentResult | None:
        """The result holder of a task, or None if unknown / cleaned up."""
        check_task_id("get", "task_id", task_id)
        with self._lock:
            self._tasks.forget_expired()
            entry = self._tasks.get(task_id)
            return entry.holder if entry is not None else None

    def list_tasks(
        self,
        parent_id: str | None = None,
        status: SubagentStatus | str | Iterable[SubagentStatus | str] | None = None,
    ) -> list[SubagentResult]:
        """Registered tasks in creation order, optionally filtered."""
        if parent_id is not None:
            check_task_id("list_tasks", "parent_id", parent_id)
        wanted = status_filter(status)
        with self._lock:
            self._tasks.forget_expired()
            return [
                e.holder
                for e in self._tasks
                if (parent_id is None or e.holder.parent_id == parent_id)
                and (wanted is None or e.holder.status in wanted)
            ]

    def cleanup(self, task_id: str) -> bool:
        """Forget a terminal task. False if unknown or not terminal yet."""
        check_task_id("cleanup", "task_id", task_id)
        with self._lock:
            entry = self._tasks.get(task_id)
            if entry is None or not entry.holder.is_terminal:
                return False
            self._tasks.forget(task_id)
            return True

    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        """Receive every task event (created, started, ai_message, cancel_requested,
        and one terminal event per task) on a dispatcher thread. Returns unsubscribe."""
        check_callable("subscribe", "callback", callback)
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
            for entry in self._tasks:
                by_status[entry.holder.status.value] += 1
            return {
                **by_status,
                "registered": len(self._tasks),
                "submitted_total": self._tasks.submitted_total,
                "active": self._slots.active,
                "free_slots": self._slots.free,
                "queued": self._slots.queued,
                **self._backend.stats(),
            }

    @property
    def backend(self) -> Backend:
        """The backend that runs this runtime's sub-agents."""
        return self._backend

    @property
    def closed(self) -> bool:
        return self._closed

    # -- waiting ---------------------------------------------------------------------------

    async def wait_terminal(
        self,
        task: str | SubagentResult,
        *,
        on_event: EventCallback | None = None,
        forward_cancel: bool = True,
        cancel_reason: str = CALLER_CANCELLED,
    ) -> SubagentResult:
        """Await a task's terminal status on the caller's loop, without polling.

        * The terminal transition itself wakes the caller's loop.
        * ``on_event`` is called on the caller's loop (in the caller's context)
          for each event of the task, in order: first those recorded before the
          wait began, then each later one, the terminal event last.
        * Called from inside a sub-agent, that sub-agent lends its slot to its
          children while it waits (nested delegation cannot deadlock).
        * With ``forward_cancel``, a ``CancelledError`` in the caller stops the
          task with ``cancel_reason``, waits (shielded, bounded by
          ``cleanup_timeout_seconds`` + 1 s) for it to unwind, then propagates.

        Given the holder (not just the id), a task already evicted by
        retention still resolves: only terminal tasks are ever evicted.
        """
        _check_wait("wait_terminal", task, on_event, cancel_reason)
        return await self._waiter.wait(
            task, on_event=on_event, forward_cancel=forward_cancel, cancel_reason=cancel_reason
        )

    def wait_terminal_blocking(
        self,
        task: str | SubagentResult,
        *,
        timeout: float | None = None,
        on_event: EventCallback | None = None,
        forward_cancel: bool = True,
        cancel_reason: str = CALLER_CANCELLED,
    ) -> SubagentResult:
        """The blocking twin of :meth:`wait_terminal`, for sync code.

        ``on_event`` is called on this thread. When ``timeout`` runs out the
        holder is returned as it is (not terminal; the task keeps running).
        An exception in the wait (``KeyboardInterrupt``) is forwarded like a
        cancellation: the task is stopped, waited for (bounded), and the
        exception propagates.
        """
        _check_wait("wait_terminal_blocking", task, on_event, cancel_reason)
        if timeout is not None:
            check_number("wait_terminal_blocking", "timeout", timeout, positive=False, finite=True)
        return self._waiter.wait_blocking(
            task,
            timeout=timeout,
            on_event=on_event,
            forward_cancel=forward_cancel,
            cancel_reason=cancel_reason,
        )

    def _watch(
        self, task: str | SubagentResult, hand_over: Callable[[TaskEvent], None]
    ) -> tuple[SubagentResult, list[TaskEvent], Callable[[], None]]:
        """The task's holder, its events so far, and a watch that hands over
        each later one (taken together under the lock: none is lost or doubled)."""
        task_id = task if isinstance(task, str) else task.task_id
        with self._lock:
            entry = self._tasks.get(task_id)
            if isinstance(task, SubagentResult) and (entry is None or entry.holder is not task):
                if task.is_terminal:  # evicted: its history is complete
                    return task, task._events_so_far(), nothing_to_undo
                entry = None
            if entry is None:
                raise UnknownTaskError(f"no task {task_id!r} in runtime {self.name!r}")
            holder = entry.holder
            history = holder._events_so_far()
            if holder.is_terminal:
                return holder, history, nothing_to_undo
            return holder, history, self._events.watch(task_id, hand_over)

    @contextmanager
    def _lending(self) -> Iterator[None]:
        """While the caller (a task of this runtime) waits, its slot runs its children."""
        task_id = task_in_scope(self)
        entry = None
        if task_id is not None:
            with self._lock:
                entry = self._tasks.get(task_id)
                if entry is not None:
                    lends, granted = self._slots.begin_lending(entry.slot)
                    self._start_locked(granted)
                    if not lends:
                        entry = None
        try:
            yield
        finally:
            if entry is not None:
                with self._lock:
                    self._slots.end_lending(entry.slot)

    # -- submission ------------------------------------------------------------------------

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

        ``run`` is the coroutine function of the run (``SubagentExecutor``
        makes one from a config); ``context`` is what the run starts from
        (default: an empty context; the task's own scope is added).

        Raises ``ValueError`` (bad id, unknown parent), ``DepthError``,
        ``CapacityError`` or ``RuntimeClosedError``; then nothing is registered.
        """
        check_text("submit", "subagent_name", subagent_name)
        check_text("submit", "task", task)
        check_callable("submit", "run", run)
        check_number("submit", "timeout_seconds", timeout_seconds, positive=True, finite=True)
        for name, value in (
            ("task_id", task_id),
            ("parent_id", parent_id),
            ("trace_id", trace_id),
            ("owner", owner),
        ):
            check_optional_text("submit", name, value)
        if context is not None and not isinstance(context, contextvars.Context):
            raise TypeError(f"submit.context must be a contextvars.Context, got {context!r}")
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
            parent: RegisteredTask | None = None
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
            if (
                self.max_pending is not None
                and self._slots.queued >= self.max_pending
                and not self._slots.can_start_now(parent.slot if parent else None)
            ):
                raise CapacityError(
                    f"{self._slots.queued} tasks are already waiting (max_pending="
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
            run_context = (context if context is not None else contextvars.Context()).copy()
            run_context.run(current_scope.set, TaskScope(task_id, self))
            entry = RegisteredTask(
                holder=holder,
                run=run,
                payload=payload,
                timeout_seconds=timeout_seconds,
                context=run_context,
                settings=self._task_settings,
            )
            self._tasks.add(entry, parent_id)
            if parent is not None:
                parent.holder.children.append(task_id)
            self._publish_locked("created", holder, {"task": task, "depth": depth})
            if parent is not None and (
                parent.holder.is_terminal or parent.holder.cancel_event.is_set()
            ):
                # Checked and written under the same lock as the parent's stop:
                # a child spawned while its ancestor is being stopped never runs.
                holder._latch_stop(
                    SubagentStatus.CANCELLED,
                    f"parent {parent_id} ({parent.subagent_name}) was already stopped",
                )
                return holder
            self._start_locked(self._slots.enqueue(entry.slot, parent.slot if parent else None))
            logger.debug("%s submitted %s (depth %d)", holder.log_prefix, subagent_name, depth)
            return holder

    def _start_locked(self, granted: list[Any]) -> None:
        for state in granted:
            self._backend.start(state.task)

    def _release_locked(self, entry: RegisteredTask) -> None:
        """A run is over: give its slot back and start what can start."""
        self._start_locked(self._slots.release(entry.slot))

    # -- events and retention --------------------------------------------------------------

    def _on_holder_event(self, kind: str, holder: SubagentResult, data: dict[str, Any]) -> None:
        # Runs under the lock, inside the holder's transition.
        if kind == "cancel_requested":
            entry = self._tasks.get(holder.task_id)
            if entry is not None:
                self._slots.withdraw(entry.slot)  # if it was waiting, it never starts
        self._publish_locked(kind, holder, data)
        if kind in TERMINAL_EVENT_KINDS:
            self._tasks.finished(holder.task_id)
            if self._closed and self._tasks.unfinished == 0 and self._backend_to_close:
                # shutdown(wait=False) without cancel: the last task has ended.
                self._backend_to_close = False
                self._backend.shutdown(wait=False, deadline=None)

    def _publish_locked(self, kind: str, holder: SubagentResult, data: dict[str, Any]) -> None:
        holder._record_event(self._events.publish(kind, holder, data))

    # -- shutting down ---------------------------------------------------------------------

    def shutdown(
        self, cancel: bool = True, wait: bool = True, timeout: float | None = None
    ) -> bool:
        """Refuse new tasks, then bring every registered task to its end.

        ``cancel=True``: every unfinished task is stopped (queued ones at once,
        running ones once they have unwound). ``cancel=False``: running and
        queued tasks go on to their own end; queued ones still start, in order,
        as slots free up. With ``wait``, return once every task is terminal and
        the backend's workers have finished (thread backend: every worker
        thread has exited); False if ``timeout`` ran out first, in which case
        runs still unwinding were abandoned (``CleanupTimeout``). Without
        ``wait``, return at once; the backend is shut down as soon as the last
        task has ended.
        """
        if timeout is not None:
            check_number("shutdown", "timeout", timeout, positive=False, finite=True)
        with self._lock:
            self._closed = True
            unfinished = [e.holder for e in self._tasks if not e.holder.is_terminal]
            # Without cancel and wait, queued tasks still need the backend:
            # the last terminal transition shuts it down (_on_holder_event).
            defer_backend = not cancel and not wait and self._tasks.unfinished > 0
            self._backend_to_close = defer_backend
        if cancel:
            for holder in unfinished:
                self.request_cancel(holder.task_id, "runtime shut down")
        if not wait:
            if not defer_backend:
                self._backend.shutdown(wait=False, deadline=None)
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        ended = all(holder.wait(remaining(deadline)) for holder in unfinished)
        # At the deadline, runs still unwinding are abandoned by the backend
        # (their statuses are written): ``timeout`` bounds the whole shutdown.
        if not self._backend.shutdown(wait=True, deadline=deadline) or not ended:
            return False
        self._events.close(remaining(deadline))
        return True

    def __enter__(self) -> SubagentRuntime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown(cancel=True, wait=True)


def _check_wait(
    owner: str, task: object, on_event: object, cancel_reason: object
) -> None:
    if not isinstance(task, str | SubagentResult):
        raise TypeError(f"{owner}.task must be a task id or a SubagentResult, got {task!r}")
    if on_event is not None:
        check_callable(owner, "on_event", on_event)
    check_text(owner, "cancel_reason", cancel_reason)
