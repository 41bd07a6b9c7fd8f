"""The runtime's side of its task store: which store (``store=``), what each
event changes in a task's record, and turning stored records back into
results for tasks memory has let go of.

The runtime calls :meth:`Persistence.record` under its lock for every event
it publishes; the store never blocks there (a durable store queues the write
for its background writer) and a store that raises anyway is logged once per
episode and counted: a store must never stop or corrupt a running task.
"""

from __future__ import annotations

import atexit
import logging
import os
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from ._checks import check_int, check_number
from ._events import TERMINAL_EVENT_KINDS, TaskEvent
from ._result import SubagentResult
from ._status import SubagentStatus
from ._store import MemoryStore, SqliteStore, TaskPage, TaskStore

logger = logging.getLogger("subagent_exec.store")

#: How long interpreter exit waits for a durable store's queued writes.
EXIT_FLUSH_SECONDS = 5.0
#: What a durable store keeps by default: finished tasks, and days.
DEFAULT_STORE_RETAIN_MAX = 10_000
DEFAULT_STORE_RETAIN_DAYS = 30.0


def open_store(store: object) -> tuple[TaskStore, bool]:
    """The store ``SubagentRuntime(store=...)`` names, and whether the runtime
    made it (and so closes it at shutdown): None -> a new ``MemoryStore``;
    ``":memory:"``; ``"postgresql://..."`` -> ``PostgresStore``; any other
    string or path -> ``SqliteStore``; or a store object (the caller's)."""
    if store is None:
        return MemoryStore(), True
    if isinstance(store, str | os.PathLike) and not isinstance(store, TaskStore):
        text = os.fspath(store)
        if text == ":memory:":
            return MemoryStore(), True
        if text.startswith(("postgresql://", "postgres://")):
            from ._store._postgres import PostgresStore

            return PostgresStore(text), True
        if not text.strip():
            raise ValueError(
                "SubagentRuntime.store must be a TaskStore, ':memory:', a SQLite file path or "
                f"a postgresql:// URL, got {text!r}"
            )
        return SqliteStore(text), True
    if not isinstance(store, TaskStore):
        raise TypeError(
            "SubagentRuntime.store must be a TaskStore (MemoryStore, SqliteStore, "
            f"PostgresStore), ':memory:', a SQLite file path or a postgresql:// URL; got {store!r}"
        )
    return store, False


def check_store_retention(max_tasks: object, days: object) -> None:
    if max_tasks is not None:
        check_int("SubagentRuntime", "store_retain_max", max_tasks, minimum=0)
    if days is not None:
        check_number("SubagentRuntime", "store_retain_days", days, positive=True, finite=True)


def record_changes(kind: str, holder: SubagentResult) -> dict[str, Any]:
    """What ``kind`` changed in the task's record (read under the runtime lock,
    inside the transition: consistent with the event)."""
    if kind == "created":
        changes: dict[str, Any] = {
            "task": holder.task,
            "depth": holder.depth,
            "created_at": holder.created_at.timestamp(),
        }
        # Fields later issues add to the holder (thread, config, budget) travel
        # as they appear, without a schema change: the record is JSON.
        for name in ("config_name", "thread_id", "background", "resumed_from"):
            value = getattr(holder, name, None)
            if value is not None:
                changes[name] = value
        return changes
    if kind == "started":
        return {"started_at": holder.started_at.timestamp() if holder.started_at else None}
    if kind == "cancel_requested":
        return {"cancel_reason": holder.cancel_reason, "error": holder.error}
    if kind in TERMINAL_EVENT_KINDS:
        changes = {
            "result": holder.result,
            "error": holder.error,
            "stop_reason": holder.stop_reason,
            "cancel_reason": holder.cancel_reason,
            "completed_at": holder.completed_at.timestamp() if holder.completed_at else None,
        }
        # What the task used, and its subtree (docs/budgets.md): read back by
        # SubagentResult.from_record.
        changes["usage"] = {**holder.usage.to_record(), "tree": holder.tree_usage.to_record()}
        return changes
    return {}


class TaskList(list[SubagentResult]):
    """A page of ``SubagentRuntime.list_tasks(limit=...)``: a list of results,
    newest first, and the cursor of the next (older) page (None: the last)."""

    def __init__(self, tasks: Iterable[SubagentResult], next_cursor: str | None) -> None:
        super().__init__(tasks)
        self.next_cursor = next_cursor


