"""The processes of a cluster: each claims a slot (its event numbering),
writes a heartbeat, and marks the unfinished tasks of a process that is gone
FAILED (``stop_reason="interrupted"``), exactly once however many live
processes notice it at the same time.

"Exactly once" is the database's: a dead process is claimed by
``UPDATE subagent_processes SET reaped_by = me ... WHERE reaped_by IS NULL
RETURNING``; under PostgreSQL's row locks a second claimant waits for the
first one's commit, then finds the row claimed and does nothing. The claim,
the terminal events and the updated records are one transaction.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._errors import StoreError
from .._events import TaskEvent
from .._store._postgres import EVENTS_CHANNEL, FEED_LOCK_KEY, MAINTENANCE_LOCK_KEY
from .._store._records import (
    INTERRUPTED_ERROR,
    INTERRUPTED_STOP_REASON,
    dumps,
    interrupt_record,
    interrupted_event,
    key,
    loads,
)
from .._store._statements import UNFINISHED_SQL, UPSERT_TASK, task_row
from ._options import STRIDE

INSERT_EVENT = (
    "INSERT INTO subagent_events (seq, task_id, kind, event) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (seq) DO NOTHING"
)


@dataclass(frozen=True)
class Numbering:
    """This process's slot and the first seq it numbers an event with."""

    slot: int
    first_seq: int

    def is_mine(self, seq: int) -> bool:
        return seq % STRIDE == self.slot and seq >= self.first_seq


def claim_slot(conn: Any, process_id: str, last_seq: int) -> Numbering:
    """Give this process the lowest slot no live (or not yet reaped) process
    holds, and its first seq: above every seq the store has seen."""
    with conn.transaction():
        cur = conn.cursor()
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (MAINTENANCE_LOCK_KEY,))
        cur.execute(
            "SELECT slot FROM subagent_processes WHERE slot IS NOT NULL AND reaped_by IS NULL "
            "AND stopped_at IS NULL AND process_id <> %s",
            (process_id,),
        )
        used = {int(row[0]) for row in cur.fetchall()}
        free = [slot for slot in range(STRIDE) if slot not in used]
        if not free:
            raise StoreError(
                f"{STRIDE} processes already share this task store; stop some, or wait "
                "until the dead ones are declared gone"
            )
        slot = free[0]
        cur.execute(
            "UPDATE subagent_processes SET slot = %s, heartbeat_at = %s WHERE process_id = %s",
            (slot, time.time(), process_id),
        )
        cur.execute("SELECT max(seq) FROM subagent_events")
        top = max(int(cur.fetchone()[0] or 0), last_seq)
        cur.execute("SELECT value FROM subagent_meta WHERE key = 'removed_through'")
        found = cur.fetchone()
        top = max(top, int(found[0]) if found else 0)
    # The first seq of this slot at least a stride above ``top``: the hub
    # starts one stride below it, which is then never below a seq of the store.
    base = top + STRIDE
    return Numbering(slot, base + (slot - base) % STRIDE)


def heartbeat(conn: Any, process_id: str) -> bool:
    """Write this process's heartbeat; False if it was declared gone."""
    cur = conn.cursor()
    cur.execute(
        "UPDATE subagent_processes SET heartbeat_at = %s WHERE process_id = %s "
        "AND reaped_by IS NULL",
        (time.time(), process_id),
    )
    return bool(cur.rowcount)


def _pid_gone(host: str, pid: int) -> bool:
    """Whether a process of this host no longer exists (with missed heartbeats: gone)."""
    if host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, as someone else
        return False
    return False


def dead_processes(
    conn: Any, process_id: str, dead_after: float, missed_after: float
) -> list[str]:
    """Processes that are gone and not reaped yet: stopped, silent for more
    than ``dead_after`` seconds, or of this host with their pid gone and
    silent for more than ``missed_after`` (two heartbeats: a live process of
    another machine that happens to share this host name still counts as
    alive)."""
    cur = conn.cursor()
    cur.execute(
        "SELECT process_id, host, pid, heartbeat_at, stopped_at FROM subagent_processes "
        "WHERE reaped_by IS NULL AND process_id <> %s",
        (process_id,),
    )
    now = time.time()
    return [
        row[0] for row in cur.fetchall()
        if row[4] is not None
        or float(row[3]) < now - dead_after
        or (float(row[3]) < now - missed_after and _pid_gone(str(row[1]), int(row[2])))
    ]


def reap(
    conn: Any, dead: str, process_id: str, take_seq: Callable[[int], int]
) -> list[TaskEvent] | None:
    """Claim the dead process ``dead`` and mark its unfinished tasks
    interrupted, in one transaction. None if another process claimed it
    first; else the terminal events written (numbered by ``take_seq``)."""
    now = time.time()
    with conn.transaction():
        cur = conn.cursor()
        # Events inserted in feed order (see PostgresStore._before_events).
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (FEED_LOCK_KEY,))
        cur.execute(
            "UPDATE subagent_processes SET reaped_by = %s, reaped_at = %s "
            "WHERE process_id = %s AND reaped_by IS NULL RETURNING process_id",
            (process_id, now, dead),
        )
        if cur.fetchone() is None:
            return None
        cur.execute(
            f"SELECT record FROM subagent_tasks WHERE process_id = %s AND status IN "
            f"{UNFINISHED_SQL} ORDER BY created_seq FOR UPDATE",
            (dead,),
        )
        records = [loads(row[0]) for row in cur.fetchall()]
        events: list[TaskEvent] = []
        for record in records:
            seq = take_seq(int(record["last_seq"]))
            events.append(interrupted_event(record, seq=seq, now=now, process_id=process_id))
            interrupt_record(
                record, seq=seq, now=now, error=INTERRUPTED_ERROR,
                stop_reason=INTERRUPTED_STOP_REASON,
            )
        if events:
            cur.executemany(
                INSERT_EVENT,
                [(e.seq, key(e.task_id), e.kind, dumps(e.to_dict())) for e in events],
            )
            cur.executemany(UPSERT_TASK.replace("?", "%s"), [task_row(r) for r in records])
            cur.execute("SELECT pg_notify(%s, %s)", (EVENTS_CHANNEL, process_id))
    return events
