"""Stops across processes: a stop asked of a task another live process runs
is written to the store (``subagent_stop_requests``) and announced with
``NOTIFY subagent_stop`` (payload: the process it is for). That process
claims its open requests (``UPDATE ... RETURNING``: each handled once) and
stops the tasks locally, with the guarantees of a local stop. A missed
notification is caught by its next poll of the same table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .._store._records import TERMINAL_VALUES, key, loads

STOPS_CHANNEL = "subagent_stop"


@dataclass(frozen=True)
class StoredTask:
    """What a stop or a child needs to know of a task another process runs."""

    task_id: str
    process_id: str | None
    status: str
    depth: int
    trace_id: str
    owner: str | None
    thread_id: str | None
    #: Why it stopped, or is stopping (None: it is not).
    stopped: str | None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_VALUES


def read_task(conn: Any, task_id: str) -> StoredTask | None:
    cur = conn.cursor()
    cur.execute(
        "SELECT process_id, status, record FROM subagent_tasks WHERE task_id = %s",
        (key(task_id),),
    )
    row = cur.fetchone()
    if row is None:
        return None
    record = loads(row[2])
    terminal = row[1] in TERMINAL_VALUES
    reason = record.get("cancel_reason")
    if terminal and reason is None:
        reason = f"ended {row[1]}"
    return StoredTask(
        task_id=task_id,
        process_id=row[0],
        status=row[1],
        depth=int(record.get("depth") or 1),
        trace_id=str(record.get("trace_id") or ""),
        owner=record.get("owner"),
        thread_id=record.get("thread_id"),
        stopped=reason,
    )


def send_stop(conn: Any, task_id: str, target: str, reason: str, sender: str) -> None:
    """Write the request and notify ``target``, in one transaction (the
    notification is delivered at commit, when the request can be read)."""
    with conn.transaction():
        cur = conn.cursor()
        cur.execute(
            "INSERT INTO subagent_stop_requests (task_id, process_id, reason, requested_by, "
            "requested_at) VALUES (%s, %s, %s, %s, %s)",
            (task_id, target, reason, sender, time.time()),
        )
        cur.execute("SELECT pg_notify(%s, %s)", (STOPS_CHANNEL, target))


def claim_stops(conn: Any, process_id: str) -> list[tuple[str, str]]:
    """This process's open stop requests, each claimed once: (task_id, reason)."""
    cur = conn.cursor()
    cur.execute(
        "UPDATE subagent_stop_requests SET handled_at = %s WHERE process_id = %s "
        "AND handled_at IS NULL RETURNING task_id, reason, request_id",
        (time.time(), process_id),
    )
    return [(str(r[0]), str(r[1])) for r in sorted(cur.fetchall(), key=lambda r: r[2])]


def stopped_parents(conn: Any, parent_ids: list[str]) -> dict[str, str]:
    """Of these tasks, those that ended or are stopping, with why."""
    if not parent_ids:
        return {}
    cur = conn.cursor()
    cur.execute(
        "SELECT task_id, status, record FROM subagent_tasks WHERE task_id = ANY(%s)",
        ([key(p) for p in parent_ids],),
    )
    found: dict[str, str] = {}
    for _, status, text in cur.fetchall():
        record = loads(text)
        if status in TERMINAL_VALUES or record.get("cancel_reason") is not None:
            found[record["task_id"]] = record.get("cancel_reason") or f"ended {status}"
    return found
