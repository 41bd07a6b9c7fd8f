"""The result holder: one :class:`SubagentResult` per task, shared by every thread.

All status writes go through the holder's transition methods, which take the
runtime's single lock. The rules they enforce:

* PENDING -> RUNNING happens only if no stop has been requested yet, so a task
  cancelled while queued is never flipped back to RUNNING.
* A stop (CANCELLED by request, TIMED_OUT by deadline) is *latched* first:
  the first latch wins and decides the terminal status. The status itself is
  written when the sub-agent's coroutine has unwound (its ``finally:`` blocks
  have run), except for a PENDING task, which is stopped at once.
* The first terminal write wins; a later completion, failure or stop is
  ignored, and ``completed_at`` is set together with the status.
* AI messages are recorded until a stop is requested or the task ends,
  whichever comes first: nothing a run produces after its stop was asked for
  is recorded or announced, except, with ``cancel_grace_seconds`` > 0, what
  the call the grace period lets finish produces.

Reading without the lock: each transition writes its payload first and the
status last, so a thread that sees a status also sees what came with it
(``started_at`` with RUNNING; ``result``, ``error``, ``stop_reason`` and
``completed_at`` with a terminal status), and ``wait()`` returns only after
all of it was written. ``to_dict()`` takes the lock and is always consistent.

Who may call the transitions: the runtime's registry (which owns holders) and
the task ticket it hands to a backend (``_contract.TaskTicket``); nothing else.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ._events import TaskEvent
from ._meter import BudgetMeter
from ._status import SubagentStatus
from ._store import TaskRecord
from ._usage import NO_USAGE, Usage

#: Called under the lock with (event kind, holder, data) after each transition.
EventHook = Callable[[str, "SubagentResult", dict[str, Any]], None]

_STOP_STATUSES = (SubagentStatus.CANCELLED, SubagentStatus.TIMED_OUT)


def _no_event(kind: str, holder: SubagentResult, data: dict[str, Any]) -> None:
    return None


def _now() -> datetime:
    return datetime.now(UTC)


class SubagentResult:
    """Everything known about one sub-agent task, live while it runs.

    Read its attributes from any thread; never assign them. ``wait()`` blocks
    until the status is terminal (it waits on an event, it does not poll).
    """

    def __init__(
        self,
        *,
        task_id: str,
        subagent_name: str,
        task: str,
        trace_id: str,
        parent_id: str | None = None,
        depth: int = 1,
        lock: threading.RLock | None = None,
        on_event: EventHook = _no_event,
        owner: str | None = None,
        thread_id: str | None = None,
        background: bool = False,
        resumed_from: str | None = None,
    ) -> None:
        self.task_id = task_id
        #: The stopped (or finished) task this one goes on from (``resume``).
        self.resumed_from = resumed_from
        self.trace_id = trace_id
        self.parent_id = parent_id
        self.subagent_name = subagent_name
        self.task = task
        self.depth = depth
        self.owner = owner
        #: The lead agent's conversation this task belongs to (its LangGraph
        #: ``thread_id``, or the id of the lead's run); ``cancel_thread`` stops by it.
        self.thread_id = thread_id
        #: Started in the background (``start_task``): a root that outlives the
        #: lead's run, reported to the lead when it ends (docs/background.md).
        self.background = background
        self.children: list[str] = []
        self.created_at: datetime = _now()
        self.started_at: datetime | None = None
        self.completed_at: datetime | None = None
        self.result: str | None = None
        self.error: str | None = None
        #: Why a run that ended on its own ended early ("max_turns", ...), else None.
        self.stop_reason: str | None = None
        self.cancel_reason: str | None = None
        self.ai_messages: list[dict[str, Any]] = []
        #: Times the run went on from its last checkpoint after a transient error.
        self.resumes = 0
        #: True for a task read back from a store (``from_record``), not a live one.
        self.stored = False
        #: Set as soon as a stop is requested (cancel or deadline). Checked by the
        #: sub-agent before streaming, at every chunk and at every model/tool call.
        self.cancel_event = threading.Event()
        #: What this task's own model calls used (one per AI message recorded).
        self.usage: Usage = NO_USAGE
        #: What this task and every descendant used, kept as they are charged
        #: (so descendants forgotten by retention still count).
        self.tree_usage: Usage = NO_USAGE
        #: The meters of every budget the task draws on: its own budgets first,
        #: then those it was given (a lead run's), then its ancestors'.
        self.budgets: tuple[BudgetMeter, ...] = ()
        #: The stop_reason a latched stop writes ("budget"), whatever the run says.
        self._latched_stop_reason: str | None = None
        self._status = SubagentStatus.PENDING
        self._stop_status: SubagentStatus | None = None
        self._done = threading.Event()
        self._lock = lock if lock is not None else threading.RLock()
        self._on_event = on_event
        self._ai_message_ids: set[str] = set()
        # Invariant: every event published for this task, in seq order; appended
        # under the lock by the registry, so a waiter that reads it and starts
        # watching under the same lock sees each event exactly once.
        self._history: list[TaskEvent] = []

    @classmethod
    def from_record(
        cls, record: TaskRecord, events: list[TaskEvent] | None = None
    ) -> SubagentResult:
        """A task read back from a store (memory no longer holds it): its fields
        as last recorded, and its events (``events``; else its last one, rebuilt
        from the record). It is detached: nothing changes it any more."""
        holder = cls(
            task_id=record.task_id,
            subagent_name=record.subagent_name,
            task=record.task,
            trace_id=record.trace_id,
            parent_id=record.parent_id,
            depth=record.depth,
            owner=record.owner,
            thread_id=record.thread_id,
            background=bool(record.extra.get("background", False)),
            resumed_from=record.extra.get("resumed_from"),
        )
        holder.refresh_from_record(record, events)
        return holder

    def refresh_from_record(
        self, record: TaskRecord, events: list[TaskEvent] | None = None
    ) -> None:
        """Take a newer record of this same detached task (``stored``): one
        another process runs, read from the store again (``_cluster/``)."""
        if record.task_id != self.task_id:
            raise ValueError(
                f"SubagentResult.refresh_from_record: record must be of task {self.task_id!r}, "
                f"got one of {record.task_id!r}"
            )
        self.children = list(record.children)
        self.created_at = record.created_at
        self.started_at = record.started_at
        self.completed_at = record.completed_at
        self.result, self.error = record.result, record.error
        self.stop_reason, self.cancel_reason = record.stop_reason, record.cancel_reason
        self.ai_messages = list(record.ai_messages or [])
        if record.usage:
            self.usage, self.tree_usage = Usage.stored(record.usage)
        self.stored = True
        if events is None and record.is_terminal:
            events = [
                TaskEvent(
                    seq=record.last_seq,
                    kind=record.status.value,
                    task_id=record.task_id,
                    parent_id=record.parent_id,
                    trace_id=record.trace_id,
                    subagent_name=record.subagent_name,
                    status=record.status.value,
                    timestamp=(record.completed_at or record.created_at).timestamp(),
                    owner=record.owner,
                )
            ]
        self._history = list(events or [])
        self._status = record.status
        if record.is_terminal:
            self._done.set()

    # -- reading ---------------------------------------------------------------

    @property
    def status(self) -> SubagentStatus:
        return self._status

    @property
    def is_terminal(self) -> bool:
        return self._status.is_terminal

    @property
    def stopping(self) -> bool:
        """A stop was requested and the sub-agent is still unwinding."""
        return self._stop_status is not None and not self._status.is_terminal

    @property
    def duration_seconds(self) -> float | None:
        """Seconds from RUNNING to terminal (or to now while running)."""
        if self.started_at is None:
            return None
        end = self.completed_at or _now()
        return (end - self.started_at).total_seconds()

    @property
    def log_prefix(self) -> str:
        """``[task=<id> trace=<id>]``: how every log line about this task starts."""
        return f"[task={self.task_id} trace={self.trace_id}]"

    def last_ai_text(self) -> str | None:
        """The text of the last AI message recorded so far, if any has text."""
        with self._lock:
            return self._last_text_locked()

    def _last_text_locked(self) -> str | None:
        for message in reversed(self.ai_messages):
            text = message.get("text")
            if text:
                return str(text)
        return None

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the status is terminal; False if ``timeout`` ran out first."""
        if timeout is not None:
            timeout = min(timeout, threading.TIMEOUT_MAX)
        return self._done.wait(timeout)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready snapshot (taken under the lock, so it is consistent)."""
        with self._lock:
            return {
                "task_id": self.task_id,
                "trace_id": self.trace_id,
                "parent_id": self.parent_id,
                "children": list(self.children),
                "subagent_name": self.subagent_name,
                "task": self.task,
                "depth": self.depth,
                "owner": self.owner,
                "thread_id": self.thread_id,
                "background": self.background,
                "resumed_from": self.resumed_from,
                "status": self._status.value,
                "stopping": self.stopping,
                "result": self.result,
                "error": self.error,
                "stop_reason": self.stop_reason,
                "cancel_reason": self.cancel_reason,
                "created_at": self.created_at.isoformat(),
                "started_at": self.started_at.isoformat() if self.started_at else None,
                "completed_at": self.completed_at.isoformat() if self.completed_at else None,
                "duration_seconds": self.duration_seconds,
                "ai_message_count": len(self.ai_messages),
                "usage": self.usage.to_dict(),
                "tree_usage": self.tree_usage.to_dict(),
            }

    def __repr__(self) -> str:
        return (
            f"<SubagentResult {self.task_id} {self.subagent_name!r} {self._status.value}"
            f"{' stopping' if self.stopping else ''}>"
        )

    # -- transitions (library-internal; every one takes the lock) ---------------

    def _start(self) -> bool:
        """PENDING -> RUNNING, unless a stop was latched or the task is not PENDING."""
        with self._lock:
            if self._status is not SubagentStatus.PENDING or self._stop_status is not None:
                return False
            self.started_at = _now()
            self._status = SubagentStatus.RUNNING  # last: see "Reading without the lock"
            self._on_event("started", self, {})
            return True

    def _latch_stop(
        self,
        status: SubagentStatus,
        reason: str,
        *,
        error: str | None = None,
        stop_reason: str | None = None,
    ) -> bool:
        """Request a stop. The first latch decides the terminal status:
        CANCELLED, TIMED_OUT, or FAILED (a spent budget, with its ``error``; the
        partial answer is kept in ``result``). ``stop_reason`` is written at the
        end whatever the run reports.

        A PENDING task becomes terminal at once. Returns False when the task is
        already terminal or a stop was already latched.
        """
        if status not in _STOP_STATUSES and not (
            status is SubagentStatus.FAILED and error is not None
        ):
            raise ValueError(f"a stop must be CANCELLED, TIMED_OUT or FAILED with an error, "
                             f"not {status}")
        with self._lock:
            if self._status.is_terminal or self._stop_status is not None:
                return False
            self._stop_status = status
            self.cancel_reason = reason
            self._latched_stop_reason = stop_reason
            if error is not None:
                self.error = error
            elif status is SubagentStatus.TIMED_OUT:
                self.error = f"TimeoutError: {reason}"
            self.cancel_event.set()
            self._on_event("cancel_requested", self, {"reason": reason, "as": status.value})
            if self._status is SubagentStatus.PENDING:
                self._finish(status)
            return True

    def _finish(
        self,
        status: SubagentStatus,
        *,
        result: str | None = None,
        error: str | None = None,
        stop_reason: str | None = None,
    ) -> bool:
        """Write the terminal status. First write wins; a latched stop wins over
        COMPLETED/FAILED. Returns False if the task was already terminal."""
        if not status.is_terminal:
            raise ValueError(f"{status} is not a terminal status")
        with self._lock:
            if self._status.is_terminal:
                return False
            final = self._stop_status or status
            self.completed_at = _now()
            if result is not None:
                self.result = result
            elif self._stop_status is SubagentStatus.FAILED:
                self.result = self._last_text_locked()  # the partial answer
            if final is SubagentStatus.FAILED and self._stop_status is not final:
                self.error = error
            elif final is status and error is not None and self.error is None:
                # A stop that ended abnormally (e.g. its cleanup timed out)
                # says so; an error raised while unwinding a stop does not
                # turn into the stop's error.
                self.error = error
            if self._latched_stop_reason is not None:
                self.stop_reason = self._latched_stop_reason
            elif stop_reason is not None:
                self.stop_reason = stop_reason
            self._status = final  # last: see "Reading without the lock"
            self._done.set()
            self._on_event(
                final.value,
                self,
                {"usage": self.usage.to_dict(), "tree_usage": self.tree_usage.to_dict()},
            )
            return True

    def _add_tree_usage(self, usage: Usage) -> None:
        """Count one model call of a descendant in ``tree_usage`` (the runtime
        calls it under the lock)."""
        with self._lock:
            self.tree_usage = self.tree_usage + usage

    def _record_event(self, event: TaskEvent) -> None:
        """Keep ``event`` in this task's history (the registry calls it under the lock)."""
        self._history.append(event)

    def _events_so_far(self) -> list[TaskEvent]:
        """This task's events up to now (call under the lock to pair with a watch)."""
        with self._lock:
            return list(self._history)

    def _note_resume(self, attempt: int, error: str) -> None:
        """The run goes on from its last checkpoint (``max_resumes``): a ``resumed`` event."""
        with self._lock:
            if self._status.is_terminal or self._stop_status is not None:
                return
            self.resumes = attempt
            self._on_event("resumed", self, {"attempt": attempt, "error": error})

    def _add_ai_message(
        self,
        message: dict[str, Any],
        message_id: str,
        *,
        after_stop: bool = False,
        usage: Usage | None = None,
    ) -> bool:
        """Record an AI message once (by id). False for a duplicate, after the
        end, or once a stop was requested (unless ``after_stop``: a grace period
        lets the call in flight at the stop finish, and its message counts).
        ``usage``: what its model call used, counted with it (and announced in
        the ``ai_message`` event, so a page shows usage live)."""
        with self._lock:
            if (
                message_id in self._ai_message_ids
                or self._status.is_terminal
                or (self._stop_status is not None and not after_stop)
            ):
                return False
            self._ai_message_ids.add(message_id)
            self.ai_messages.append(message)
            data: dict[str, Any] = {"message": message}
            if usage is not None:
                self.usage = self.usage + usage
                self.tree_usage = self.tree_usage + usage
                data["usage"] = self.usage.to_dict()
            self._on_event("ai_message", self, data)
            return True
