"""The ledger of background tasks: one :class:`Board` per runtime.

It knows, for each background task started by ``start_task``, the lead's
scope (thread and owner) it belongs to, how the lead named it, whether the
lead has been *told* its outcome, and its inbox of follow-up messages. One
board per runtime (not per tool set), so a lead agent rebuilt for each
request still finds the tasks its thread started in an earlier run.

* **Scope**: lookups take the scope; a task of another scope answers like an
  unknown id.
* **Told**: set once the lead has seen the task's outcome, either pushed
  into its conversation (confirmed when a model call of the lead sees the
  message) or in a tool's answer (``check_tasks``, ``wait_tasks``,
  ``cancel_task``). Until then the board keeps the task's holder, so the
  outcome stays available even after the runtime's retention forgot the
  task; afterwards the task follows the runtime's retention. At most
  :data:`UNTOLD_LIMIT` finished untold tasks are kept (oldest dropped first,
  with a warning): a thread that never runs again must not pin them forever.
* **Events**: the board subscribes to its runtime once and turns the events of
  its tasks into the tool set's progress events (``task_started``,
  ``task_running``, one terminal ``task_*``), each with ``background: True``,
  for the ``on_event`` listener of the tool set that started the task, in
  order, on the runtime's dispatcher thread.

# Invariant: the board's dictionaries are read and written under its lock;
# the runtime's lock is never taken while holding it except by runtime calls
# that take it briefly (get, subscribe).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ._errors import RuntimeClosedError
from ._events import TaskEvent
from ._lead_thread import LeadScope
from ._notes import Inbox
from ._result import SubagentResult
from ._runtime import SubagentRuntime
from ._status import SubagentStatus

logger = logging.getLogger("subagent_exec")

#: Finished background tasks whose outcome the lead was not told yet, kept at most.
UNTOLD_LIMIT = 10_000

Emit = Callable[[dict[str, Any]], None]


def _no_listener(event: dict[str, Any]) -> None:
    return None


@dataclass(eq=False)
class BackgroundTask:
    """One background task as its lead knows it."""

    task_id: str
    subagent_type: str
    description: str
    scope: LeadScope
    #: The ``start_task`` call that started it.
    tool_call_id: str
    emit: Emit = _no_listener
    #: None for a sub-agent that cannot take follow-up messages (graph_factory).
    inbox: Inbox | None = None
    #: Set once the runtime has registered the task.
    holder: SubagentResult | None = None
    told: bool = False
    started_at: float = field(default_factory=time.monotonic)

    @property
    def is_terminal(self) -> bool:
        return self.holder is not None and self.holder.is_terminal

    def event(self, kind: str, **data: Any) -> dict[str, Any]:
        """A progress event about this task, shaped like the ``task`` tool's."""
        holder = self.holder
        return {
            "type": kind,
            "task_id": self.task_id,
            "tool_call_id": self.tool_call_id,
            "subagent_type": self.subagent_type,
            "parent_id": None,
            "description": self.description,
            "trace_id": holder.trace_id if holder is not None else None,
            "timestamp": time.time(),
            "background": True,
            "thread_id": self.scope.thread_id,
            **data,
        }

    def terminal_event(self) -> dict[str, Any]:
        holder = self.holder
        assert holder is not None and holder.is_terminal
        status = holder.status
        return self.event(
            f"task_{status.value}",
            status=status.value,
            stopping=False,
            error=holder.error,
            cancel_reason=holder.cancel_reason,
            stop_reason=holder.stop_reason,
            duration_seconds=holder.duration_seconds,
            result=holder.result if status is SubagentStatus.COMPLETED else None,
            usage=holder.usage.to_dict(),
            tree_usage=holder.tree_usage.to_dict(),
        )

    def send(self, event: dict[str, Any]) -> None:
        """Hand ``event`` to the listener; a listener must never break anything."""
        try:
            self.emit(event)
        except Exception:
            logger.exception(
                "[task=%s] could not deliver the %s event", self.task_id, event["type"]
            )


