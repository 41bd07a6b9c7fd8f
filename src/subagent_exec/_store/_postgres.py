"""``PostgresStore``: task records and events in PostgreSQL (psycopg 3 and
its connection pool, the ``[postgres]`` extra), for hosts that run a database
already or that several processes will share.

Opening connects once directly (so an unreachable server fails at once with
libpq's own reason, naming host, port and database, never the password),
migrates under an advisory lock, then opens a small pool: the writer thread
takes one connection per batch, readers one per read. A connection lost at
run time is replaced by the pool; the failed batch is retried.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .._checks import check_int, check_number
from .._errors import StoreError
from ._schema import MIGRATION_LOCK_KEY, migrate
from ._sql import SqlStore
from ._statements import Tx

DEFAULT_FLUSH_INTERVAL = 0.1
#: pg_advisory_xact_lock key taken by maintenance (restart marking, retention).
MAINTENANCE_LOCK_KEY = MIGRATION_LOCK_KEY + 1
#: pg_advisory_xact_lock key held while events are inserted, when several
#: processes share the store: their feed_id order is then their commit order.
FEED_LOCK_KEY = MIGRATION_LOCK_KEY + 2
#: The channel a store shared by several processes notifies its writes on.
EVENTS_CHANNEL = "subagent_events"


class _PgTx:
    def __init__(self, conn: Any) -> None:
        self._cur = conn.cursor()

    def q(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self._cur.execute(sql.replace("?", "%s"), tuple(params))
        return list(self._cur.fetchall()) if self._cur.description is not None else []

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._cur.executemany(sql.replace("?", "%s"), [tuple(r) for r in rows])


def describe_dsn(dsn: str) -> str:
    """``postgresql://user@host:port/db`` for messages: never the password."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(dsn)
    host = str(params.get("host") or os.environ.get("PGHOST") or "localhost")
    port = str(params.get("port") or os.environ.get("PGPORT") or "5432")
    user = params.get("user") or os.environ.get("PGUSER")
    dbname = params.get("dbname") or os.environ.get("PGDATABASE") or user or ""
    shown_host = f"[{host}]" if ":" in host and not host.startswith("/") else host
    return f"postgresql://{f'{user}@' if user else ''}{shown_host}:{port}/{dbname}"


class PostgresStore(SqlStore):
    """Task records and events in the PostgreSQL database of ``dsn``
    (``postgresql://user:password@host:port/db`` or ``"host=... dbname=..."``).

    ``flush_interval_seconds``: how long a write may wait in memory (default
    0.1). ``connect_timeout_seconds``: how long opening, and each later
    connection, may take. ``pool_size``: connections at most (writer and
    readers). Fails at once, naming host, port and database, when the server
    cannot be reached or its schema is newer (``StoreError``).
    """

    def __init__(
        self,
        dsn: str,
        *,
        flush_interval_seconds: float = DEFAULT_FLUSH_INTERVAL,
        connect_timeout_seconds: float = 5.0,
        pool_size: int = 4,
    ) -> None:
        try:
            import psycopg
            from psycopg_pool import ConnectionPool
        except ImportError as exc:  # pragma: no cover - the extra is installed in tests
            raise ImportError(
                "PostgresStore needs psycopg 3: pip install 'subagent-exec[postgres]'"
            ) from exc
        if not isinstance(dsn, str):
            raise TypeError(f"PostgresStore.dsn must be a connection string, got {dsn!r}")
        #: The connection string (a runtime opens its checkpointer on the same database).
        self.dsn = dsn
        try:
            self._location = describe_dsn(dsn)
        except psycopg.Error as exc:
            raise ValueError(
                "PostgresStore.dsn must be a PostgreSQL connection string such as "
                f"'postgresql://user@host:5432/db': {exc}"
            ) from None
        interval = check_number(
            "PostgresStore", "flush_interval_seconds", flush_interval_seconds,
            positive=True, finite=True,
        )
        timeout = check_number(
            "PostgresStore", "connect_timeout_seconds", connect_timeout_seconds,
            positive=True, finite=True,
        )
        check_int("PostgresStore", "pool_size", pool_size, minimum=2)
        self._pool: Any = None
        self._dsn = dsn
        #: Set by :meth:`share` (a cluster): writes are ordered for its feed and notified.
        self.shared = False
        connect_args = {"connect_timeout": max(1, round(timeout))}
        try:
            with (
                psycopg.connect(dsn, autocommit=True, **connect_args) as conn,  # type: ignore[arg-type]
                conn.transaction(),
            ):
                tx = _PgTx(conn)
                tx.q("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK_KEY,))
                migrate(tx.q, "postgres", self._location)
        except psycopg.OperationalError as exc:
            reason = " ".join(str(exc).split())
            raise StoreError(
                f"cannot reach the task store at {self._location}: {reason}"
            ) from exc
        except psycopg.Error as exc:
            raise StoreError(f"cannot open the task store at {self._location}: {exc}") from exc
        self._pool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True, **connect_args},
            timeout=timeout,
            open=False,
            name="subagent-store",
        )
        try:
            self._pool.open(wait=True, timeout=timeout)
            self._start(name="subagent-store-postgres", flush_interval=interval)
        except Exception as exc:
            self._close_connections()
            raise StoreError(f"cannot open the task store at {self._location}: {exc}") from exc

    def __repr__(self) -> str:
        return f"PostgresStore({self._location!r})"

    @contextmanager
    def _write_tx(self) -> Iterator[Tx]:
        with self._connection() as conn, conn.transaction():
            yield _PgTx(conn)

    @contextmanager
    def _read_tx(self) -> Iterator[Tx]:
        with self._connection() as conn, conn.transaction():
            yield _PgTx(conn)

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        if self._pool is None:
            raise StoreError(f"the task store at {self._location} is closed")
        with self._pool.connection() as conn:
            yield conn

    def _lock_maintenance(self, tx: Tx) -> None:
        tx.q("SELECT pg_advisory_xact_lock(?)", (MAINTENANCE_LOCK_KEY,))

    def _before_events(self, tx: Tx) -> None:
        if self.shared:
            tx.q("SELECT pg_advisory_xact_lock(?)", (FEED_LOCK_KEY,))
            tx.q("SELECT pg_notify(?, ?)", (EVENTS_CHANNEL, self.process_id))

    def share(self) -> None:
        """Several processes share this store (a cluster, _cluster/): events are
        committed in feed order and notified; creations, stops and ends are
        written at once (other processes look for the task, or wait for them)."""
        self.shared = True
        self._buffer.urgent_kinds = frozenset(
            {"created", "cancel_requested", "completed", "failed", "cancelled", "timed_out"}
        )

    def connect(self) -> Any:
        """A new connection of its own (autocommit) to this store's database:
        for a listener, or work that must not wait for the pool."""
        import psycopg

        return psycopg.connect(self._dsn, autocommit=True, connect_timeout=5)

    def _close_connections(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close(timeout=5.0)
