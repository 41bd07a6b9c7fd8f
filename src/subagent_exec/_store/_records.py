"""What a store keeps of a task, and the one rule every store folds events by.

A stored task is a *record*: a JSON-ready dict with every field of a
``SubagentResult`` a user can read (and room for later ones: ``config_name``,
``thread_id``, ``usage``, ``process_id`` ...). Stores build it from the task's
events and the changes the runtime hands over with each one
(:func:`apply_event`), so every store derives a record the same way and a
record always agrees with its last event (``last_seq``, ``status``).

:class:`TaskRecord` is the typed, read-only view handed back to callers;
:class:`TaskPage` one page of a newest-first listing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .._events import TaskEvent
from .._status import SubagentStatus
from .._usage import Usage

#: What a task that was unfinished when its process died becomes on restart.
INTERRUPTED_STOP_REASON = "interrupted"
INTERRUPTED_ERROR = "InterruptedError: the process running this task stopped before it ended"

#: Fields of a record that the runtime never changes after ``created``.
IDENTITY_FIELDS = ("task_id", "trace_id", "parent_id", "subagent_name", "owner")
#: Record fields that are timestamps (seconds since the epoch in the record).
TIME_FIELDS = ("created_at", "started_at", "completed_at")
TERMINAL_VALUES = frozenset(s.value for s in SubagentStatus if s.is_terminal)
UNFINISHED_VALUES = frozenset(s.value for s in SubagentStatus if not s.is_terminal)

Record = dict[str, Any]


def new_record(event: TaskEvent) -> Record:
    """The record a ``created`` event starts (or a bare one for a task whose
    ``created`` this store never saw: its later events still land somewhere)."""
    return {
        "task_id": event.task_id,
        "trace_id": event.trace_id,
        "parent_id": event.parent_id,
        "subagent_name": event.subagent_name,
        "owner": event.owner,
        "task": "",
        "depth": 1,
        "status": event.status,
        "result": None,
        "error": None,
        "stop_reason": None,
        "cancel_reason": None,
        "created_at": event.timestamp,
        "started_at": None,
        "completed_at": None,
        "ai_message_count": 0,
        "created_seq": event.seq,
        "last_seq": event.seq,
    }


def apply_event(record: Record, event: TaskEvent, changes: Mapping[str, Any]) -> None:
    """Fold one event (and the runtime's ``changes`` that came with it) into
    ``record``: the status and ``last_seq`` are the event's, whatever the
    changes say, so a record never runs ahead of, or behind, its last event."""
    if changes:
        record.update(changes)
    if event.kind == "ai_message":
        record["ai_message_count"] = int(record.get("ai_message_count") or 0) + 1
    elif event.kind == "started" and record.get("started_at") is None:
        record["started_at"] = event.timestamp
    elif event.is_terminal and record.get("completed_at") is None:
        record["completed_at"] = event.timestamp
    record["status"] = event.status
    record["last_seq"] = event.seq


def interrupt_record(record: Record, *, seq: int, now: float, error: str, stop_reason: str) -> None:
    """Mark an unfinished record FAILED as interrupted (its process died)."""
    record["status"] = SubagentStatus.FAILED.value
    record["error"] = error
    record["stop_reason"] = stop_reason
    record["completed_at"] = now
    record["last_seq"] = seq


def interrupted_event(
    record: Record, *, seq: int, now: float, process_id: str | None
) -> TaskEvent:
    """The terminal event appended for an interrupted task."""
    data: dict[str, Any] = {"interrupted": True}
    if record.get("process_id") is not None:
        data["process_id"] = record["process_id"]
    if process_id is not None:
        data["noticed_by"] = process_id
    return TaskEvent(
        seq=seq,
        kind=SubagentStatus.FAILED.value,
        task_id=record["task_id"],
        parent_id=record.get("parent_id"),
        trace_id=record.get("trace_id") or "",
        subagent_name=record.get("subagent_name") or "",
        status=SubagentStatus.FAILED.value,
        timestamp=now,
        data=data,
        owner=record.get("owner"),
    )


# -- JSON --------------------------------------------------------------------------------


def dumps(value: object) -> str:
    """JSON that every backend stores as plain text: ASCII only, so lone
    surrogates and NUL characters (which SQLite's UTF-8 and PostgreSQL's text
    refuse) travel escaped, and anything not JSON-ready as its ``str``."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"), default=str)


def loads(text: str) -> Any:
    return json.loads(text)


def event_from_dict(data: Mapping[str, Any]) -> TaskEvent:
    return TaskEvent(
        seq=int(data["seq"]),
        kind=str(data["kind"]),
        task_id=str(data["task_id"]),
        parent_id=data.get("parent_id"),
        trace_id=str(data.get("trace_id") or ""),
        subagent_name=str(data.get("subagent_name") or ""),
        status=str(data["status"]),
        timestamp=float(data["timestamp"]),
        data=dict(data.get("data") or {}),
        owner=data.get("owner"),
    )


_ESCAPED = "\x01"


def key(value: str | None) -> str | None:
    """A task id, owner or thread id as a key column holds it: itself, unless
    SQL text cannot hold it (a lone surrogate, a NUL), then escaped, reversibly
    and the same way for writes and lookups."""
    if value is None:
        return None
    if value.isascii():
        if "\x00" not in value and not value.startswith(_ESCAPED):
            return value
    else:
        try:
            value.encode("utf-8")
            if "\x00" not in value:
                return value
        except UnicodeEncodeError:
            pass
    return _ESCAPED + dumps(value)


