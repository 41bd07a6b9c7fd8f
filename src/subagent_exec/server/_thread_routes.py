"""``POST /threads/{thread_id}/stop``: stop a lead agent's whole thread over HTTP.

A thread holds a run's foreground tasks and the background tasks its lead
started (roots of their own, which the run's own stop does not reach;
docs/background.md). The route stops every unfinished task of the thread that
belongs to the caller, each with its subtree; another user's tasks are left
alone, and a thread with none of the caller's tasks answers 404.

No ``from __future__ import annotations`` here: FastAPI reads the endpoint's
annotations (some of them local to ``add_thread_routes``) when it is declared.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request

from .._runtime import SubagentRuntime
from . import _schema as schema
from ._inputs import MAX_REASON_CHARS, MAX_THREAD_ID_CHARS, check_reason, check_thread_id
from ._json import SafeJSONResponse
from ._owners import checked_owner

ThreadId = Annotated[
    str, Path(json_schema_extra={"minLength": 1, "maxLength": MAX_THREAD_ID_CHARS})
]


def add_thread_routes(
    router: APIRouter,
    runtime: SubagentRuntime,
    *,
    owner_dependency: Callable[..., Any],
    guard: list[Any],
    read_body: Callable[[Request], Awaitable[dict[str, Any]]],
) -> None:
    """Declare the thread routes on ``router`` (``owner_dependency``: the
    router's "who is asking"; ``guard``: its cross-site check; ``read_body``:
    its bounded JSON body reader)."""
    Owner = Annotated[str | None, Depends(owner_dependency)]

    @router.post(
        "/threads/{thread_id}/stop", status_code=202, name="subagent_exec_stop_thread",
        response_model=None,
        dependencies=guard,
        responses={
            202: {"model": schema.ThreadStopAccepted}, **schema.WRITE_ERRORS,
            404: schema.THREAD_NOT_FOUND,
            409: {"model": schema.ThreadStopConflict,
                  "description": "every task of yours in the thread had already ended"},
        },
        openapi_extra=schema.json_body(
            {"reason": {"type": "string", "maxLength": MAX_REASON_CHARS}}
        ),
    )
    async def stop_thread(thread_id: ThreadId, request: Request, owner: Owner) -> Any:
        """Stop every unfinished task of yours in a lead agent's thread,
        foreground and background, each with its subtree. 202 with the ids
        stopped; 404 if no task of yours has this thread; 409 if all had ended."""
        check_thread_id(thread_id)
        reason = check_reason((await read_body(request)).get("reason"))
        me = checked_owner(owner)
        mine = [h for h in runtime.list_tasks(thread_id=thread_id) if h.owner == me]
        if not mine:
            raise HTTPException(404, f"no thread {thread_id!r}")
        who = f" by {owner}" if owner is not None else ""
        why = reason or f"thread {thread_id} stopped over HTTP{who}"
        # Creation order: a lead is stopped before the tasks it started (it
        # cannot start more), and each stop cascades to its subtree.
        stopped = [h.task_id for h in mine if runtime.request_cancel(h.task_id, why)]
        if not stopped:
            return SafeJSONResponse(
                {"detail": f"every task of thread {thread_id!r} has already ended",
                 "thread_id": thread_id},
                status_code=409,
            )
        return {"thread_id": thread_id, "stopped": stopped, "cancel_reason": why}
