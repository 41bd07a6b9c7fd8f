"""``MemoryStore``: the task store that keeps everything in this process's
memory (the default of a bare ``SubagentRuntime``): nothing outlives the
process, and every write is applied at once, under the store's own lock.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from types import EllipsisType
from typing import Any

from .._events import TaskEvent
from ._filters import Query, check_retention
from ._protocol import TaskStore
from ._records import (
    INTERRUPTED_ERROR,
    INTERRUPTED_STOP_REASON,
    TERMINAL_VALUES,
    UNFINISHED_VALUES,
    Record,
    TaskPage,
    TaskRecord,
    apply_event,
    check_limit,
    interrupt_record,
    interrupted_event,
    make_cursor,
    new_record,
    parse_cursor,
)


class MemoryStore(TaskStore):
    """Task records and events in dicts; bounded only by retention."""

    flush_interval_seconds = 0.0

    def __init__(self) -> None:
        self._store_id = uuid.uuid4().hex
        self._lock = threading.Lock()
        #: Records by task id, in creation order.
        self._tasks: dict[str, Record] = {}
        #: Event log by seq, in seq order; and each task's seqs.
        self._events: dict[int, TaskEvent] = {}
        self._task_events: dict[str, list[int]] = {}
        self._children: dict[str, list[str]] = {}
        #: Finished tasks, oldest finished first (what retention removes first).
        self._finished: OrderedDict[str, float] = OrderedDict()
        self._last_seq = 0
        self._removed_through = 0
        self._max_tasks: int | None = None
        self._max_age_days: float | None = None

    @property
    def location(self) -> str:
        return "memory"

    @property
    def durable(self) -> bool:
        return False

    @property
    def store_id(self) -> str:
        return self._store_id

    # -- writes --------------------------------------------------------------------------

    def record(self, event: TaskEvent, changes: Mapping[str, Any]) -> None:
        with self._lock:
            record = self._tasks.get(event.task_id)
            if record is None:
                record = self._tasks[event.task_id] = new_record(event)
                if event.parent_id is not None:
                    self._children.setdefault(event.parent_id, []).append(event.task_id)
            apply_event(record, event, changes)
            self._events[event.seq] = event
            self._task_events.setdefault(event.task_id, []).append(event.seq)
            self._last_seq = max(self._last_seq, event.seq)
            if event.is_terminal:
                self._finished[event.task_id] = float(record.get("completed_at") or time.time())
                self._retain_locked()

    def flush(self, timeout: float | None = None) -> bool:
        return True

    # -- reads ---------------------------------------------------------------------------

    def get_task(self, task_id: str) -> TaskRecord | None:
        with self._lock:
            self._expire_locked()
            record = self._tasks.get(task_id)
            if record is None:
                return None
            messages = [
                dict(self._events[seq].data.get("message") or {})
                for seq in self._task_events.get(task_id, ())
                if self._events[seq].kind == "ai_message"
            ]
            return TaskRecord.from_record(
                dict(record),
                children=[c for c in self._children.get(task_id, ()) if c in self._tasks],
                ai_messages=messages,
            )

    def list_tasks(
        self,
        *,
        limit: int = 100,
        cursor: str | None = None,
        parent_id: str | None = None,
        statuses: Iterable[Any] | None = None,
        owner: str | EllipsisType | None = ...,
        root: bool | None = None,
        thread_id: str | None = None,
    ) -> TaskPage:
        check_limit("MemoryStore.list_tasks", limit)
        below = parse_cursor("MemoryStore.list_tasks", cursor)
        query = Query(
            "MemoryStore.list_tasks", parent_id=parent_id, statuses=statuses, owner=owner,
            root=root, thread_id=thread_id,
        )
        found: list[TaskRecord] = []
        more = False
        with self._lock:
            self._expire_locked()
            for record in reversed(self._tasks.values()):
                if below is not None and record["created_seq"] >= below:
                    continue
                if not query.matches(record):
                    continue
                if len(found) == limit:
                    more = True
                    break
                found.append(TaskRecord.from_record(dict(record)))
        next_cursor = make_cursor(found[-1].created_seq) if more and found else None
        return TaskPage(found, next_cursor)

    def read_events(
        self, *, after: int = 0, task_id: str | None = None, limit: int = 1000
    ) -> list[TaskEvent]:
        check_limit("MemoryStore.read_events", limit, maximum=100_000)
        with self._lock:
            if task_id is not None:
                seqs: Iterable[int] = self._task_events.get(task_id, ())
                return [self._events[s] for s in seqs if s > after][:limit]
            newer: list[TaskEvent] = []
            # Readers are usually near the head: walk from the newest end.
            for seq in reversed(self._events):
                if seq <= after:
                    break
                newer.append(self._events[seq])
        newer.reverse()
        return newer[:limit]

    def last_seq(self) -> int:
        with self._lock:
            return self._last_seq

    def removed_through(self) -> int:
        with self._lock:
            return self._removed_through

    # -- maintenance ---------------------------------------------------------------------

    def mark_interrupted(
        self, *, error: str = INTERRUPTED_ERROR, stop_reason: str = INTERRUPTED_STOP_REASON
    ) -> list[TaskEvent]:
        now = time.time()
        marked: list[TaskEvent] = []
        with self._lock:
            unfinished = [r for r in self._tasks.values() if r["status"] in UNFINISHED_VALUES]
            for record in unfinished:
                self._last_seq += 1
                event = interrupted_event(record, seq=self._last_seq, now=now, process_id=None)
                interrupt_record(
                    record, seq=event.seq, now=now, error=error, stop_reason=stop_reason
                )
                self._events[event.seq] = event
                self._task_events.setdefault(event.task_id, []).append(event.seq)
                self._finished[event.task_id] = now
                marked.append(event)
            self._retain_locked()
        return marked

    def set_retention(self, *, max_tasks: int | None, max_age_days: float | None) -> None:
        check_retention("MemoryStore.set_retention", max_tasks, max_age_days)
        with self._lock:
            self._max_tasks, self._max_age_days = max_tasks, max_age_days

    def apply_retention(self) -> int:
        with self._lock:
            return self._retain_locked()

    def delete_task(self, task_id: str) -> bool:
        with self._lock:
            record = self._tasks.get(task_id)
            if record is None or record["status"] not in TERMINAL_VALUES:
                return False
            self._forget_locked(task_id)
            return True

    def stats(self) -> dict[str, int]:
        return {"store_errors": 0, "store_pending": 0, "store_dropped": 0}

    def close(self, timeout: float | None = 10.0) -> None:
        return None

    # -- internals -----------------------------------------------------------------------

    def _retain_locked(self) -> int:
        removed = 0
        if self._max_tasks is not None:
            while len(self._finished) > self._max_tasks:
                self._forget_locked(next(iter(self._finished)))
                removed += 1
        return removed + self._expire_locked()

    def _expire_locked(self) -> int:
        """Forget what finished more than ``max_age_days`` ago (also on reads:
        an age bound holds whether or not tasks keep finishing)."""
        removed = 0
        if self._max_age_days is not None:
            horizon = time.time() - self._max_age_days * 86400.0
            while self._finished:
                oldest, completed = next(iter(self._finished.items()))
                if completed > horizon:
                    break
                self._forget_locked(oldest)
                removed += 1
        return removed

    def _forget_locked(self, task_id: str) -> None:
        self._finished.pop(task_id, None)
        record = self._tasks.pop(task_id)
        for seq in self._task_events.pop(task_id, ()):
            self._events.pop(seq, None)
            self._removed_through = max(self._removed_through, seq)
        self._children.pop(task_id, None)
        parent_id = record.get("parent_id")
        siblings = self._children.get(parent_id) if parent_id is not None else None
        if siblings is not None and task_id in siblings:
            siblings.remove(task_id)
