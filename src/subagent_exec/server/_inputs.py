"""How the server reads what a client sends: task ids, status filters, event
seqs and request bodies.

Every rule here answers a bad input with a 4xx and a plain message, before
anything is parsed deeper or stored:

* a body is read with a size cap and a time limit (a client that stops sending
  half-way cannot hold the request), then checked for nesting depth *before*
  ``json.loads`` (whose recursion would otherwise fail deep in the parser),
  then for lone surrogates in every string, keys included (they are valid JSON
  but cannot be encoded as UTF-8 again, so storing one would break every later
  listing that shows it);
* an event seq (``Last-Event-ID`` or ``?after=``) is 1-18 ASCII digits:
  ``"²".isdigit()`` is true and ``int()`` of 4,300+ digits raises.

Query values, path segments and headers cannot carry a lone surrogate: the
server decodes them with replacement characters (query, path) or as Latin-1
(headers); tests/test_server_hardening.py sends one through each to show it.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from fastapi import HTTPException, Request

from .._status import SubagentStatus
from ._json import has_surrogate

#: Task ids the API accepts in a path or filter. Engine ids are uuid4 hex; a
#: host that picks its own ids must keep to these characters to address them.
TASK_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")

#: Deepest nesting of arrays and objects a request body may have. The bodies
#: the API accepts are flat objects; 32 leaves room without letting a 16 KiB
#: body of ``[`` reach the JSON parser's recursion limit.
MAX_JSON_DEPTH = 32
#: An event seq is at most this many ASCII digits (seqs count events of one
#: process; 10**18 of them is out of reach).
MAX_SEQ_DIGITS = 18
_SEQ_RE = re.compile(rf"[0-9]{{1,{MAX_SEQ_DIGITS}}}")
# The bytes that matter for nesting: brackets, and quotes and backslashes (a
# bracket inside a string nests nothing).
_STRUCTURE_RE = re.compile(rb'["\\\[\]{}]')


def check_task_id(value: str, what: str) -> None:
    if not TASK_ID_RE.fullmatch(value):
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise HTTPException(
            400, f"invalid {what} {shown!r}: use 1-128 characters from A-Z a-z 0-9 . _ : -"
        )


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


def parse_seq(value: str, what: str) -> int:
    """An event seq from a header or query value: 1-18 ASCII digits, else 400."""
    text = value.strip(" \t")
    if not _SEQ_RE.fullmatch(text):
        raise HTTPException(
            400,
            f"{what} must be a non-negative integer (an event seq) of 1-{MAX_SEQ_DIGITS} "
            "ASCII digits",
        )
    return int(text)


def resume_point(request: Request, after: str | None) -> int | None:
    """Where a stream resumes: the ``Last-Event-ID`` header of an EventSource
    reconnect wins over ``?after=`` (the seq of the snapshot the page started from)."""
    header = request.headers.get("last-event-id")
    if header is not None and header.strip(" \t"):
        return parse_seq(header, "Last-Event-ID")
    if after is None:
        return None
    return parse_seq(after, "'after'")


def json_nests_deeper(raw: bytes, limit: int) -> bool:
    """Whether arrays and objects nest more than ``limit`` levels deep in
    ``raw``, in one linear pass that stops as soon as they do (a regex over
    whole strings would backtrack quadratically on an unterminated one). For
    text that is not JSON the answer is meaningless, and the parser refuses
    that text anyway."""
    depth = 0
    in_string = False
    escaped_at = -1  # the position a backslash escapes
    for match in _STRUCTURE_RE.finditer(raw):
        position = match.start()
        byte = raw[position]
        if in_string:
            if position == escaped_at:
                continue
            if byte == 0x5C:  # backslash
                escaped_at = position + 1
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in b"[{":
            depth += 1
            if depth > limit:
                return True
        elif byte in b"]}":
            depth -= 1
    return False


def _strings_have_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return has_surrogate(value)
    if isinstance(value, dict):
        return any(
            _strings_have_surrogate(key) or _strings_have_surrogate(item)
            for key, item in value.items()
        )
    if isinstance(value, list):
        return any(_strings_have_surrogate(item) for item in value)
    return False


async def _read_body(request: Request, max_bytes: int, timeout: float) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not re.fullmatch(r"[0-9]{1,20}", declared.strip(" \t")):
            raise HTTPException(400, "Content-Length must be a non-negative integer")
        if int(declared) > max_bytes:
            raise HTTPException(413, f"request body larger than {max_bytes} bytes")
    raw = bytearray()
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                raw += chunk
                if len(raw) > max_bytes:
                    raise HTTPException(413, f"request body larger than {max_bytes} bytes")
    except TimeoutError:
        raise HTTPException(
            408, f"the request body did not arrive within {timeout:g} seconds"
        ) from None
    return bytes(raw)


async def read_json_object(
    request: Request, max_bytes: int, *, allowed: set[str], timeout: float
) -> dict[str, Any]:
    """The request body as a JSON object (``{}`` when empty), read within
    ``max_bytes`` and ``timeout``; 400 / 408 / 413 / 415 otherwise."""
    raw = await _read_body(request, max_bytes, timeout)
    if not raw.strip():
        return {}
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise HTTPException(415, "send the request body as application/json")
    if json_nests_deeper(raw, MAX_JSON_DEPTH):
        raise HTTPException(
            400, f"request body nests arrays or objects deeper than {MAX_JSON_DEPTH} levels"
        )
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPException(400, f"request body is not valid JSON: {exc}") from None
    if _strings_have_surrogate(body):
        raise HTTPException(
            400, "request body has a lone surrogate (\\ud800-\\udfff) in a string: "
            "send text that is valid Unicode",
        )
    if not isinstance(body, dict):
        raise HTTPException(400, "request body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise HTTPException(
            400, f"unknown field(s) {', '.join(map(repr, unknown))}; allowed: "
            f"{', '.join(sorted(allowed))}",
        )
    return body