class Board:
    """The background tasks of one runtime (see the module docstring)."""

    def __init__(self, runtime: SubagentRuntime) -> None:
        # Weak: the runtime holds the board (through its event hub), not back.
        self._runtime = weakref.ref(runtime)
        self._lock = threading.Lock()
        self._tasks: dict[str, BackgroundTask] = {}
        self._subscribed = False

    # -- registering ---------------------------------------------------------------

    def begin(self, record: BackgroundTask, limit: int) -> int | None:
        """Register ``record`` before its task is submitted (so none of its
        events is missed), unless its scope already has ``limit`` unfinished
        background tasks: then return that count and register nothing."""
        self._subscribe()
        with self._lock:
            unfinished = sum(
                1 for r in self._tasks.values() if r.scope == record.scope and not r.is_terminal
            )
            if unfinished >= limit:
                return unfinished
            self._tasks[record.task_id] = record
            return None

    def abandon(self, task_id: str) -> None:
        """The task could not be submitted: forget it."""
        with self._lock:
            self._tasks.pop(task_id, None)

    # -- reading -----------------------------------------------------------------------

    def find(self, scope: LeadScope, task_id: str) -> BackgroundTask | None:
        """The task if it belongs to ``scope`` (else None, as for an unknown id)."""
        with self._lock:
            self._prune()
            record = self._tasks.get(task_id)
        if record is None or record.scope != scope or record.holder is None:
            return None
        return record

    def of_scope(self, scope: LeadScope) -> list[BackgroundTask]:
        """The scope's background tasks still known, oldest first."""
        with self._lock:
            self._prune()
            return [
                r for r in self._tasks.values() if r.scope == scope and r.holder is not None
            ]

    def untold(self, scope: LeadScope) -> list[BackgroundTask]:
        """The scope's finished tasks whose outcome the lead was not told yet."""
        return [r for r in self.of_scope(scope) if r.is_terminal and not r.told]

    def unfinished(self, scope: LeadScope) -> list[BackgroundTask]:
        return [r for r in self.of_scope(scope) if not r.is_terminal]

    def inbox_of(self, task_id: str) -> tuple[BackgroundTask, Inbox] | None:
        """The inbox of a running background task (for its own run)."""
        with self._lock:
            record = self._tasks.get(task_id)
        if record is None or record.inbox is None:
            return None
        return record, record.inbox

    def mark_told(self, records: Iterable[BackgroundTask]) -> None:
        """The lead has now seen these tasks' outcomes."""
        chosen = list(records)  # before the lock: ``records`` may be a lazy lookup
        with self._lock:
            for record in chosen:
                if record.is_terminal:
                    record.told = True

    # -- housekeeping --------------------------------------------------------------------

    def _prune(self) -> None:
        """Drop what no one needs any more (under the lock): told tasks the
        runtime has forgotten, and the oldest untold ones beyond the limit."""
        runtime = self._runtime()
        untold: list[str] = []
        for task_id, record in list(self._tasks.items()):
            if not record.is_terminal:
                continue
            if not record.told:
                untold.append(task_id)
            elif runtime is None or runtime.get(task_id) is not record.holder:
                del self._tasks[task_id]
        for task_id in untold[: max(0, len(untold) - UNTOLD_LIMIT)]:
            logger.warning(
                "[task=%s] dropped the outcome of a background task its lead never "
                "asked for (more than %d are waiting)", task_id, UNTOLD_LIMIT,
            )
            del self._tasks[task_id]

    def _subscribe(self) -> None:
        with self._lock:
            if self._subscribed:
                return
            self._subscribed = True
        runtime = self._runtime()
        try:
            if runtime is not None:
                runtime.subscribe(self._on_event)
        except RuntimeClosedError:  # nothing will run on it: submitting will say so
            with self._lock:
                self._subscribed = False

    def _on_event(self, event: TaskEvent) -> None:
        """On the runtime's dispatcher thread: progress events for the listener."""
        with self._lock:
            record = self._tasks.get(event.task_id)
        if record is None:
            return
        if record.holder is None:  # its start_task call has not seen the holder yet
            runtime = self._runtime()
            record.holder = runtime.get(event.task_id) if runtime is not None else None
            if record.holder is None:
                return
        if event.kind == "created":
            record.send(record.event("task_started", status=event.status, depth=1))
        elif event.kind == "ai_message":
            record.send(record.event("task_running", status="running",
                                     message=event.data.get("message")))
        elif event.is_terminal and record.holder is not None and record.holder.is_terminal:
            record.send(record.terminal_event())


_boards: weakref.WeakKeyDictionary[SubagentRuntime, Board] = weakref.WeakKeyDictionary()
_boards_lock = threading.Lock()


def board_for(runtime: SubagentRuntime) -> Board:
    """The runtime's board (made on first use)."""
    with _boards_lock:
        board = _boards.get(runtime)
        if board is None:
            board = _boards[runtime] = Board(runtime)
        return board


def existing_board(runtime: object) -> Board | None:
    """The board of ``runtime`` if one was made (never makes one)."""
    if not isinstance(runtime, SubagentRuntime):
        return None
    with _boards_lock:
        return _boards.get(runtime)
