"""The SQL of the durable stores: the statements every dialect runs (with
``?`` placeholders; PostgreSQL's connection turns them into ``%s``), the rows
they take, and the retention and deletion queries. No state here: the store
(``_sql.py``) holds it and hands a transaction (:class:`Tx`) in.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

from ._filters import Query
from ._records import TERMINAL_VALUES, UNFINISHED_VALUES, Record, dumps, key

TERMINAL_SQL = "(" + ", ".join(f"'{v}'" for v in sorted(TERMINAL_VALUES)) + ")"
UNFINISHED_SQL = "(" + ", ".join(f"'{v}'" for v in sorted(UNFINISHED_VALUES)) + ")"
CHUNK = 500

INSERT_EVENT = (
    "INSERT INTO subagent_events (seq, task_id, kind, event) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (seq) DO NOTHING"
)
UPSERT_TASK = (
    "INSERT INTO subagent_tasks (task_id, created_seq, parent_id, owner, thread_id, status, "
    "completed_at, last_seq, process_id, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (task_id) DO UPDATE SET thread_id = excluded.thread_id, "
    "status = excluded.status, completed_at = excluded.completed_at, "
    "last_seq = excluded.last_seq, record = excluded.record"
)


class Tx(Protocol):
    """One transaction: statements use ``?`` placeholders in every dialect."""

    def q(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...


def meta_int(tx: Tx, name: str) -> int:
    rows = tx.q("SELECT value FROM subagent_meta WHERE key = ?", (name,))
    return int(rows[0][0]) if rows else 0


def task_row(record: Record) -> tuple[Any, ...]:
    return (
        key(record["task_id"]),
        int(record["created_seq"]),
        key(record.get("parent_id")),
        key(record.get("owner")),
        key(record.get("thread_id")),
        record["status"],
        record.get("completed_at"),
        int(record["last_seq"]),
        record.get("process_id"),
        dumps(record),
    )


def where(query: Query, below: int | None) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if below is not None:
        clauses.append("created_seq < ?")
        params.append(below)
    if query.parent_id is not None:
        clauses.append("parent_id = ?")
        params.append(key(query.parent_id))
    if query.statuses is not None:
        clauses.append(f"status IN ({', '.join('?' * len(query.statuses))})")
        params.extend(sorted(query.statuses))
    if query.owner is None:
        clauses.append("owner IS NULL")
    elif query.owner is not ...:
        clauses.append("owner = ?")
        params.append(key(query.owner))
    if query.root is not None:
        clauses.append("parent_id IS NULL" if query.root else "parent_id IS NOT NULL")
    if query.thread_id is not None:
        clauses.append("thread_id = ?")
        params.append(key(query.thread_id))
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), params


def doomed_by_retention(
    tx: Tx, max_tasks: int | None, max_age_days: float | None
) -> list[str]:
    """Stored keys of the finished tasks retention removes: the oldest beyond
    ``max_tasks``, and those finished more than ``max_age_days`` ago."""
    doomed: list[str] = []
    if max_tasks is not None:
        count = tx.q(f"SELECT count(*) FROM subagent_tasks WHERE status IN {TERMINAL_SQL}")
        excess = int(count[0][0]) - max_tasks
        if excess > 0:
            doomed += [
                row[0] for row in tx.q(
                    f"SELECT task_id FROM subagent_tasks WHERE status IN {TERMINAL_SQL}"
                    " ORDER BY completed_at, created_seq LIMIT ?",
                    (excess,),
                )
            ]
    if max_age_days is not None:
        horizon = time.time() - max_age_days * 86400.0
        doomed += [
            row[0] for row in tx.q(
                f"SELECT task_id FROM subagent_tasks WHERE status IN {TERMINAL_SQL} "
                "AND completed_at < ?",
                (horizon,),
            )
        ]
    return list(dict.fromkeys(doomed))


def delete_tasks(tx: Tx, task_keys: Sequence[str | None], removed_through: int) -> int:
    """Remove these tasks (stored keys) and their events; returns the highest
    seq ever removed, also written to ``subagent_meta``."""
    highest = removed_through
    for start in range(0, len(task_keys), CHUNK):
        chunk = task_keys[start : start + CHUNK]
        marks = ", ".join("?" * len(chunk))
        top = tx.q(f"SELECT max(seq) FROM subagent_events WHERE task_id IN ({marks})", chunk)
        highest = max(highest, int(top[0][0] or 0))
        tx.q(f"DELETE FROM subagent_events WHERE task_id IN ({marks})", chunk)
        tx.q(f"DELETE FROM subagent_tasks WHERE task_id IN ({marks})", chunk)
    if highest > removed_through:
        tx.q(
            "INSERT INTO subagent_meta (key, value) VALUES ('removed_through', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(highest),),
        )
    return highest
