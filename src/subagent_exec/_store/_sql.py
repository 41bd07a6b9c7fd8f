"""``SqlStore``: what the SQLite and PostgreSQL stores share: the SQL of
writes, reads, retention and restart marking, over a small connection
interface each of them implements (:class:`Tx`, ``_write_tx``, ``_read_tx``).

Writes go through the :class:`~._writer.WriteBuffer` (a background writer
that batches); reads merge what the buffer has not written yet with what the
database holds, preferring whichever copy of a record is further along
(``last_seq``), so a store always reads its own writes.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from abc import abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from types import EllipsisType
from typing import Any

from .._events import TaskEvent
from ._filters import Query, check_retention
from ._protocol import TaskStore
from ._records import (
    INTERRUPTED_ERROR,
    INTERRUPTED_STOP_REASON,
    TERMINAL_VALUES,
    Record,
    TaskPage,
    TaskRecord,
    apply_event,
    check_limit,
    dumps,
    event_from_dict,
    interrupt_record,
    interrupted_event,
    key,
    loads,
    make_cursor,
    new_record,
    parse_cursor,
)
from ._statements import (
    INSERT_EVENT,
    UNFINISHED_SQL,
    UPSERT_TASK,
    Tx,
    delete_tasks,
    doomed_by_retention,
    meta_int,
    task_row,
    where,
)
from ._writer import Batch, Pending, WriteBuffer

#: Retention runs after a write that ended tasks, at most this often.
RETENTION_INTERVAL_SECONDS = 1.0


def new_process_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class SqlStore(TaskStore):
    """The shared part of ``SqliteStore`` and ``PostgresStore``."""

    flush_interval_seconds: float
    _location: str

    # -- what a dialect provides ---------------------------------------------------------

    @abstractmethod
    def _write_tx(self) -> AbstractContextManager[Tx]:
        """A transaction on the writer's connection (writer thread only)."""

    @abstractmethod
    def _read_tx(self) -> AbstractContextManager[Tx]:
        """A transaction for reads (any thread)."""

    @abstractmethod
    def _close_connections(self) -> None: ...

    def _lock_maintenance(self, tx: Tx) -> None:
        """Serialise maintenance with other processes (PostgreSQL: a lock)."""
        return None

    def _before_events(self, tx: Tx) -> None:
        """Before a batch's events are inserted (PostgreSQL shared by several
        processes: commit them in the order the feed reads them, and tell)."""
        return None

    # -- opening -------------------------------------------------------------------------

    def _start(self, *, name: str, flush_interval: float) -> None:
        """After the schema is in place: load counters, register this process,
        start the writer."""
        self.flush_interval_seconds = flush_interval
        self.process_id = new_process_id()
        now = time.time()
        with self._write_tx() as tx:
            self._lock_maintenance(tx)
            found = tx.q("SELECT value FROM subagent_meta WHERE key = 'store_id'")
            self._store_id = str(found[0][0]) if found else uuid.uuid4().hex
            if not found:
                tx.q("INSERT INTO subagent_meta (key, value) VALUES ('store_id', ?)",
                     (self._store_id,))
            self._removed = meta_int(tx, "removed_through")
            top = tx.q("SELECT max(seq) FROM subagent_events")[0][0]
            self._last_seq = max(int(top or 0), self._removed)
            tx.q(
                "INSERT INTO subagent_processes (process_id, host, pid, started_at, "
                "heartbeat_at) VALUES (?, ?, ?, ?, ?)",
                (self.process_id, socket.gethostname(), os.getpid(), now, now),
            )
        self._max_tasks: int | None = None
        self._max_age_days: float | None = None
        self._retained_at = 0.0
        #: Tasks removed by retention so far (written by the writer thread only).
        self._removed_tasks = 0
        self._buffer = WriteBuffer(
            name=name,
            location=self._location,
            write=self._write,
            flush_interval=flush_interval,
            process_id=self.process_id,
            after_write=self._after_write,
        )

    @property
    def location(self) -> str:
        return self._location

    @property
    def durable(self) -> bool:
        return True

    @property
    def store_id(self) -> str:
        return self._store_id

    # -- writes --------------------------------------------------------------------------

    def record(self, event: TaskEvent, changes: Mapping[str, Any]) -> None:
        if event.seq > self._last_seq:
            self._last_seq = event.seq
        self._buffer.record(event, changes)

    def flush(self, timeout: float | None = None) -> bool:
        return self._buffer.flush(timeout)

    def _write(self, batch: Batch) -> None:
        """One batch, one transaction (the writer thread)."""
        with self._write_tx() as tx:
            if batch.events:
                self._before_events(tx)
                tx.many(
                    INSERT_EVENT,
                    [(e.seq, key(e.task_id), e.kind, dumps(e.to_dict())) for e in batch.events],
                )
            rows = []
            for task_id, pending in batch.records.items():
                record = pending.record
                if pending.partial:
                    record = self._merge_partial(tx, task_id, pending)
                rows.append(task_row(record))
            if rows:
                tx.many(UPSERT_TASK, rows)

    def _merge_partial(self, tx: Tx, task_id: str, pending: Pending) -> Record:
        found = tx.q("SELECT record FROM subagent_tasks WHERE task_id = ?", (key(task_id),))
        record: Record = loads(found[0][0]) if found else new_record(pending.ops[0][0])
        for event, changes in pending.ops:
            apply_event(record, event, changes)
        return record

    def _after_write(self, batch: Batch) -> None:
        if self._max_tasks is None and self._max_age_days is None:
            return
        if not any(e.is_terminal for e in batch.events):
            return
        if time.monotonic() - self._retained_at < RETENTION_INTERVAL_SECONDS:
            return
        self._retain()

    # -- reads ---------------------------------------------------------------------------

    def get_task(self, task_id: str) -> TaskRecord | None:
        pending = self._buffer.overlay(task_id)
        overlay = self._buffer.overlay_records(lambda r: r.get("parent_id") == task_id)
        unwritten = [e for e in self._buffer.unwritten_events() if e.task_id == task_id]
        with self._read_tx() as tx:
            found = tx.q("SELECT record FROM subagent_tasks WHERE task_id = ?", (key(task_id),))
            stored: Record | None = loads(found[0][0]) if found else None
            children = tx.q(
                "SELECT record FROM subagent_tasks WHERE parent_id = ? ORDER BY created_seq",
                (key(task_id),),
            )
            events = tx.q(
                "SELECT event FROM subagent_events WHERE task_id = ? AND kind = 'ai_message' "
                "ORDER BY seq",
                (key(task_id),),
            )
        record = _newest(stored, pending)
        if record is None:
            return None
        kids = {loads(row[0])["task_id"]: int(loads(row[0])["created_seq"]) for row in children}
        for child in overlay:
            kids.setdefault(child["task_id"], int(child["created_seq"]))
        messages = {e.seq: e for e in map(event_from_dict, map(loads, (r[0] for r in events)))}
        for event in unwritten:
            if event.kind == "ai_message":
                messages.setdefault(event.seq, event)
        return TaskRecord.from_record(
            record,
            children=sorted(kids, key=kids.__getitem__),
            ai_messages=[dict(messages[s].data.get("message") or {}) for s in sorted(messages)],
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
        name = f"{type(self).__name__}.list_tasks"
        check_limit(name, limit)
        below = parse_cursor(name, cursor)
        query = Query(
            name, parent_id=parent_id, statuses=statuses, owner=owner, root=root,
            thread_id=thread_id,
        )
        overlay = {r["task_id"]: r for r in self._buffer.overlay_records(lambda r: True)}
        clause, params = where(query, below)
        with self._read_tx() as tx:
            rows = tx.q(
                f"SELECT record FROM subagent_tasks {clause} ORDER BY created_seq DESC LIMIT ?",
                (*params, limit + 1),
            )
        merged: dict[str, Record] = {}
        for row in rows:
            record = loads(row[0])
            merged[record["task_id"]] = record
        for task_id, record in overlay.items():
            current = merged.get(task_id)
            if current is None or int(record["last_seq"]) >= int(current["last_seq"]):
                merged[task_id] = record
        chosen = sorted(
            (
                r for r in merged.values()
                if query.matches(r) and (below is None or int(r["created_seq"]) < below)
            ),
            key=lambda r: -int(r["created_seq"]),
        )
        more = len(rows) > limit or len(chosen) > limit
        page = [TaskRecord.from_record(r) for r in chosen[:limit]]
        return TaskPage(page, make_cursor(page[-1].created_seq) if more and page else None)

    def read_events(
        self, *, after: int = 0, task_id: str | None = None, limit: int = 1000
    ) -> list[TaskEvent]:
        check_limit(f"{type(self).__name__}.read_events", limit, maximum=100_000)
        unwritten = [
            e for e in self._buffer.unwritten_events()
            if e.seq > after and (task_id is None or e.task_id == task_id)
        ]
        sql = "SELECT event FROM subagent_events WHERE seq > ?"
        params: list[Any] = [after]
        if task_id is not None:
            sql += " AND task_id = ?"
            params.append(key(task_id))
        with self._read_tx() as tx:
            rows = tx.q(sql + " ORDER BY seq LIMIT ?", (*params, limit))
        events = {e.seq: e for e in (event_from_dict(loads(r[0])) for r in rows)}
        for event in unwritten:
            events.setdefault(event.seq, event)
        return [events[s] for s in sorted(events)[:limit]]

    def last_seq(self) -> int:
        return self._last_seq

    def removed_through(self) -> int:
        return self._removed

    # -- maintenance ---------------------------------------------------------------------

    def mark_interrupted(
        self, *, error: str = INTERRUPTED_ERROR, stop_reason: str = INTERRUPTED_STOP_REASON
    ) -> list[TaskEvent]:
        self._buffer.flush()

        def job() -> list[TaskEvent]:
            now = time.time()
            marked: list[TaskEvent] = []
            with self._write_tx() as tx:
                self._lock_maintenance(tx)
                top = tx.q("SELECT max(seq) FROM subagent_events")[0][0]
                seq = max(int(top or 0), meta_int(tx, "removed_through"), self._last_seq)
                rows = tx.q(
                    f"SELECT record FROM subagent_tasks WHERE status IN {UNFINISHED_SQL} "
                    "ORDER BY created_seq"
                )
                records = [loads(row[0]) for row in rows]
                for record in records:
                    seq += 1
                    event = interrupted_event(
                        record, seq=seq, now=now, process_id=self.process_id
                    )
                    interrupt_record(
                        record, seq=seq, now=now, error=error, stop_reason=stop_reason
                    )
                    marked.append(event)
                if marked:
                    tx.many(
                        INSERT_EVENT,
                        [(e.seq, key(e.task_id), e.kind, dumps(e.to_dict())) for e in marked],
                    )
                    tx.many(UPSERT_TASK, [task_row(r) for r in records])
                self._last_seq = max(self._last_seq, seq)
            self._buffer.forget([e.task_id for e in marked])
            return marked

        return self._buffer.run_job(job)

    def set_retention(self, *, max_tasks: int | None, max_age_days: float | None) -> None:
        check_retention(f"{type(self).__name__}.set_retention", max_tasks, max_age_days)
        self._max_tasks, self._max_age_days = max_tasks, max_age_days

    def apply_retention(self) -> int:
        # Counted from here: the flush may itself trigger the writer's retention.
        before = self._removed_tasks
        self._buffer.flush()
        self._buffer.run_job(self._retain)
        return self._removed_tasks - before

    def delete_task(self, task_id: str) -> bool:
        self._buffer.flush()
        pending = self._buffer.overlay(task_id)
        if pending is not None and pending.record.get("status") not in TERMINAL_VALUES:
            return False

        def job() -> bool:
            with self._write_tx() as tx:
                found = tx.q(
                    "SELECT status FROM subagent_tasks WHERE task_id = ?", (key(task_id),)
                )
                if not found or found[0][0] not in TERMINAL_VALUES:
                    return False
                self._delete(tx, [key(task_id)])
                return True

        return self._buffer.run_job(job)

    def stats(self) -> dict[str, int]:
        return self._buffer.stats()

    def close(self, timeout: float | None = 10.0) -> None:
        buffer = getattr(self, "_buffer", None)
        if buffer is None:
            self._close_connections()
            return
        buffer.close(timeout)
        try:
            with self._write_tx() as tx:
                tx.q(
                    "UPDATE subagent_processes SET stopped_at = ? WHERE process_id = ?",
                    (time.time(), self.process_id),
                )
        except Exception:  # the database is gone: nothing more to say to it
            pass
        self._close_connections()

    # -- internals (writer thread) -------------------------------------------------------

    def _retain(self) -> int:
        self._retained_at = time.monotonic()
        with self._write_tx() as tx:
            doomed = doomed_by_retention(tx, self._max_tasks, self._max_age_days)
            if doomed:
                self._delete(tx, doomed)
        self._removed_tasks += len(doomed)
        return len(doomed)

    def _delete(self, tx: Tx, task_keys: Sequence[str | None]) -> None:
        self._removed = delete_tasks(tx, task_keys, self._removed)


def _newest(stored: Record | None, pending: Pending | None) -> Record | None:
    """The copy of a record that is further along (the overlay on a tie)."""
    if pending is None:
        return stored
    record = pending.record
    if pending.partial:
        if stored is None:
            return None
        record = dict(stored)
        for event, changes in pending.ops:
            apply_event(record, event, changes)
        return record
    if stored is not None and int(stored["last_seq"]) > int(record["last_seq"]):
        return stored
    return record
