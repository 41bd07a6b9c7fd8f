"""``create_router``: the HTTP API over one runtime, for a host's FastAPI app.

Every endpoint is ``async def`` and calls the runtime directly: its calls only
take the runtime lock briefly, and no thread pool is involved (a request never
leaves a thread behind).

No ``from __future__ import annotations`` here: FastAPI reads the endpoint
annotations at decoration time, and some of them are local to ``create_router``.
"""

import html
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from .._checks import check_callable, check_int, check_number
from .._errors import CapacityError, RuntimeClosedError
from .._result import SubagentResult
from .._runtime import SubagentRuntime
from . import _schema as schema
from ._history import check_cursor, history_page, parse_limit
from ._inputs import (
    MAX_REASON_CHARS,
    MAX_SEQ_DIGITS,
    MAX_THREAD_ID_CHARS,
    TASK_ID_RE,
    check_reason,
    check_task_id,
    check_thread_id,
    parse_statuses,
    read_json_object,
    resume_point,
)
from ._json import SafeJSONResponse
from ._origin import check_allowed_origins, same_origin_guard
from ._owners import checked_owner, visible
from ._resume_routes import add_resume_routes
from ._runs import DEFAULT_PROMPT, RunStarter, start_demo_run
from ._stream import (
    DEFAULT_EVENT_BUFFER_BYTES,
    BufferedEvent,
    EventBuffer,
    EventStreamResponse,
    event_frames,
)
from ._subtree import Subtree
from ._thread_routes import add_thread_routes

logger = logging.getLogger("subagent_exec.server")

MAX_PROMPT_CHARS = 8000
_STATIC_FILES = {
    "app.js": "text/javascript",
    "model.js": "text/javascript",
    "view.js": "text/javascript",
    "app.css": "text/css",
}


async def current_owner() -> str | None:
    """The default "who is asking" dependency: no user system, so every request
    acts as owner ``None`` and sees the tasks started without an owner.

    A host with users overrides it, either ``create_router(...,
    owner_dependency=my_user)`` or ``app.dependency_overrides[current_owner] =
    my_user``; it may use any FastAPI dependency (headers, sessions, ...) and
    must return the user's id as a string (or ``None``). Prefer ``async def``:
    FastAPI runs a plain ``def`` dependency in its worker thread pool.
    """
    return None


class SubagentRouter(APIRouter):
    """The router returned by :func:`create_router`; ``event_buffer`` is the
    ring of recent events shared by every event stream of this router."""

    event_buffer: EventBuffer
    runtime: SubagentRuntime


