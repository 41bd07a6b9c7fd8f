"""The OpenAPI description of the router's requests and answers.

The endpoints return plain dicts and read their bodies themselves (with the
checks in ``_inputs.py``), so these models only *document*: they are passed as
``responses=`` / ``openapi_extra=``, never as ``response_model``, and nothing
is validated or filtered through them at run time. tests/test_server_fuzz.py
holds the server to them (schemathesis: every answer's status, content type
and body must match what is written here). Answers may carry more fields than
listed (models allow extra properties), so adding a field is not a break.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from .._events import EVENT_KINDS
from .._status import SubagentStatus

StatusName = Literal["pending", "running", "completed", "failed", "cancelled", "timed_out"]
assert set(get_args(StatusName)) == {s.value for s in SubagentStatus}, "StatusName is out of date"


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorAnswer(_Open):
    """Every 4xx/5xx answer of the router (FastAPI's 422 has its own shape)."""

    detail: str


class UsageAnswer(_Open):
    """What model calls used (``SubagentResult.usage``; docs/budgets.md)."""

    input_tokens: int = Field(ge=0)
    output_tokens: int = Field(ge=0)
    total_tokens: int = Field(ge=0)
    cache_read_tokens: int = Field(ge=0)
    model_calls: int = Field(ge=0)
    #: In the price table's currency; ``None`` when a call's cost is not known.
    cost: float | None
    #: False when some call's model reported no token usage.
    usage_reported: bool
    unreported_calls: int = Field(ge=0)


class TaskAnswer(_Open):
    task_id: str
    trace_id: str
    parent_id: str | None
    children: list[str]
    subagent_name: str
    task: str
    depth: int
    owner: str | None
    status: StatusName
    stopping: bool
    result: str | None
    error: str | None
    stop_reason: str | None
    cancel_reason: str | None
    created_at: str
    started_at: str | None
    completed_at: str | None
    duration_seconds: float | None
    ai_message_count: int
    #: The lead agent's thread (docs/background.md); ``None`` outside one.
    thread_id: str | None
    #: Started with ``start_task``: a root that outlives its lead's run.
    background: bool
    #: What the task's own model calls used.
    usage: UsageAnswer
    #: What the task and every descendant used (forgotten ones included).
    tree_usage: UsageAnswer


class TaskDetailAnswer(TaskAnswer):
    #: The AI messages recorded so far (``GET /tasks/{id}`` only).
    ai_messages: list[dict[str, Any]]


class TaskListAnswer(_Open):
    tasks: list[TaskAnswer]
    last_seq: int = Field(ge=0)
    server_time: float
    #: With ?limit=: the cursor of the next (older) page; None on the last.
    next_cursor: str | None = None


class StopAccepted(_Open):
    task_id: str
    status: Literal["stopping", "pending", "running", "cancelled", "completed", "failed",
                    "timed_out"]
    cancel_reason: str | None


class StopConflict(_Open):
    detail: str
    status: StatusName


class ResumeAccepted(_Open):
    #: The new task, which goes on from ``resumed_from``.
    task_id: str
    resumed_from: str
    status: StatusName


class ResumeConflict(_Open):
    detail: str
    #: unfinished, completed, no_checkpoint, unknown_subagent or unavailable.
    reason: str
    status: StatusName


class ThreadStopAccepted(_Open):
    thread_id: str
    #: The ids of the tasks this request stopped (each with its subtree).
    stopped: list[str]
    cancel_reason: str


class ThreadStopConflict(_Open):
    detail: str
    thread_id: str


class RunStarted(_Open):
    task_id: str
    status: StatusName | None
    task_url: str
    events_url: str


def error(description: str) -> dict[str, Any]:
    # The schema inline, under application/json: given as a model, FastAPI
    # would file it under the route's own media type (text/event-stream for
    # the streams), which is not what an error answer is.
    return {
        "description": description,
        "content": {"application/json": {"schema": ErrorAnswer.model_json_schema()}},
    }


BAD_ID = error("malformed task id or other invalid input")
NOT_FOUND = error("no such task, or not yours (the same answer for both)")
THREAD_NOT_FOUND = error("no task of yours in this thread")
#: Answers every state-changing endpoint may give before reading anything.
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: error("invalid body: bad JSON, nested too deep, lone surrogates, unknown fields, "
               "or a value out of range"),
    403: error("cross-site request: the Origin is not allowed"),
    408: error("the body did not arrive in time"),
    413: error("body larger than max_body_bytes"),
    415: error("body, or declared Content-Type, that is not application/json"),
}
def _object(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {**required, **(optional or {})},
        "required": sorted(required),
    }


_TEXT = {"type": "string"}
_MAYBE_TEXT = {"type": ["string", "null"]}
_SEQ = {"type": "integer", "minimum": 0}
_TASK_EVENT_DATA = _object(
    {
        "seq": _SEQ,
        "kind": {"enum": sorted(EVENT_KINDS)},
        "task_id": _TEXT,
        "parent_id": _MAYBE_TEXT,
        "trace_id": _TEXT,
        "subagent_name": _TEXT,
        "status": {"enum": list(get_args(StatusName))},
        "timestamp": {"type": "number"},
        "data": {"type": "object"},
        "owner": _MAYBE_TEXT,
    },
    {
        # Terminal events only: why it ended, so a page needs no extra request.
        "outcome": _object({
            "result": _MAYBE_TEXT, "error": _MAYBE_TEXT,
            "cancel_reason": _MAYBE_TEXT, "stop_reason": _MAYBE_TEXT,
        }),
        # Strings that were cut (path -> full length in characters).
        "truncated": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
)


def _event(name: str, data: dict[str, Any]) -> dict[str, Any]:
    """One kind of SSE event; ``data`` is JSON text of the given schema."""
    return _object(
        {
            "event": {"const": name},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": data,
            },
        },
        {"id": {"type": "string", "pattern": "^[0-9]+$"}, "retry": {"type": "integer"}},
    )


#: A 200 event stream: the schema describes each event (the reading before
#: OpenAPI 3.2's ``itemSchema``). Its ``type`` replaces the ``string`` FastAPI
#: puts there for a response class that is not JSON.
EVENT_STREAM: dict[str, Any] = {
    "description": "Server-Sent Events: hello, then task events; reset when events were "
    "lost; end when a task's subtree has ended (see docs/server.md)",
    "content": {
        "text/event-stream": {
            "schema": {
                "type": "object",
                "oneOf": [
                    _event("hello", _object({"epoch": _TEXT, "last_seq": _SEQ})),
                    _event("task", _TASK_EVENT_DATA),
                    _event("reset", _object({"reason": _TEXT})),
                    _event("end", _object({"last_seq": _SEQ})),
                ]
            }
        }
    },
}


def json_body(properties: dict[str, Any]) -> dict[str, Any]:
    """An optional JSON object body with exactly these properties (for
    ``openapi_extra``; the endpoint reads and checks the body itself)."""
    return {
        "requestBody": {
            "required": False,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": properties,
                        "additionalProperties": False,
                    }
                }
            },
        }
    }
