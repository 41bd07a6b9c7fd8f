"""``SqliteStore``: the embedded store, one SQLite file (stdlib ``sqlite3``).

WAL mode with ``synchronous=NORMAL``: a commit reaches the operating system
before it returns, so what was committed survives the process being killed
(``kill -9``); only a power cut may lose the last commits. Two connections:
the writer's (used by the writer thread only) and one for reads, shared under
a lock (WAL lets reads run while the writer writes).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .._checks import check_number
from .._errors import StoreError
from ._schema import migrate
from ._sql import SqlStore
from ._statements import Tx

#: How long a statement waits for another process's lock on the file.
BUSY_TIMEOUT_SECONDS = 2.0
DEFAULT_FLUSH_INTERVAL = 0.1


class _SqliteTx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def q(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, params).fetchall()

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)


class SqliteStore(SqlStore):
    """Task records and events in the SQLite file at ``path`` (created if
    missing). Fails at once, naming the path, if the file cannot be opened,
    is not a database, or holds a newer schema (``StoreError``).

    ``flush_interval_seconds``: how long a write may wait in memory before the
    background writer stores it (default 0.1).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        flush_interval_seconds: float = DEFAULT_FLUSH_INTERVAL,
    ) -> None:
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"SqliteStore.path must be a file path, got {path!r}")
        text = os.fspath(path)
        if not text.strip() or text == ":memory:" or text.startswith("file:"):
            raise ValueError(
                "SqliteStore.path must be the path of a database file (for a store in memory "
                f"use MemoryStore()), got {text!r}"
            )
        interval = check_number(
            "SqliteStore", "flush_interval_seconds", flush_interval_seconds,
            positive=True, finite=True,
        )
        self.path = Path(text).absolute()
        self._location = str(self.path)
        self._read_lock = threading.Lock()
        self._writer_conn: sqlite3.Connection | None = None
        self._reader_conn: sqlite3.Connection | None = None
        try:
            self._writer_conn = self._connect()
            mode = self._writer_conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"cannot use WAL mode (journal mode {mode!r})")
            self._writer_conn.execute("PRAGMA synchronous=NORMAL")
            with self._write_tx() as tx:
                migrate(tx.q, "sqlite", self._location)
            self._reader_conn = self._connect()
            self._start(name=f"subagent-store-{self.path.name}", flush_interval=interval)
        except sqlite3.Error as exc:
            self._close_connections()
            raise StoreError(
                f"cannot open the task store at {self._location}: {exc} (is it a subagent-exec "
                "SQLite database, and can this process read and write it?)"
            ) from exc
        except BaseException:
            self._close_connections()
            raise

    def __repr__(self) -> str:
        return f"SqliteStore({self._location!r})"

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._location,
            timeout=BUSY_TIMEOUT_SECONDS,
            isolation_level=None,  # transactions are explicit (BEGIN ... COMMIT)
            check_same_thread=False,
        )
        return conn

    @contextmanager
    def _write_tx(self) -> Iterator[Tx]:
        conn = self._writer_conn
        if conn is None:
            raise StoreError(f"the task store at {self._location} is closed")
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield _SqliteTx(conn)
            conn.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled back already (a full disk, say).
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _read_tx(self) -> Iterator[Tx]:
        with self._read_lock:
            conn = self._reader_conn
            if conn is None:
                raise StoreError(f"the task store at {self._location} is closed")
            conn.execute("BEGIN")  # one snapshot for every statement of the read
            try:
                yield _SqliteTx(conn)
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    def _close_connections(self) -> None:
        with self._read_lock:
            for conn in (self._writer_conn, self._reader_conn):
                if conn is not None:
                    conn.close()
            self._writer_conn = self._reader_conn = None