# -- paging ------------------------------------------------------------------------------


def make_cursor(created_seq: int) -> str:
    return f"c{created_seq}"


def parse_cursor(owner: str, cursor: object) -> int | None:
    """The ``created_seq`` a page starts below (None: from the newest)."""
    if cursor is None:
        return None
    if not isinstance(cursor, str):
        raise TypeError(f"{owner}.cursor must be a string from a previous page or None, "
                        f"got {cursor!r}")
    digits = cursor[1:]
    if not cursor.startswith("c") or not digits.isascii() or not digits.isdigit() \
            or len(digits) > 19:
        raise ValueError(f"{owner}.cursor must be the next_cursor of a previous page, "
                         f"got {cursor!r}")
    return int(digits)


def check_limit(owner: str, limit: object, *, maximum: int = 10_000) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(f"{owner}.limit must be an int from 1 to {maximum}, got {limit!r}")
    if not 1 <= limit <= maximum:
        raise ValueError(f"{owner}.limit must be an int from 1 to {maximum}, got {limit!r}")
    return limit


# -- the typed views ---------------------------------------------------------------------


def _time(value: object) -> datetime | None:
    if value is None:
        return None
    return datetime.fromtimestamp(float(value), UTC)  # type: ignore[arg-type]


@dataclass(frozen=True)
class TaskRecord:
    """A task as a store keeps it: what its ``SubagentResult`` said last.

    ``children`` and ``ai_messages`` are filled by ``get_task`` (a listing
    leaves them out: they can be long). ``extra`` holds any field this version
    does not name (written by a newer one, or by a host)."""

    task_id: str
    trace_id: str
    parent_id: str | None
    subagent_name: str
    task: str
    depth: int
    owner: str | None
    status: SubagentStatus
    result: str | None
    error: str | None
    stop_reason: str | None
    cancel_reason: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    ai_message_count: int
    created_seq: int
    last_seq: int
    config_name: str | None = None
    thread_id: str | None = None
    usage: dict[str, Any] | None = None
    process_id: str | None = None
    children: list[str] = field(default_factory=list)
    ai_messages: list[dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.completed_at is None:
            return None
        return (self.completed_at - self.started_at).total_seconds()

    @classmethod
    def from_record(
        cls,
        record: Mapping[str, Any],
        *,
        children: Iterable[str] = (),
        ai_messages: list[dict[str, Any]] | None = None,
    ) -> TaskRecord:
        named = {f for f in cls.__dataclass_fields__ if f not in ("children", "ai_messages")}
        extra = {k: v for k, v in record.items() if k not in named}
        return cls(
            task_id=record["task_id"],
            trace_id=record.get("trace_id") or "",
            parent_id=record.get("parent_id"),
            subagent_name=record.get("subagent_name") or "",
            task=record.get("task") or "",
            depth=int(record.get("depth") or 1),
            owner=record.get("owner"),
            status=SubagentStatus(record["status"]),
            result=record.get("result"),
            error=record.get("error"),
            stop_reason=record.get("stop_reason"),
            cancel_reason=record.get("cancel_reason"),
            created_at=_time(record.get("created_at")) or datetime.fromtimestamp(0, UTC),
            started_at=_time(record.get("started_at")),
            completed_at=_time(record.get("completed_at")),
            ai_message_count=int(record.get("ai_message_count") or 0),
            created_seq=int(record.get("created_seq") or 0),
            last_seq=int(record.get("last_seq") or 0),
            config_name=record.get("config_name"),
            thread_id=record.get("thread_id"),
            usage=record.get("usage"),
            process_id=record.get("process_id"),
            children=list(children),
            ai_messages=ai_messages,
            extra=extra,
        )

    def to_dict(self) -> dict[str, Any]:
        """The same keys as ``SubagentResult.to_dict()`` (plus what only a
        store knows), JSON-ready."""
        own, tree = Usage.stored(self.usage)
        return {
            "task_id": self.task_id,
            "trace_id": self.trace_id,
            "parent_id": self.parent_id,
            "children": list(self.children),
            "subagent_name": self.subagent_name,
            "task": self.task,
            "depth": self.depth,
            "owner": self.owner,
            "status": self.status.value,
            "stopping": False,
            "result": self.result,
            "error": self.error,
            "stop_reason": self.stop_reason,
            "cancel_reason": self.cancel_reason,
            "created_at": self.created_at.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
            "duration_seconds": self.duration_seconds,
            "ai_message_count": self.ai_message_count,
            "config_name": self.config_name,
            "thread_id": self.thread_id,
            "background": bool(self.extra.get("background", False)),
            "resumed_from": self.extra.get("resumed_from"),
            # In the public form, as SubagentResult.to_dict() answers it.
            "usage": own.to_dict(),
            "tree_usage": tree.to_dict(),
        }


@dataclass(frozen=True)
class TaskPage:
    """One page of a listing, newest first; pass ``next_cursor`` back for the
    next (older) page; None when this page is the last."""

    tasks: list[TaskRecord]
    next_cursor: str | None
