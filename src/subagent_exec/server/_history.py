"""``GET /tasks?limit=...``: past runs, a page at a time, from the runtime's
task store (newest first, with a cursor), so the page can list what happened
before the last restart, and what memory has let go of.

A page is read with the store's own filters (owner, parent, status, roots),
so a user's page holds ``limit`` of *their* tasks. Unfinished tasks are shown
as memory has them (``stopping`` is only known there); finished ones as the
store recorded them. Listings from the store leave ``children`` empty:
``GET /tasks/{id}`` has them.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import HTTPException

from .._result import SubagentResult
from .._runtime import SubagentRuntime
from .._status import SubagentStatus

#: Most tasks one page may hold; a page with a cursor but no limit holds this many.
MAX_PAGE = 500
DEFAULT_PAGE = 50
_LIMIT_RE = re.compile(r"[0-9]{1,4}")
_CURSOR_RE = re.compile(r"c[0-9]{1,19}")


def parse_limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_PAGE
    if not _LIMIT_RE.fullmatch(value) or not 1 <= int(value) <= MAX_PAGE:
        raise HTTPException(400, f"'limit' must be a whole number from 1 to {MAX_PAGE}")
    return int(value)


def check_cursor(value: str | None) -> str | None:
    if value is not None and not _CURSOR_RE.fullmatch(value):
        raise HTTPException(400, "'cursor' must be the next_cursor of a previous page")
    return value


def history_page(
    runtime: SubagentRuntime,
    owner: str | None,
    *,
    limit: int,
    cursor: str | None,
    parent_id: str | None,
    statuses: set[SubagentStatus] | None,
    root: bool | None,
    thread_id: str | None = None,
) -> dict[str, Any]:
    """One page of ``owner``'s tasks, newest first: ``tasks`` and ``next_cursor``."""
    page = runtime.store.list_tasks(
        limit=limit, cursor=cursor, parent_id=parent_id, statuses=statuses, owner=owner,
        root=root, thread_id=thread_id,
    )
    tasks = []
    for record in page.tasks:
        holder = None if record.is_terminal else runtime.get(record.task_id)
        # The same answer as every other task's (usage in its public form,
        # tree_usage, resumed_from): a result rebuilt from the record.
        if holder is None:
            holder = SubagentResult.from_record(record, events=[])
        data = holder.to_dict()
        data["children"] = []
        tasks.append(data)
    return {"tasks": tasks, "next_cursor": page.next_cursor}
