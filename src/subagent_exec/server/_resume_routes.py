"""``POST /tasks/{task_id}/resume``: resume a stopped task (or follow up a
finished one) over HTTP (docs/resume.md).

The body is optional: ``{"message": "..."}`` appends a new human message. The
new task keeps the old one's owner, so only the owner may resume (others get
404, as for stop). 202 with the new task's id; 409 when the task cannot be
resumed (still running: send it a message instead; completed without a
message; no checkpoints; its sub-agent is not declared here).

No ``from __future__ import annotations`` here: FastAPI reads the endpoint's
annotations (some of them local to ``add_resume_routes``) when it is declared.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request

from .._errors import CapacityError, ResumeError, RuntimeClosedError
from .._result import SubagentResult
from .._runtime import SubagentRuntime
from . import _schema as schema
from ._inputs import TASK_ID_RE
from ._json import SafeJSONResponse

#: The longest follow-up message accepted (the same bound as a run's prompt).
MAX_MESSAGE_CHARS = 8000


def add_resume_routes(
    router: APIRouter,
    runtime: SubagentRuntime,
    *,
    owner_dependency: Callable[..., Any],
    guard: list[Any],
    read_body: Callable[[Request], Awaitable[dict[str, Any]]],
    lookup: Callable[[str, str | None], SubagentResult],
) -> None:
    """Declare the resume route on ``router`` (``lookup``: the router's
    owner-checked task lookup, 404 for unknown ids and other users' tasks)."""
    Owner = Annotated[str | None, Depends(owner_dependency)]
    TaskId = Annotated[str, Path(json_schema_extra={"pattern": f"^{TASK_ID_RE.pattern}$"})]

    @router.post(
        "/tasks/{task_id}/resume", status_code=202, name="subagent_exec_resume_task",
        response_model=None,
        dependencies=guard,
        responses={
            202: {"model": schema.ResumeAccepted}, **schema.WRITE_ERRORS, 404: schema.NOT_FOUND,
            409: {"model": schema.ResumeConflict, "description": "the task cannot be resumed"},
        },
        openapi_extra=schema.json_body(
            {"message": {"type": "string", "minLength": 1, "maxLength": MAX_MESSAGE_CHARS}}
        ),
    )
    async def resume_task(task_id: TaskId, request: Request, owner: Owner) -> Any:
        """Start a new task that goes on from this stopped task's last step
        (with ``message``: a follow-up, also for a completed task). 202 with
        the new task's id; 409 (with ``reason``) when it cannot be resumed."""
        holder = lookup(task_id, owner)
        body = await read_body(request)
        message = body.get("message")
        if message is not None and (
            not isinstance(message, str) or not message.strip()
            or len(message) > MAX_MESSAGE_CHARS
        ):
            raise HTTPException(
                400, f"'message' must be a non-empty string of at most {MAX_MESSAGE_CHARS} "
                "characters (or left out)",
            )
        try:
            resumed = runtime.resume(holder.task_id, message)
        except ResumeError as exc:
            return SafeJSONResponse(
                {"detail": str(exc), "reason": exc.reason, "status": holder.status.value},
                status_code=409,
            )
        except CapacityError as exc:
            raise HTTPException(429, str(exc)) from exc
        except RuntimeClosedError as exc:
            raise HTTPException(503, str(exc)) from exc
        return {
            "task_id": resumed.task_id,
            "resumed_from": task_id,
            "status": resumed.status.value,
        }
