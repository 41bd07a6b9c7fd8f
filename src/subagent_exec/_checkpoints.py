"""Per-step checkpoints of sub-agent runs: which LangGraph checkpointer a
runtime uses, and the checkpoint operations resume needs (docs/resume.md).

The checkpointer follows the runtime's store: ``InMemorySaver`` for a
``MemoryStore``, ``SqliteSaver`` (extra ``checkpoint-sqlite``) on the same
file as a ``SqliteStore``, ``PostgresSaver`` (extra ``checkpoint-postgres``)
on the same database as a ``PostgresStore``; or the ``checkpointer=`` given
to the runtime. The thread of a task's checkpoints is its task id.

Runs happen on many event loops (one per worker thread), so the durable
savers are LangGraph's *sync* ones (its async savers bind a connection to one
loop), written behind by one thread (``_checkpoint_writer.py``): a step never
waits on the disk, and a failing database never stops a task.

(Over 400 lines because opening each store's saver, with its extra missing,
its setup raced by other processes, or its tables failing, is one decision
with several cases; the conversation a resume starts from is _resume.py's.)
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple
from langgraph.checkpoint.memory import InMemorySaver

from ._checkpoint_writer import WriteBehindSaver
from ._store import MemoryStore, SqliteStore, TaskStore

logger = logging.getLogger("subagent_exec.checkpoints")

try:  # the key a parent graph lends its checkpointer to a subgraph by
    from langgraph._internal._constants import CONFIG_KEY_CHECKPOINTER
except ImportError:  # pragma: no cover - older layouts
    CONFIG_KEY_CHECKPOINTER = "__pregel_checkpointer"

#: The advisory lock key processes take to set up PostgreSQL checkpoint tables.
SETUP_LOCK_KEY = 0x5E17C4EC

#: At most this often (and a batch of this many tasks), checkpoints of tasks
#: the store has removed are deleted too.
PRUNE_INTERVAL_SECONDS = 1.0
PRUNE_BATCH = 256



class RunSaver(BaseCheckpointSaver[Any]):
    """One run's view of the runtime's saver: once the run's stop was
    requested, nothing more is written. What finished after the request
    (a tool that turned the stop into an answer, like the ``task`` tool whose
    child the cascade cancelled; a call a grace period let finish) belongs to
    the interrupted step, which a resume runs again."""

    def __init__(self, inner: BaseCheckpointSaver[Any], stopped: threading.Event) -> None:
        super().__init__(serde=inner.serde)
        self.inner = inner
        self.stopped = stopped

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self.inner.get_tuple(config)

    def list(self, config: RunnableConfig | None, **kwargs: Any) -> Iterator[CheckpointTuple]:
        return self.inner.list(config, **kwargs)

    def put(self, config: RunnableConfig, checkpoint: Any, metadata: Any,
            new_versions: Any) -> RunnableConfig:
        if self.stopped.is_set():
            conf = config["configurable"]
            return {"configurable": {"thread_id": conf["thread_id"],
                                     "checkpoint_ns": conf.get("checkpoint_ns", ""),
                                     "checkpoint_id": checkpoint["id"]}}
        return self.inner.put(config, checkpoint, metadata, new_versions)

    def put_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]],
                   task_id: str, task_path: str = "") -> None:
        if not self.stopped.is_set():
            self.inner.put_writes(config, writes, task_id, task_path)

    def get_next_version(self, current: Any, channel: Any) -> Any:
        return self.inner.get_next_version(current, channel)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self.inner.aget_tuple(config)

    async def alist(self, config: RunnableConfig | None, **kwargs: Any) -> Any:
        async for item in self.inner.alist(config, **kwargs):
            yield item

    async def aput(self, config: RunnableConfig, checkpoint: Any, metadata: Any,
                   new_versions: Any) -> RunnableConfig:
        if self.stopped.is_set():
            return self.put(config, checkpoint, metadata, new_versions)
        return await self.inner.aput(config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]],
                          task_id: str, task_path: str = "") -> None:
        if not self.stopped.is_set():
            await self.inner.aput_writes(config, writes, task_id, task_path)


@dataclass(frozen=True)
class ResumePoint:
    """Where a resumed run starts: the input it streams (None: go on from the
    forked checkpoint), the conversation so far, and the keys of the AI
    messages the stopped task already had (not recorded again)."""

    source_task_id: str
    stream_input: dict[str, Any] | None
    messages: tuple[Any, ...] = ()
    known_keys: frozenset[str] = field(default_factory=frozenset)


class Checkpoints:
    """A runtime's checkpointer (or why it has none) and what resume does with it.

    Pickled (a remote backend sends runs to its workers), it becomes one
    without a saver: remote runs are not checkpointed (docs/resume.md).
    """

    def __init__(
        self,
        saver: BaseCheckpointSaver[Any] | None,
        *,
        unavailable: str | None = None,
        close: Callable[[], object] | None = None,
    ) -> None:
        self.saver = saver
        #: Why runs are not checkpointed (None when they are).
        self.unavailable = unavailable if saver is None else None
        self._close = close
        #: The store whose records decide which checkpoints are kept (retention).
        self.store: TaskStore | None = None
        self._lock = threading.Lock()
        #: Tasks this process checkpointed, oldest first, until their record goes.
        self._tracked: deque[str] = deque()
        self._next_prune = 0.0

    def __reduce__(self) -> tuple[Any, ...]:
        return (_remote_checkpoints, ())

    @property
    def enabled(self) -> bool:
        return self.saver is not None

    def configurable(
        self, task_id: str, stopped: threading.Event, *, fresh: bool = False
    ) -> dict[str, Any]:
        """The ``configurable`` of a run: its thread and the checkpointer, lent
        through the config so cached compiled graphs stay checkpointer-free;
        nothing is written once ``stopped`` is set (:class:`RunSaver`).
        ``fresh``: a new task's thread, which has no checkpoint yet."""
        if self.saver is None:
            return {}
        if fresh and isinstance(self.saver, WriteBehindSaver):
            self.saver.mark_fresh(task_id)
        self._track(task_id)
        saver = RunSaver(self.saver, stopped)
        return {"thread_id": task_id, "checkpoint_ns": "", CONFIG_KEY_CHECKPOINTER: saver}

    def _track(self, task_id: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._tracked.append(task_id)
            due = now >= self._next_prune
            if due:
                self._next_prune = now + PRUNE_INTERVAL_SECONDS
        if due:
            saver = self.saver
            if isinstance(saver, WriteBehindSaver):
                saver.submit(self.prune)  # store reads stay off the sub-agent's loop
            else:
                self.prune()

    def prune(self) -> int:
        """Checkpoints follow the store's retention: delete those of tracked
        tasks whose record the store no longer has (oldest first, a batch at
        a time); returns how many tasks' checkpoints went."""
        store, saver = self.store, self.saver
        if store is None or saver is None:
            return 0
        with self._lock:
            batch = [self._tracked.popleft() for _ in range(min(PRUNE_BATCH, len(self._tracked)))]
        gone: list[str] = []
        keep: list[str] = []
        try:
            for task_id in batch:
                (keep if store.get_task(task_id) is not None else gone).append(task_id)
            inner = saver.inner if isinstance(saver, WriteBehindSaver) else saver
            _delete_threads(inner, gone)
            if isinstance(saver, WriteBehindSaver):
                for task_id in gone:
                    saver.mark_written(task_id)
        except Exception:
            logger.exception("removing checkpoints of removed tasks failed; retried later")
            keep = batch
            gone = []
        with self._lock:
            self._tracked.extendleft(reversed(keep))
        return len(gone)

    def latest(self, task_id: str) -> CheckpointTuple | None:
        if self.saver is None:
            return None
        return self.saver.get_tuple(_thread(task_id))

    def fork(self, source_id: str, target_id: str) -> CheckpointTuple | None:
        """Copy every checkpoint of ``source_id`` (oldest first, with their
        pending writes) to the thread ``target_id``; its latest, or None when
        ``source_id`` has none. The whole chain is copied, not just the head,
        so channels that keep deltas still rebuild."""
        if self.saver is None:
            return None
        saver = self.saver
        chain = list(saver.list(_thread(source_id)))
        if not chain:
            return None
        parent_of: dict[str, str | None] = {}
        for item in reversed(chain):
            checkpoint = item.checkpoint
            parent_id = (item.parent_config or {}).get("configurable", {}).get("checkpoint_id")
            config = _thread(target_id)
            if parent_id is not None and parent_id in parent_of:
                config["configurable"]["checkpoint_id"] = parent_id
            stored = saver.put(
                config,
                checkpoint,
                dict(item.metadata or {}),  # type: ignore[arg-type]
                dict(checkpoint["channel_versions"]),
            )
            parent_of[checkpoint["id"]] = parent_id
            by_task: dict[str, list[tuple[str, Any]]] = {}
            for task_id, channel, value in item.pending_writes or ():
                by_task.setdefault(task_id, []).append((channel, value))
            for task_id, writes in by_task.items():
                saver.put_writes(stored, writes, task_id)
        return saver.get_tuple(_thread(target_id))

    def forget(self, task_id: str) -> None:
        """Delete a task's checkpoints (it was cleaned up or removed)."""
        if self.saver is None:
            return
        try:
            self.saver.delete_thread(task_id)
        except Exception:
            logger.exception("[task=%s] could not delete its checkpoints", task_id)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every checkpoint written so far is stored (False: timed out)."""
        saver = self.saver
        return saver.flush(timeout) if isinstance(saver, WriteBehindSaver) else True

    def stats(self) -> dict[str, int]:
        """The writer's counters for ``runtime.stats()``: failed write attempts
        (retried), writes not yet stored, writes given up on (all 0 when
        checkpoints are written at once, or not at all)."""
        saver = self.saver
        if not isinstance(saver, WriteBehindSaver):
            return {"checkpoint_errors": 0, "checkpoint_pending": 0, "checkpoint_dropped": 0}
        return {"checkpoint_errors": saver.errors, "checkpoint_pending": saver.queued,
                "checkpoint_dropped": saver.dropped}

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (bounded), then close what the runtime opened."""
        if isinstance(self.saver, WriteBehindSaver):
            self.saver.close(timeout)
        if self._close is not None:
            close, self._close = self._close, None
            try:
                close()
            except Exception:
                logger.exception("closing the checkpointer failed")


def _delete_threads(saver: BaseCheckpointSaver[Any], thread_ids: list[str]) -> None:
    """Delete several threads' checkpoints. ``InMemorySaver.delete_thread``
    scans every stored blob and write per thread: one pass for the batch."""
    if not thread_ids:
        return
    if not isinstance(saver, InMemorySaver):
        for thread_id in thread_ids:
            saver.delete_thread(thread_id)
        return
    gone = set(thread_ids)
    for thread_id in gone:
        saver.storage.pop(thread_id, None)
    tables: tuple[dict[Any, Any], ...] = (saver.writes, saver.blobs)
    for table in tables:
        for key in [k for k in list(table.keys()) if k[0] in gone]:
            table.pop(key, None)


def _remote_checkpoints() -> Checkpoints:
    return Checkpoints(None, unavailable="the run went to a remote worker")


def _thread(task_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": task_id, "checkpoint_ns": ""}}


def open_checkpoints(spec: object, store: TaskStore) -> Checkpoints:
    """The checkpointer of ``SubagentRuntime(checkpointer=spec)``: a saver
    object (the caller's), ``False`` (none: runs are not checkpointed), or
    None (the one that matches ``store``)."""
    checkpoints = _open(spec, store)
    checkpoints.store = store
    return checkpoints


def _open(spec: object, store: TaskStore) -> Checkpoints:
    if spec is False:
        return Checkpoints(None, unavailable="the runtime was made with checkpointer=False")
    if spec is not None:
        if not isinstance(spec, BaseCheckpointSaver):
            raise TypeError(
                "SubagentRuntime.checkpointer must be a LangGraph checkpoint saver "
                f"(BaseCheckpointSaver), False or None; got {spec!r}"
            )
        if isinstance(spec, InMemorySaver):
            return Checkpoints(spec)
        return Checkpoints(WriteBehindSaver(spec, where=type(spec).__name__))
    if isinstance(store, MemoryStore):
        return Checkpoints(InMemorySaver())
    if isinstance(store, SqliteStore):
        return _sqlite_checkpoints(store)
    if type(store).__name__ == "PostgresStore" and getattr(store, "dsn", None):
        return _postgres_checkpoints(str(store.dsn), store.location)  # type: ignore[attr-defined]
    return Checkpoints(
        None,
        unavailable=f"no checkpointer matches the store {store!r}; pass "
        "SubagentRuntime(checkpointer=...) (a LangGraph checkpoint saver)",
    )


def _sqlite_checkpoints(store: SqliteStore) -> Checkpoints:
    try:
        from langgraph.checkpoint.sqlite import SqliteSaver
    except ImportError:
        return Checkpoints(
            None,
            unavailable="checkpoints on a SqliteStore need the extra: "
            "pip install 'subagent-exec[checkpoint-sqlite]'",
        )
    # Same file as the store (its own tables); one connection shared by every
    # worker thread, serialised by the saver's own lock.
    conn = sqlite3.connect(str(store.path), check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    saver = SqliteSaver(conn)
    saver.setup()
    return Checkpoints(WriteBehindSaver(saver, where=str(store.path)), close=conn.close)


def _postgres_checkpoints(dsn: str, store_location: str) -> Checkpoints:
    try:
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool
    except ImportError:
        return Checkpoints(
            None,
            unavailable="checkpoints on a PostgresStore need the extra: "
            "pip install 'subagent-exec[checkpoint-postgres]'",
        )
    pool: Any = ConnectionPool(
        dsn,
        min_size=1,
        max_size=4,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        open=True,
    )
    saver = PostgresSaver(pool)
    try:
        # Processes opening one database together (a cluster, issue 18) set
        # the checkpoint tables up one at a time: LangGraph's setup() races.
        # Polled, not waited for: LangGraph's setup creates indexes
        # CONCURRENTLY, which waits for every open statement, a waiting
        # pg_advisory_lock included (a deadlock nobody detects).
        with pool.connection() as lock:
            deadline = time.monotonic() + 60.0
            while not lock.execute(
                "SELECT pg_try_advisory_lock(%s) AS got", (SETUP_LOCK_KEY,)
            ).fetchone()["got"]:
                if time.monotonic() > deadline:
                    raise TimeoutError("another process held the setup lock for 60 s")
                time.sleep(0.05)
            try:
                saver.setup()
            finally:
                lock.execute("SELECT pg_advisory_unlock(%s)", (SETUP_LOCK_KEY,))
    except Exception as exc:  # the store works; only resume is unavailable
        pool.close()
        logger.warning("checkpoints at %s cannot be set up (%s: %s); runs are not "
                       "checkpointed", store_location, type(exc).__name__, exc)
        return Checkpoints(None, unavailable=f"the checkpoint tables at {store_location} "
                           f"could not be set up: {type(exc).__name__}: {exc}")
    return Checkpoints(WriteBehindSaver(saver, where=store_location), close=pool.close)


# -- automatic resume after a transient error --------------------------------------------

#: Exception class names (anywhere in the MRO) that mean a transient failure of
#: a model call in the common provider clients (openai, anthropic, httpx,
#: groq, mistral ...), matched by name so no client package is imported.
TRANSIENT_ERROR_NAMES = frozenset({
    "APIConnectionError", "APITimeoutError", "RateLimitError", "ConnectError",
    "ConnectTimeout", "ReadTimeout", "WriteTimeout", "PoolTimeout", "TimeoutException",
    "RemoteProtocolError", "ServiceUnavailableError", "OverloadedError",
})


def is_transient(exc: BaseException, resume_on: tuple[type[BaseException], ...] | None) -> bool:
    """Whether ``exc`` (or what caused it) is an error worth going on after:
    one of ``resume_on``, or by default a connection error, a rate limit or a
    timeout of a provider client."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if resume_on is not None:
            if isinstance(current, resume_on):
                return True
        elif isinstance(current, ConnectionError | TimeoutError) or any(
            cls.__name__ in TRANSIENT_ERROR_NAMES for cls in type(current).__mro__
        ):
            return True
        current = current.__cause__ or current.__context__
    return False
