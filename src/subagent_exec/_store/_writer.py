"""The write buffer of a durable store, and the thread that empties it.

``record()`` is called by the runtime under its lock, once per event: it only
folds the event into an in-memory copy of the task's record (the *overlay*,
which reads consult, so a store always reads its own writes) and appends the
event to a queue. It wakes the writer thread once per batch (when the queue
goes from empty to not empty), never per event, so a burst of events costs
one thread hand-off.

The writer waits up to half the flush interval after the first queued event,
then writes everything queued in one transaction; so an event is stored
within the flush interval unless the write itself takes longer. A failed
write is kept, retried with a growing pause (0.1 s to 5 s), merged with what
arrived meanwhile, logged once per episode ("store writes failing" ... "store
writes recovered"), and counted (``store_errors``). The overlay keeps every
record right in the meantime. Should the queue pass ``max_queued`` events
while writes fail, the oldest events are given up on and counted
(``store_dropped``); the records still reach the store in their latest state.

Maintenance (marking interrupted tasks, retention, cleanup) runs as *jobs* on
the same thread, after the queued events, so it never interleaves with a
batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .._events import TaskEvent
from ._records import TERMINAL_VALUES, Record, apply_event, new_record

logger = logging.getLogger("subagent_exec.store")

T = TypeVar("T")
MIN_RETRY_SECONDS = 0.1
MAX_RETRY_SECONDS = 5.0


@dataclass
class Pending:
    """A task's record as this process knows it, ahead of the database."""

    record: Record
    #: True when this process never saw the task's ``created``: the record
    #: holds only what later events changed (merged into the stored one).
    partial: bool = False
    #: Bumped on every change; a written copy is dropped only if unchanged since.
    version: int = 0
    #: For a partial record: the events and changes to fold into the stored one.
    ops: list[tuple[TaskEvent, dict[str, Any]]] = field(default_factory=list)

    def copy(self) -> Pending:
        # Shallow is enough: folding an event replaces a record's values, it
        # never changes one in place.
        return Pending(dict(self.record), self.partial, self.version, list(self.ops))


@dataclass
class Batch:
    """What one write stores: events in seq order, and the latest copy of each
    touched record (with its overlay version, to drop it once written)."""

    events: list[TaskEvent] = field(default_factory=list)
    records: dict[str, Pending] = field(default_factory=dict)

    def merge(self, later: Batch) -> None:
        self.events.extend(later.events)
        for task_id, pending in later.records.items():
            earlier = self.records.get(task_id)
            if earlier is not None and pending.partial:
                pending.ops = earlier.ops + pending.ops
            self.records[task_id] = pending


