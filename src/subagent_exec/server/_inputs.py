"""What the HTTP API accepts: owners, task and thread ids, reasons, status
filters, resume points and JSON bodies, each refused with a clear 4xx."""

import json
import re
from typing import Any

from fastapi import HTTPException, Request

from .._result import SubagentResult
from .._status import SubagentStatus

#: Task ids the API accepts in a path or filter. Engine ids are uuid4 hex; a
#: host that picks its own ids must keep to these characters to address them.
TASK_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
MAX_REASON_CHARS = 1000
MAX_THREAD_ID_CHARS = 256


def checked_owner(owner: object) -> str | None:
    if owner is not None and not isinstance(owner, str):
        # A host bug, not a client error: fail loudly in the server log.
        raise TypeError(
            f"the owner dependency must return a str or None, got {type(owner).__name__}"
        )
    return owner


def visible(holder: SubagentResult | None, owner: str | None) -> bool:
    return holder is not None and holder.owner == owner


def check_task_id(value: str, what: str) -> None:
    if not TASK_ID_RE.fullmatch(value):
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise HTTPException(
            400, f"invalid {what} {shown!r}: use 1-128 characters from A-Z a-z 0-9 . _ : -"
        )


def check_thread_id(value: str) -> None:
    """A thread id is the host's (LangGraph's ``thread_id``): any printable text."""
    if not 0 < len(value) <= MAX_THREAD_ID_CHARS or not value.isprintable() or not (
        value.strip()
    ) or any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise HTTPException(
            400, f"invalid thread id {shown!r}: use 1-{MAX_THREAD_ID_CHARS} printable characters"
        )


def check_reason(reason: object) -> str | None:
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS):
        raise HTTPException(
            400, f"'reason' must be a string of at most {MAX_REASON_CHARS} characters"
        )
    return reason


def parse_statuses(values: list[str] | None) -> set[SubagentStatus] | None:
    if not values:
        return None
    allowed = {s.value: s for s in SubagentStatus}
    wanted: set[SubagentStatus] = set()
    for part in ",".join(values).split(","):
        name = part.strip().lower()
        if name not in allowed:
            raise HTTPException(
                400, f"unknown status {part.strip()!r}; use one of: {', '.join(allowed)}"
            )
        wanted.add(allowed[name])
    return wanted


def resume_point(request: Request, after: int | None) -> int | None:
    """Where a stream resumes: the ``Last-Event-ID`` header of an EventSource
    reconnect wins over ``?after=`` (the seq of the snapshot the page started from)."""
    header = request.headers.get("last-event-id")
    if header is None or not header.strip():
        return after
    if not header.strip().isdigit():
        raise HTTPException(400, "Last-Event-ID must be a non-negative integer (an event seq)")
    return int(header.strip())


async def read_json_object(
    request: Request, max_bytes: int, *, allowed: set[str]
) -> dict[str, Any]:
    """The request body as a JSON object ({} when empty), read with a size cap."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise HTTPException(400, "Content-Length must be a non-negative integer")
        if int(declared) > max_bytes:
            raise HTTPException(413, f"request body larger than {max_bytes} bytes")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > max_bytes:
            raise HTTPException(413, f"request body larger than {max_bytes} bytes")
    if not raw.strip():
        return {}
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise HTTPException(415, "send the request body as application/json")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPException(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "request body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise HTTPException(
            400, f"unknown field(s) {', '.join(map(repr, unknown))}; allowed: "
            f"{', '.join(sorted(allowed))}",
        )
    return body
