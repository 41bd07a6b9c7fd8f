"""How the server writes JSON: never failing on text it holds, and cutting long
strings short with a marker.

Text reaches the runtime from many places besides HTTP (the Python API, models,
tools), so a task's prompt, result or messages may hold a lone surrogate
(``"\\ud800"``), which UTF-8 cannot encode. Such a string must not make a later
listing fail: every JSON body and event frame the server writes replaces lone
surrogates with U+FFFD (the HTTP boundary itself refuses them on input, see
``_inputs.py``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.responses import JSONResponse

#: A lone surrogate code point (a valid pair never appears in a Python ``str``
#: decoded from UTF-8 or from JSON: both combine pairs into one code point).
SURROGATE_RE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"
#: What a cut string ends with (its full length is in the event's ``truncated``).
TRUNCATION_MARK = "…"


def has_surrogate(text: str) -> bool:
    return SURROGATE_RE.search(text) is not None


def dumps(data: object) -> str:
    """Compact JSON as text, lone surrogates replaced by U+FFFD (so the result
    always encodes as UTF-8). Values JSON cannot express become ``str(value)``."""
    text = json.dumps(
        data, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=str
    )
    return SURROGATE_RE.sub(REPLACEMENT, text)


def dumps_bytes(data: object) -> bytes:
    return dumps(data).encode("utf-8")


class SafeJSONResponse(JSONResponse):
    """The router's JSON responses: like Starlette's, but a stored string with a
    lone surrogate is written as U+FFFD instead of failing the whole response."""

    def render(self, content: Any) -> bytes:
        return dumps_bytes(content)


def truncate_strings(
    value: Any, limit: int, path: str, truncated: dict[str, int]
) -> Any:
    """A copy of a JSON-like ``value`` whose strings longer than ``limit``
    characters are cut to ``limit`` and end with :data:`TRUNCATION_MARK`.
    Each cut string's path (``data.task``, ``data.message.content.0.text``) and
    full length are added to ``truncated``."""
    if isinstance(value, str):
        if len(value) <= limit:
            return value
        truncated[path] = len(value)
        return value[:limit] + TRUNCATION_MARK
    if isinstance(value, dict):
        return {
            key: truncate_strings(item, limit, f"{path}.{key}", truncated)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [
            truncate_strings(item, limit, f"{path}.{index}", truncated)
            for index, item in enumerate(value)
        ]
    return value
