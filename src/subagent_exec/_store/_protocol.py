"""``TaskStore``: what a runtime needs from a store of task records and events.

Three kinds of calls, with different promises:

* **Writes** (:meth:`TaskStore.record`) are called by the runtime under its
  lock, once per task event, in ``seq`` order. They never wait on disk or
  network: a durable store hands them to a background writer that batches
  them (``_writer.py``) and writes at least every ``flush_interval_seconds``.
  A write that fails is retried; it never raises into the runtime.
* **Reads** see every write already made through this store object, flushed
  or not (read-your-writes), and may block on the database.
* **Maintenance** (:meth:`TaskStore.mark_interrupted`, retention) runs when a
  runtime opens the store, and in the writer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import EllipsisType
from typing import Any, Protocol, runtime_checkable

from .._events import TaskEvent
from .._status import SubagentStatus
from ._records import INTERRUPTED_ERROR, INTERRUPTED_STOP_REASON, TaskPage, TaskRecord


@runtime_checkable
class TaskStore(Protocol):
    """A store of task records and their event log (``MemoryStore``,
    ``SqliteStore``, ``PostgresStore``, or your own)."""

    #: Longest a write waits in memory before the writer stores it (seconds).
    flush_interval_seconds: float

    @property
    def location(self) -> str:
        """Where the store is, for messages: ``memory``, a file path, or
        ``postgresql://host:port/db`` (never a password)."""
        ...

    @property
    def durable(self) -> bool:
        """Whether what is written outlives this process."""
        ...

    @property
    def store_id(self) -> str:
        """Names this store's event numbering: the same for every process and
        restart that opens the same database (a reader holding a seq of this
        store can resume), different for any other store."""
        ...

    # -- writes (hot path: never block, never raise) ---------------------------------

    def record(self, event: TaskEvent, changes: Mapping[str, Any]) -> None:
        """Append ``event`` to the log and fold it, with the record fields in
        ``changes`` (all of them with ``created``), into its task's record."""
        ...

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every write made before this call is stored; False if
        ``timeout`` ran out first (the writes stay queued and retried)."""
        ...

    # -- reads ---------------------------------------------------------------------

    def get_task(self, task_id: str) -> TaskRecord | None:
        """The task's record with its children and AI messages, or None."""
        ...

    def list_tasks(
        self,
        *,
        limit: int = 100,
        cursor: str | None = None,
        parent_id: str | None = None,
        statuses: Iterable[SubagentStatus | str] | None = None,
        owner: str | EllipsisType | None = ...,
        root: bool | None = None,
        thread_id: str | None = None,
    ) -> TaskPage:
        """Tasks newest first (by creation), ``limit`` at most, after ``cursor``
        (a previous page's ``next_cursor``); filtered by parent, status, owner
        (``...``: any owner; ``None``: tasks without one), roots only
        (``root=True``) or non-roots, and thread."""
        ...

    def read_events(
        self, *, after: int = 0, task_id: str | None = None, limit: int = 1000
    ) -> list[TaskEvent]:
        """Events with ``seq > after``, oldest first, ``limit`` at most; of one
        task when ``task_id`` is given."""
        ...

    def last_seq(self) -> int:
        """The highest ``seq`` this store has seen (written, queued, or
        removed): a new runtime numbers its events from the next one."""
        ...

    def removed_through(self) -> int:
        """The highest ``seq`` of an event removed (retention, cleanup); 0 if
        none. A reader resuming after a lower seq may have missed events."""
        ...

    # -- maintenance ---------------------------------------------------------------

    def mark_interrupted(
        self, *, error: str = INTERRUPTED_ERROR, stop_reason: str = INTERRUPTED_STOP_REASON
    ) -> list[TaskEvent]:
        """Mark every unfinished task FAILED with ``error`` and
        ``stop_reason``, appending its terminal event (seqs after
        :meth:`last_seq`). Returns those events, in seq order. Call it when a
        runtime opens the store, before it numbers an event of its own: it
        marks every unfinished task, those written through this object too."""
        ...

    def set_retention(self, *, max_tasks: int | None, max_age_days: float | None) -> None:
        """Keep at most ``max_tasks`` finished tasks, none finished more than
        ``max_age_days`` ago (None: no bound); applied as tasks finish."""
        ...

    def apply_retention(self) -> int:
        """Apply the retention bounds now (after flushing); how many tasks
        were removed, with their events."""
        ...

    def delete_task(self, task_id: str) -> bool:
        """Forget one finished task and its events (``cleanup``). False if the
        store does not have it or it is not finished."""
        ...

    def stats(self) -> dict[str, int]:
        """``store_errors`` (failed write attempts), ``store_pending`` (events
        not stored yet), ``store_dropped`` (events given up on)."""
        ...

    def close(self, timeout: float | None = 10.0) -> None:
        """Flush (bounded by ``timeout``) and let go of files and connections."""
        ...
