"""Task stores: where a runtime keeps task records and their event log so
that history outlives memory, and a restarted process finds it again.

``MemoryStore`` (this process only), ``SqliteStore`` (one file, stdlib
``sqlite3``) and ``PostgresStore`` (psycopg 3, the ``[postgres]`` extra;
imported only when asked for) implement the ``TaskStore`` protocol. See
docs/store.md.
"""

from typing import TYPE_CHECKING, Any

from ._memory import MemoryStore
from ._protocol import TaskStore
from ._records import (
    INTERRUPTED_ERROR,
    INTERRUPTED_STOP_REASON,
    TaskPage,
    TaskRecord,
)
from ._schema import LATEST_VERSION as SCHEMA_VERSION
from ._sqlite import SqliteStore

if TYPE_CHECKING:
    from ._postgres import PostgresStore


def __getattr__(name: str) -> Any:
    # psycopg is imported only when PostgresStore is asked for.
    if name == "PostgresStore":
        from ._postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "INTERRUPTED_ERROR",
    "INTERRUPTED_STOP_REASON",
    "SCHEMA_VERSION",
    "MemoryStore",
    "PostgresStore",
    "SqliteStore",
    "TaskPage",
    "TaskRecord",
    "TaskStore",
]
