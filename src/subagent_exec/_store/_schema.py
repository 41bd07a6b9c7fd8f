"""The SQL schema of the durable stores, as numbered migrations.

Every store records the migrations it has applied in
``subagent_schema_migrations``. Opening a store applies the missing ones in
order, in one transaction (PostgreSQL: under an advisory lock, so processes
opening one database together migrate it once). A store whose highest
migration is newer than this version knows fails with
:class:`~subagent_exec.StoreSchemaError`: an older program must not write
into a schema it does not understand.

To change the schema, append a migration; never edit one that has shipped.
Table names start with ``subagent_`` so the store can share a database.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .._errors import StoreSchemaError

#: Column types per dialect: {INT} a 64-bit integer, {REAL} a double,
#: {SERIAL} an integer the database numbers itself (SQLite: a rowid alias as a
#: primary key, else a plain column left NULL; the numbering serves only the
#: processes sharing a PostgreSQL store).
TYPES = {
    "sqlite": {"INT": "INTEGER", "REAL": "REAL", "SERIAL": "INTEGER"},
    "postgres": {"INT": "BIGINT", "REAL": "DOUBLE PRECISION", "SERIAL": "BIGSERIAL"},
}
MIGRATIONS_TABLE = "subagent_schema_migrations"
#: pg_advisory_xact_lock key taken while migrating (an arbitrary constant).
MIGRATION_LOCK_KEY = 0x5AE_C16


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "tasks and their event log",
        (
            # One row per task: the columns lists and lookups filter on, and the
            # whole record as JSON (ASCII: see _records.dumps).
            """CREATE TABLE subagent_tasks (
                task_id TEXT PRIMARY KEY,
                created_seq {INT} NOT NULL,
                parent_id TEXT,
                owner TEXT,
                thread_id TEXT,
                status TEXT NOT NULL,
                completed_at {REAL},
                last_seq {INT} NOT NULL,
                record TEXT NOT NULL
            )""",
            "CREATE INDEX subagent_tasks_created ON subagent_tasks (created_seq)",
            "CREATE INDEX subagent_tasks_parent ON subagent_tasks (parent_id, created_seq)",
            "CREATE INDEX subagent_tasks_owner ON subagent_tasks (owner, created_seq)",
            "CREATE INDEX subagent_tasks_status ON subagent_tasks (status, created_seq)",
            "CREATE INDEX subagent_tasks_completed ON subagent_tasks (completed_at)",
            # The event log: seq is global and never reused (see subagent_meta).
            """CREATE TABLE subagent_events (
                seq {INT} PRIMARY KEY,
                task_id TEXT NOT NULL,
                kind TEXT NOT NULL,
                event TEXT NOT NULL
            )""",
            "CREATE INDEX subagent_events_task ON subagent_events (task_id, seq)",
            # removed_through: the highest seq ever removed (retention, cleanup).
            "CREATE TABLE subagent_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        ),
    ),
    Migration(
        2,
        "the processes that run tasks",
        (
            # Each store object registers the process it runs in; each task
            # names the process that ran it (several processes may share a
            # PostgreSQL store: who ran what, and whether it is still alive).
            """CREATE TABLE subagent_processes (
                process_id TEXT PRIMARY KEY,
                host TEXT NOT NULL,
                pid {INT} NOT NULL,
                started_at {REAL} NOT NULL,
                heartbeat_at {REAL} NOT NULL,
                stopped_at {REAL}
            )""",
            "ALTER TABLE subagent_tasks ADD COLUMN process_id TEXT",
            "CREATE INDEX subagent_tasks_process ON subagent_tasks (process_id, status)",
        ),
    ),
    Migration(
        3,
        "several processes on one store",
        (
            # A live process's slot: its event seqs are the ones congruent to
            # it (no two live processes number an event alike); who declared
            # a dead process gone and marked its tasks (once: _cluster/).
            "ALTER TABLE subagent_processes ADD COLUMN slot {INT}",
            "ALTER TABLE subagent_processes ADD COLUMN reaped_by TEXT",
            "ALTER TABLE subagent_processes ADD COLUMN reaped_at {REAL}",
            # The order events were committed in, across processes: what a
            # process reads other processes' events by.
            "ALTER TABLE subagent_events ADD COLUMN feed_id {SERIAL}",
            "CREATE INDEX subagent_events_feed ON subagent_events (feed_id)",
            # A stop asked of a task another process runs, until it handles it.
            """CREATE TABLE subagent_stop_requests (
                request_id {SERIAL} PRIMARY KEY,
                task_id TEXT NOT NULL,
                process_id TEXT NOT NULL,
                reason TEXT NOT NULL,
                requested_by TEXT,
                requested_at {REAL} NOT NULL,
                handled_at {REAL}
            )""",
            "CREATE INDEX subagent_stop_requests_open ON subagent_stop_requests "
            "(process_id, handled_at)",
        ),
    ),
)
LATEST_VERSION = MIGRATIONS[-1].version

#: Runs one statement with parameters; returns the rows it fetched.
Execute = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]


def migrate(
    execute: Execute,
    dialect: str,
    location: str,
    *,
    migrations: Sequence[Migration] = MIGRATIONS,
) -> int:
    """Bring the schema up to the last of ``migrations``, inside the caller's
    transaction; returns the version it is at. Raises ``StoreSchemaError``
    when the store is newer than this program."""
    types = TYPES[dialect]
    execute(
        f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} ("
        "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at "
        f"{types['REAL']} NOT NULL)",
        (),
    )
    rows = execute(f"SELECT max(version) FROM {MIGRATIONS_TABLE}", ())
    current = int(rows[0][0] or 0) if rows else 0
    if current > LATEST_VERSION:
        raise StoreSchemaError(
            f"the task store at {location} has schema version {current}, written by a newer "
            f"subagent-exec; this version reads schema versions up to {LATEST_VERSION}. "
            "Upgrade subagent-exec, or open another database."
        )
    for migration in migrations:
        if migration.version <= current:
            continue
        for statement in migration.statements:
            execute(statement.format(**types), ())
        execute(
            f"INSERT INTO {MIGRATIONS_TABLE} (version, name, applied_at) VALUES (?, ?, ?)",
            (migration.version, migration.name, time.time()),
        )
        current = migration.version
    return current