class Persistence:
    """One runtime's store: writes that never raise, reads that restore."""

    @classmethod
    def open(
        cls,
        spec: object,
        *,
        retain: tuple[int | None, float | None],
        memory: tuple[int, float | None],
        runtime_name: str,
        interrupt: bool = True,
    ) -> Persistence:
        """Open the store ``spec`` names, bound it (``retain``: store_retain_max
        and store_retain_days; a ``MemoryStore`` keeps no more than ``memory``,
        the runtime's retain_max and retain_ttl_seconds), and mark what its
        dead processes left unfinished as interrupted (``interrupt``; a
        cluster decides which processes are dead itself: _cluster/)."""
        max_tasks, days = retain
        check_store_retention(max_tasks, days)
        store, owned = open_store(spec)
        if isinstance(store, MemoryStore):
            retain_max, ttl = memory
            max_tasks = retain_max if max_tasks is None else min(max_tasks, retain_max)
            ttl_days = None if ttl is None else ttl / 86400.0
            days = ttl_days if days is None or ttl_days is None else min(days, ttl_days)
        store.set_retention(max_tasks=max_tasks, max_age_days=days)
        interrupted = store.mark_interrupted() if interrupt else []
        if interrupted:
            logger.warning(
                "runtime %r: %d tasks in the store at %s were unfinished when their process "
                "stopped; marked FAILED (interrupted): %s%s",
                runtime_name, len(interrupted), store.location,
                ", ".join(e.task_id for e in interrupted[:10]),
                " ..." if len(interrupted) > 10 else "",
            )
        return cls(store, owned=owned, runtime_name=runtime_name)

    def __init__(self, store: TaskStore, *, owned: bool, runtime_name: str) -> None:
        self.store = store
        self.owned = owned
        self._runtime_name = runtime_name
        self._failing = False
        self.errors = 0
        if store.durable:
            # A runtime shut down without waiting (or never) still has its
            # last events written before the interpreter ends.
            atexit.register(_flush_at_exit, weakref.ref(store))

    def record(self, event: TaskEvent, holder: SubagentResult) -> None:
        """Hand ``event`` to the store (under the runtime lock)."""
        try:
            self.store.record(event, record_changes(event.kind, holder))
        except Exception:
            self.errors += 1
            if not self._failing:
                self._failing = True
                logger.exception(
                    "%s the task store at %s refused an event; counting and "
                    "logging nothing more until it takes one again",
                    holder.log_prefix, self.store.location,
                )
            return
        if self._failing:
            self._failing = False
            logger.warning("the task store at %s takes events again", self.store.location)

    def restore(self, task_id: str) -> SubagentResult | None:
        """A task memory no longer holds, as its store last recorded it."""
        record = self.store.get_task(task_id)
        if record is None:
            return None
        events = self.store.read_events(task_id=task_id, limit=100_000)
        return SubagentResult.from_record(record, events)

    def page(
        self,
        *,
        limit: int,
        cursor: str | None,
        parent_id: str | None,
        statuses: Iterable[SubagentStatus] | None,
        thread_id: str | None = None,
        live: Callable[[list[str]], dict[str, SubagentResult]],
    ) -> TaskList:
        """One page, newest first: the live holders where memory has them
        (``live`` looks them up under the runtime's lock)."""
        page: TaskPage = self.store.list_tasks(
            limit=limit, cursor=cursor, parent_id=parent_id, statuses=statuses,
            thread_id=thread_id,
        )
        found = live([record.task_id for record in page.tasks])
        holders = [
            found.get(record.task_id) or SubagentResult.from_record(record)
            for record in page.tasks
        ]
        return TaskList(holders, page.next_cursor)

    def stats(self) -> dict[str, int]:
        stats = dict(self.store.stats())
        stats["store_errors"] = stats.get("store_errors", 0) + self.errors
        return stats

    def close(self, timeout: float | None) -> None:
        """At shutdown: write what is queued; close the store if the runtime made it."""
        if self.owned:
            self.store.close(timeout)
        else:
            self.store.flush(timeout)


def _flush_at_exit(ref: weakref.ref[TaskStore]) -> None:
    store = ref()
    if store is not None:
        store.flush(EXIT_FLUSH_SECONDS)