class WriteBuffer:
    """The overlay, the queue and the writer thread of one store.

    ``write(batch)`` stores a batch in one transaction (raising on failure);
    jobs are functions of nothing run on the writer thread.
    """

    def __init__(
        self,
        *,
        name: str,
        location: str,
        write: Callable[[Batch], None],
        flush_interval: float,
        max_queued: int = 200_000,
        max_batch: int = 2_000,
        process_id: str | None = None,
        after_write: Callable[[Batch], None] | None = None,
    ) -> None:
        self._location = location
        self._write = write
        self._after_write = after_write
        self.flush_interval = flush_interval
        self._max_queued = max_queued
        self._max_batch = max_batch
        self._process_id = process_id
        #: Event kinds written at once, without the batching wait (set by a cluster).
        self.urgent_kinds: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        # Invariant: everything below is read and written under self._lock.
        self._overlay: dict[str, Pending] = {}
        self._queue: deque[TaskEvent] = deque()
        self._first_queued_at = 0.0
        self._inflight: Batch | None = None
        self._jobs: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._urgent = False
        self._stopping = False
        self._enqueued = 0
        self._done = 0  # events written or given up on
        self.errors = 0
        self.dropped = 0
        self._failing_since: float | None = None
        self._failures_in_episode = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- the hot path --------------------------------------------------------------------

    def record(self, event: TaskEvent, changes: Mapping[str, Any]) -> None:
        with self._lock:
            pending = self._overlay.get(event.task_id)
            if pending is None:
                if event.kind == "created":
                    pending = Pending(new_record(event))
                    if self._process_id is not None:
                        pending.record["process_id"] = self._process_id
                else:
                    pending = Pending({"task_id": event.task_id}, partial=True)
                self._overlay[event.task_id] = pending
            if pending.partial:
                pending.ops.append((event, dict(changes)))
            apply_event(pending.record, event, changes)
            pending.version += 1
            self._queue.append(event)
            self._enqueued += 1
            if len(self._queue) == 1:
                self._first_queued_at = time.monotonic()
                self._cond.notify()
            elif len(self._queue) >= self._max_batch and not self._urgent:
                self._urgent = True
                self._cond.notify()
            if self.urgent_kinds and event.kind in self.urgent_kinds and not self._urgent:
                # Someone elsewhere waits for this one (a cluster): no batching wait.
                self._urgent = True
                self._cond.notify()
            if len(self._queue) > self._max_queued:
                self._queue.popleft()
                self.dropped += 1
                self._done += 1

    # -- what reads consult --------------------------------------------------------------

    def overlay(self, task_id: str) -> Pending | None:
        """A copy of the task's unwritten (or cached) record, if any."""
        with self._lock:
            pending = self._overlay.get(task_id)
            return None if pending is None else pending.copy()

    def overlay_records(self, match: Callable[[Record], bool]) -> list[Record]:
        """Copies of the complete cached records ``match`` keeps."""
        with self._lock:
            return [
                dict(p.record) for p in self._overlay.values()
                if not p.partial and match(p.record)
            ]

    def forget(self, task_ids: list[str]) -> None:
        """Drop these tasks' cached records (the database now has newer ones)."""
        with self._lock:
            for task_id in task_ids:
                self._overlay.pop(task_id, None)

    def unwritten_events(self) -> list[TaskEvent]:
        """Events not yet known to be stored (in flight included), in seq order."""
        with self._lock:
            inflight = list(self._inflight.events) if self._inflight is not None else []
            return inflight + list(self._queue)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "store_errors": self.errors,
                "store_pending": self._enqueued - self._done,
                "store_dropped": self.dropped,
            }

    # -- waiting for it ------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            target = self._enqueued
            if self._done >= target:
                return True
            self._urgent = True
            self._cond.notify_all()
            while self._done < target:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                if not self._thread.is_alive():
                    return False
                self._cond.wait(left)
            return True

    def run_job(self, job: Callable[[], T], timeout: float | None = None) -> T:
        """Run ``job`` on the writer thread, after what is queued now; its
        result, or its exception, is returned/raised here."""
        future: Future[T] = Future()
        with self._lock:
            if self._stopping or not self._thread.is_alive():
                raise RuntimeError(f"the task store at {self._location} is closed")
            self._jobs.append((job, future))
            self._cond.notify_all()
        return future.result(timeout)

    def close(self, timeout: float | None) -> bool:
        """Write what is queued (bounded by ``timeout``), then stop the thread.
        False if events were left unwritten."""
        flushed = self.flush(timeout)
        with self._lock:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout if timeout is not None else None)
        if not flushed:
            with self._lock:
                left = self._enqueued - self._done
            logger.error(
                "task store at %s closed with %d events not written (writes were failing)",
                self._location, left,
            )
        return flushed

    # -- the writer thread ---------------------------------------------------------------

    def _run(self) -> None:
        retry: Batch | None = None
        pause = MIN_RETRY_SECONDS
        while True:
            with self._lock:
                while not (self._queue or self._jobs or self._stopping or retry):
                    self._cond.wait()
                if self._stopping and not self._queue and retry is None:
                    self._fail_jobs_locked()
                    return
                # Batch: wait out half the flush interval after the first event.
                deadline = self._first_queued_at + self.flush_interval / 2
                while self._queue and not (self._urgent or self._stopping or self._jobs):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                self._urgent = False
                batch = self._drain_locked()
                if retry is not None:
                    retry.merge(batch)
                    batch = retry
                    # What waits for a failing database stays bounded too.
                    excess = len(batch.events) - self._max_queued
                    if excess > 0:
                        del batch.events[:excess]
                        self.dropped += excess
                        self._done += excess
                self._inflight = batch
            ok = self._write_batch(batch) if batch.events or batch.records else True
            with self._lock:
                self._inflight = None
                if ok:
                    retry, pause = None, MIN_RETRY_SECONDS
                    self._written_locked(batch)
                    jobs = list(self._jobs)
                    self._jobs.clear()
                else:
                    retry, jobs = batch, []
                    if self._stopping:  # close() gave up waiting: so do we
                        self._fail_jobs_locked()
                        return
                    self._cond.wait(pause)
                    pause = min(pause * 2, MAX_RETRY_SECONDS)
            if ok and batch.events:
                self._after(batch)
            for job, future in jobs:
                try:
                    future.set_result(job())
                except BaseException as exc:
                    future.set_exception(exc)

    def _drain_locked(self) -> Batch:
        batch = Batch(events=list(self._queue))
        self._queue.clear()
        for task_id in {event.task_id for event in batch.events}:
            pending = self._overlay.get(task_id)
            if pending is None:
                continue
            batch.records[task_id] = pending.copy()
            pending.ops = []  # a partial record's ops travel with this batch now
        return batch

    def _written_locked(self, batch: Batch) -> None:
        self._done += len(batch.events)
        for task_id, written in batch.records.items():
            pending = self._overlay.get(task_id)
            if pending is None or pending.version != written.version:
                continue
            # Unfinished records stay as the cache later events are folded into.
            if pending.partial or pending.record.get("status") in TERMINAL_VALUES:
                del self._overlay[task_id]
        self._cond.notify_all()

    def _write_batch(self, batch: Batch) -> bool:
        try:
            self._write(batch)
        except Exception as exc:
            with self._lock:
                self.errors += 1
                self._failures_in_episode += 1
                first = self._failing_since is None
                if first:
                    self._failing_since = time.monotonic()
            if first:
                logger.warning(
                    "task store at %s: writing %d events failed (%s); retrying, and "
                    "logging nothing more until the writes recover",
                    self._location, len(batch.events), _short(exc),
                )
            return False
        with self._lock:
            since, failures = self._failing_since, self._failures_in_episode
            self._failing_since, self._failures_in_episode = None, 0
        if since is not None:
            logger.warning(
                "task store at %s: writes recovered after %d failed attempts (%.1f s)",
                self._location, failures, time.monotonic() - since,
            )
        return True

    def _fail_jobs_locked(self) -> None:
        while self._jobs:
            _, future = self._jobs.popleft()
            future.set_exception(RuntimeError(f"the task store at {self._location} is closed"))

    def _after(self, batch: Batch) -> None:
        if self._after_write is None:
            return
        try:
            self._after_write(batch)
        except Exception:
            logger.exception("task store at %s: maintenance after a write failed",
                             self._location)


def _short(exc: BaseException) -> str:
    """An error on one line, bounded (a database's detail may quote a row)."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= 300 else text[:297] + "..."