def create_router(
    runtime: SubagentRuntime,
    *,
    owner_dependency: Callable[..., Any] = current_owner,
    start_run: RunStarter | None = start_demo_run,
    event_buffer_size: int = 10_000,
    event_buffer_bytes: int = DEFAULT_EVENT_BUFFER_BYTES,
    max_body_bytes: int = 16 * 1024,
    body_timeout_seconds: float = 10.0,
    keepalive_seconds: float = 15.0,
    allowed_origins: Iterable[str] = (),
    serve_page: bool = True,
) -> SubagentRouter:
    """Build the task API, the event streams and the run page for ``runtime``.

    Mount it with ``app.include_router(router, prefix="/subagents")``.

    ``owner_dependency``: a FastAPI dependency returning the current user's id;
    a user sees and stops only tasks whose ``owner`` equals it (others answer
    404). ``start_run``: what ``POST /runs`` starts (default: the bundled demo
    lead agent); ``None`` leaves ``POST /runs`` out. ``event_buffer_size`` /
    ``event_buffer_bytes``: how many recent events (at most, and at most how
    many bytes of them) a reconnecting stream can catch up on.
    ``max_body_bytes``: larger request bodies get 413; ``body_timeout_seconds``:
    a body not received by then gets 408. ``keepalive_seconds``: idle streams
    send a comment this often (it also notices dead clients).
    ``allowed_origins``: origins (``"https://app.example.com"``) besides the
    server's own whose pages may ``POST`` here (see ``_origin.py``).
    ``serve_page``: serve the live run page at the router's root.
    """
    if not isinstance(runtime, SubagentRuntime):
        raise TypeError(f"runtime must be a SubagentRuntime, got {type(runtime).__name__}")
    check_callable("create_router", "owner_dependency", owner_dependency)
    check_int("create_router", "max_body_bytes", max_body_bytes, minimum=1)
    check_number(
        "create_router", "body_timeout_seconds", body_timeout_seconds, positive=True, finite=True
    )
    check_number("create_router", "keepalive_seconds", keepalive_seconds, positive=True)
    origins = check_allowed_origins(allowed_origins)

    buffer = EventBuffer(runtime, capacity=event_buffer_size, max_bytes=event_buffer_bytes)
    # Subscribe now, so events of runs started before the first stream opens
    # can still be replayed; the app's lifespan stops (and restarts) it.
    buffer.start()

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        buffer.start()
        try:
            yield
        finally:
            buffer.stop()

    # SafeJSONResponse: a stored string that UTF-8 cannot encode must not fail a listing.
    router = SubagentRouter(lifespan=lifespan, default_response_class=SafeJSONResponse)
    # Annotated dependency/parameter types shared by the endpoints below.
    Owner = Annotated[str | None, Depends(owner_dependency)]
    # A string, checked by resume_point: a bad seq is a 400 like a bad Last-Event-ID.
    After = Annotated[
        str | None,
        Query(
            description="resume after this event seq",
            json_schema_extra={"pattern": f"^[0-9]{{1,{MAX_SEQ_DIGITS}}}$"},
        ),
    ]
    # Documents the id format; lookup() checks it (400, not FastAPI's 422).
    TaskId = Annotated[
        str, Path(json_schema_extra={"pattern": f"^{TASK_ID_RE.pattern}$"})
    ]
    # Documents the thread id format; check_thread_id checks it (400).
    ThreadQuery = Annotated[
        str | None,
        Query(description="only this lead agent's thread (foreground and background tasks)",
              json_schema_extra={"minLength": 1, "maxLength": MAX_THREAD_ID_CHARS}),
    ]
    # Every state-changing route takes it: no cross-site form posts.
    cross_site_guard = [Depends(same_origin_guard(origins))]
    router.event_buffer = buffer
    router.runtime = runtime

    def lookup(task_id: str, owner: str | None) -> SubagentResult:
        """The task if it exists and belongs to ``owner``; else 404, the same
        answer for both, so ids of other users' tasks are not confirmed."""
        check_task_id(task_id, "task id")
        holder = runtime.get(task_id)
        if holder is None or holder.owner != checked_owner(owner):
            raise HTTPException(404, f"no task {task_id!r}")
        return holder

    def task_json(holder: SubagentResult, owner: str | None) -> dict[str, Any]:
        data = holder.to_dict()
        data["children"] = [c for c in data["children"] if visible(runtime.get(c), owner)]
        return data

    # -- tasks -----------------------------------------------------------------------

    # response_model=None on the JSON routes: FastAPI would otherwise serialise
    # the returned dict through pydantic, which fails on a lone surrogate
    # before SafeJSONResponse sees it; the schema is documented by `responses`.
    @router.get(
        "/tasks", name="subagent_exec_list_tasks", response_model=None,
        responses={200: {"model": schema.TaskListAnswer}, 400: schema.BAD_ID},
    )
    async def list_tasks(
        owner: Owner,
        status: Annotated[
            list[str] | None, Query(description="status filter; repeat or comma-separate")
        ] = None,
        parent_id: Annotated[str | None, Query(description="only this task's children")] = None,
        root: Annotated[bool | None, Query(description="true: only tasks without a parent")] = None,
        thread_id: ThreadQuery = None,
        limit: Annotated[str | None, Query(description="a page from the task store, "
                                           "newest first (1-500)")] = None,
        cursor: Annotated[str | None, Query(description="next_cursor of the page before")] = None,
    ) -> dict[str, Any]:
        """Your tasks in memory in creation order, with ``last_seq``: open
        ``/events?after=last_seq`` to follow them from this snapshot on. With
        ``limit``: a page of the store, newest first, and ``next_cursor``."""
        wanted = parse_statuses(status)
        if parent_id is not None:
            check_task_id(parent_id, "parent_id")
        if thread_id is not None:
            check_thread_id(thread_id)
        # Read before the snapshot: replaying from here may repeat a transition
        # the snapshot already shows, but can never skip one.
        last_seq = buffer.last_seq
        if limit is not None or cursor is not None:
            page = history_page(runtime, checked_owner(owner), limit=parse_limit(limit),
                                cursor=check_cursor(cursor), parent_id=parent_id,
                                statuses=wanted, root=root, thread_id=thread_id)
            return {**page, "last_seq": last_seq, "server_time": time.time()}
        holders = runtime.list_tasks(parent_id=parent_id, status=wanted, thread_id=thread_id)
        tasks = [
            task_json(h, owner)
            for h in holders
            if visible(h, owner) and (root is None or (h.parent_id is None) == root)
        ]
        return {"tasks": tasks, "last_seq": last_seq, "server_time": time.time()}

    @router.get(
        "/tasks/{task_id}", name="subagent_exec_get_task", response_model=None,
        responses={
            200: {"model": schema.TaskDetailAnswer}, 400: schema.BAD_ID, 404: schema.NOT_FOUND,
        },
    )
    async def get_task(task_id: TaskId, owner: Owner) -> dict[str, Any]:
        """One task: status, timings, parent and children, reason, error, result,
        and its AI messages so far (the list leaves those out: they can be long)."""
        holder = lookup(task_id, owner)
        data = task_json(holder, owner)
        # A copy taken now: the run may append while the response is encoded.
        data["ai_messages"] = list(holder.ai_messages)
        return data

    @router.post(
        "/tasks/{task_id}/stop", status_code=202, name="subagent_exec_stop_task",
        response_model=None,
        dependencies=cross_site_guard,
        responses={
            202: {"model": schema.StopAccepted}, **schema.WRITE_ERRORS, 404: schema.NOT_FOUND,
            409: {"model": schema.StopConflict, "description": "the task had already ended"},
        },
        openapi_extra=schema.json_body(
            {"reason": {"type": "string", "maxLength": MAX_REASON_CHARS}}
        ),
    )
    async def stop_task(
        task_id: TaskId, request: Request, owner: Owner
    ) -> Any:
        """Stop a task and its whole subtree. 202 with the status right now
        (``stopping`` while it unwinds); 409 if it had already ended."""
        holder = lookup(task_id, owner)
        body = await read_json_object(
            request, max_body_bytes, allowed={"reason"}, timeout=body_timeout_seconds
        )
        reason = check_reason(body.get("reason"))
        who = f" by {owner}" if owner is not None else ""
        stopped = runtime.request_cancel(task_id, reason or f"stopped over HTTP{who}")
        if not stopped:
            return SafeJSONResponse(
                {"detail": f"task {task_id!r} has already ended", "status": holder.status.value},
                status_code=409,
            )
        return {
            "task_id": task_id,
            "status": "stopping" if holder.stopping else holder.status.value,
            "cancel_reason": holder.cancel_reason,
        }

    add_resume_routes(
        router, runtime, owner_dependency=owner_dependency, guard=cross_site_guard,
        read_body=lambda request: read_json_object(
            request, max_body_bytes, allowed={"message"}, timeout=body_timeout_seconds
        ),
        lookup=lookup,
    )
    add_thread_routes(
        router, runtime, owner_dependency=owner_dependency, guard=cross_site_guard,
        read_body=lambda request: read_json_object(
            request, max_body_bytes, allowed={"reason"}, timeout=body_timeout_seconds
        ),
    )

    # -- event streams -------------------------------------------------------------

    @router.get(
        "/events", name="subagent_exec_events", response_class=EventStreamResponse,
        status_code=200, responses={200: schema.EVENT_STREAM, 400: schema.BAD_ID},
    )
    async def events(
        request: Request,
        owner: Owner,
        after: After = None,
    ) -> EventStreamResponse:
        """Every event of your tasks as Server-Sent Events (``id:`` = seq). Starts
        now, or after ``Last-Event-ID`` / ``?after=`` (replayed from the buffer)."""
        start = resume_point(request, after)
        if start is None:
            # "From now on" means from this request, not from whenever the
            # response body starts (the client may act on the headers first).
            start = buffer.last_seq
        me = checked_owner(owner)

        def select(item: BufferedEvent) -> bool:
            return item.owner == me

        frames = event_frames(
            buffer, after=start, select=select,
            keepalive_seconds=keepalive_seconds,
        )
        return EventStreamResponse(frames)

    @router.get(
        "/tasks/{task_id}/events", name="subagent_exec_task_events",
        response_class=EventStreamResponse, status_code=200,
        responses={200: schema.EVENT_STREAM, 400: schema.BAD_ID, 404: schema.NOT_FOUND},
    )
    async def task_events(
        task_id: TaskId,
        request: Request,
        owner: Owner,
        after: After = None,
    ) -> EventStreamResponse:
        """The events of one task and all its descendants, from the oldest one
        still buffered (or after ``Last-Event-ID``); the stream sends ``end`` and
        closes once the whole subtree has ended and every event was sent."""
        lookup(task_id, owner)
        start = resume_point(request, after)
        subtree = Subtree(runtime, task_id, checked_owner(owner))
        frames = event_frames(
            buffer, after=0 if start is None else start,
            select=subtree.wants, finished=subtree.finished,
            keepalive_seconds=keepalive_seconds,
        )
        return EventStreamResponse(frames)

    # -- runs ------------------------------------------------------------------------

    if start_run is not None:
        run_starter = start_run

        @router.post(
            "/runs", status_code=202, name="subagent_exec_start_run", response_model=None,
            dependencies=cross_site_guard,
            responses={
                202: {"model": schema.RunStarted}, **schema.WRITE_ERRORS,
                503: schema.error("the runtime is full or shut down"),
            },
            openapi_extra=schema.json_body(
                {"prompt": {"type": "string", "minLength": 1, "maxLength": MAX_PROMPT_CHARS,
                            "pattern": r"\S"}}
            ),
        )
        async def start_run_endpoint(
            request: Request, owner: Owner
        ) -> dict[str, Any]:
            """Start a lead agent run in the background; answers with its root task id."""
            body = await read_json_object(
                request, max_body_bytes, allowed={"prompt"}, timeout=body_timeout_seconds
            )
            prompt = body.get("prompt", DEFAULT_PROMPT)
            if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > MAX_PROMPT_CHARS:
                raise HTTPException(
                    400, f"'prompt' must be a non-empty string of at most {MAX_PROMPT_CHARS} "
                    "characters",
                )
            try:
                task_id = run_starter(runtime, prompt=prompt, owner=checked_owner(owner))
            except (CapacityError, RuntimeClosedError) as exc:
                raise HTTPException(503, str(exc)) from None
            except ValueError as exc:
                raise HTTPException(400, str(exc)) from None
            holder = runtime.get(task_id)
            return {
                "task_id": task_id,
                "status": holder.status.value if holder is not None else None,
                "task_url": request.url_for("subagent_exec_get_task", task_id=task_id).path,
                "events_url": request.url_for(
                    "subagent_exec_task_events", task_id=task_id
                ).path,
            }

    # -- the page --------------------------------------------------------------------

    if serve_page:
        static = resources.files("subagent_exec.server") / "static"
        page_template = (static / "index.html").read_text(encoding="utf-8")
        assets = {name: (static / name).read_bytes() for name in _STATIC_FILES}
        can_start_runs = "true" if start_run is not None else "false"

        @router.get("/", response_class=HTMLResponse, name="subagent_exec_page")
        async def page(request: Request) -> HTMLResponse:
            """The live run page (plain HTML/JS, no build step)."""
            base = request.url_for("subagent_exec_page").path
            body = page_template.replace("__BASE__", html.escape(base, quote=True)).replace(
                "__CAN_START_RUNS__", can_start_runs
            )
            return HTMLResponse(body, headers={"Cache-Control": "no-cache"})

        @router.get("/ui-assets/{name}", name="subagent_exec_asset", include_in_schema=False)
        async def asset(name: str) -> Response:
            if name not in assets:
                raise HTTPException(404, f"no asset {name!r}")
            return Response(
                assets[name], media_type=_STATIC_FILES[name],
                headers={"Cache-Control": "no-cache"},
            )

    return router
