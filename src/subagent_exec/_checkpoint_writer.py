"""Checkpoint writes off the hot path: a saver that hands each ``put`` and
``put_writes`` to one background writer thread, in order, and returns at once.

Why: a sub-agent's step must never wait on a disk or a database, and a store
that fails (a locked file, a lost connection) must never stop or slow a task
(the rule of docs/store.md, kept for checkpoints too). A write that fails is
retried (0.1 s to 5 s apart), logged once per episode and counted; the task
goes on. Reads of a thread (``get_tuple``, ``list``, ``delete_thread``) first
wait, bounded, until that thread's queued writes are written, so a resume
sees every step its task had checkpointed. What a killed process had queued
and not written (normally a few milliseconds of steps) is lost: the resumed
task then goes on from the step before.

The wrapped saver's sync methods are used from this thread and from callers'
threads: ``SqliteSaver`` and ``PostgresSaver`` are thread-safe (a lock; a
pool). Async methods call the sync ones, so it serves every worker loop.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple

logger = logging.getLogger("subagent_exec.checkpoints")

#: How long a read waits for its thread's queued writes before reading anyway.
READ_WAIT_SECONDS = 30.0
#: Writes kept waiting at most while the database fails; newer ones are dropped.
MAX_QUEUED = 100_000


class WriteBehindSaver(BaseCheckpointSaver[Any]):
    """``inner``'s checkpoints, written by one background thread."""

    def __init__(self, inner: BaseCheckpointSaver[Any], *, where: str) -> None:
        super().__init__(serde=inner.serde)
        self.inner = inner
        self.where = where
        self.errors = 0
        self.dropped = 0
        self._cond = threading.Condition()
        self._queue: deque[tuple[str, str, tuple[Any, ...]]] = deque()
        self._pending: Counter[str] = Counter()
        #: Threads of new tasks with nothing stored yet: a run's first read of
        #: its own thread needs no query (a task id is never reused).
        self._fresh: set[str] = set()
        self._closing = False
        self._abandon = False
        self._thread = threading.Thread(
            target=self._write_loop, name="subagent-checkpoints", daemon=True
        )
        self._thread.start()

    # -- writes: queued ----------------------------------------------------------------

    def put(self, config: RunnableConfig, checkpoint: Any, metadata: Any,
            new_versions: Any) -> RunnableConfig:
        conf = config["configurable"]
        self._enqueue(conf["thread_id"], "put", (config, checkpoint, metadata, new_versions))
        return {"configurable": {
            "thread_id": conf["thread_id"],
            "checkpoint_ns": conf.get("checkpoint_ns", ""),
            "checkpoint_id": checkpoint["id"],
        }}

    def put_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]],
                   task_id: str, task_path: str = "") -> None:
        thread_id = config["configurable"]["thread_id"]
        self._enqueue(thread_id, "writes", (config, list(writes), task_id, task_path))

    def mark_fresh(self, thread_id: str) -> None:
        with self._cond:
            self._fresh.add(thread_id)

    def mark_written(self, thread_id: str) -> None:
        """Forget ``thread_id`` as fresh (its task is gone)."""
        with self._cond:
            self._fresh.discard(thread_id)

    def submit(self, job: Callable[[], object]) -> None:
        """Run ``job`` on the writer thread, after what is queued (housekeeping
        that must not run on a sub-agent's loop: removing checkpoints)."""
        self._enqueue("", "call", (job,))

    def _enqueue(self, thread_id: str, kind: str, args: tuple[Any, ...]) -> None:
        with self._cond:
            if len(self._queue) >= MAX_QUEUED:
                self.dropped += 1  # the database has failed for long: keep memory bounded
                return
            self._queue.append((thread_id, kind, args))
            self._pending[thread_id] += 1
            self._fresh.discard(thread_id)
            self._cond.notify_all()

    # -- reads: after the thread's queued writes -----------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        thread_id = config["configurable"]["thread_id"]
        with self._cond:
            if thread_id in self._fresh:
                return None
        self._settle(thread_id)
        return self.inner.get_tuple(config)

    def list(self, config: RunnableConfig | None, **kwargs: Any) -> Iterator[CheckpointTuple]:
        self._settle(config["configurable"]["thread_id"] if config else None)
        return self.inner.list(config, **kwargs)

    def delete_thread(self, thread_id: str) -> None:
        with self._cond:
            self._fresh.discard(thread_id)  # a run that never wrote anything
        self._settle(thread_id)
        self.inner.delete_thread(thread_id)

    def get_next_version(self, current: Any, channel: Any) -> Any:
        return self.inner.get_next_version(current, channel)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self.get_tuple(config)

    async def alist(self, config: RunnableConfig | None, **kwargs: Any) -> Any:
        for item in self.list(config, **kwargs):
            yield item

    async def aput(self, config: RunnableConfig, checkpoint: Any, metadata: Any,
                   new_versions: Any) -> RunnableConfig:
        return self.put(config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]],
                          task_id: str, task_path: str = "") -> None:
        self.put_writes(config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        self.delete_thread(thread_id)

    def _settle(self, thread_id: str | None, timeout: float = READ_WAIT_SECONDS) -> bool:
        """Wait until ``thread_id``'s (None: every) queued write is written."""
        def settled() -> bool:
            return not self._queue if thread_id is None else self._pending[thread_id] == 0

        with self._cond:
            return self._cond.wait_for(settled, timeout)

    # -- the writer -----------------------------------------------------------------------

    @property
    def queued(self) -> int:
        with self._cond:
            return len(self._queue)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued write is written; False if ``timeout`` ran out."""
        return self._settle(None, READ_WAIT_SECONDS if timeout is None else timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (bounded by ``timeout``), then stop the writer."""
        written = self.flush(timeout)
        with self._cond:
            self._closing = True
            self._abandon = not written
            left = len(self._queue)
            self._cond.notify_all()
        self._thread.join(timeout=5.0)
        if left:
            logger.warning("checkpoints at %s: %d writes could not be written before "
                           "shutdown", self.where, left)

    def _write_loop(self) -> None:
        delay, failing = 0.1, False
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queue) or self._closing)
                if self._abandon or not self._queue:
                    return
                thread_id, kind, args = self._queue[0]
            try:
                if kind == "put":
                    self.inner.put(*args)
                elif kind == "writes":
                    self.inner.put_writes(*args)
                else:
                    args[0]()  # its own errors are its own: see Checkpoints.prune
            except Exception as exc:
                self.errors += 1
                if not failing:
                    failing = True
                    logger.warning(
                        "[task=%s trace=-] checkpoints at %s: a write failed (%s: %s); "
                        "retrying, and logging nothing more until writes recover",
                        thread_id, self.where, type(exc).__name__, exc,
                    )
                with self._cond:  # retried, unless shutdown gives up on it
                    self._cond.wait_for(lambda: self._abandon, delay)
                delay = min(delay * 2, 5.0)
                continue
            if failing:
                failing, delay = False, 0.1
                logger.warning("checkpoints at %s: writes recovered", self.where)
            with self._cond:
                self._queue.popleft()
                self._pending[thread_id] -= 1
                if self._pending[thread_id] <= 0:
                    del self._pending[thread_id]
                self._cond.notify_all()

