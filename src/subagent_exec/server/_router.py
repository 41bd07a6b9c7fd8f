"""``create_router``: the HTTP API over one runtime, for a host's FastAPI app.

Every endpoint is ``async def`` and calls the runtime directly: its calls only
take the runtime lock briefly, and no thread pool is involved (a request never
leaves a thread behind).

No ``from __future__ import annotations`` here: FastAPI reads the endpoint
annotations at decoration time, and some of them are local to ``create_router``.
"""

import html
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from .._checks import check_callable, check_int, check_number
from .._errors import CapacityError, RuntimeClosedError
from .._result import SubagentResult
from .._runtime import SubagentRuntime
from .._status import SubagentStatus
from ._runs import DEFAULT_PROMPT, RunStarter, start_demo_run
from ._stream import BufferedEvent, EventBuffer, EventStreamResponse, event_frames

logger = logging.getLogger("subagent_exec.server")

#: Task ids the API accepts in a path or filter. Engine ids are uuid4 hex; a
#: host that picks its own ids must keep to these characters to address them.
TASK_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
MAX_REASON_CHARS = 1000
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
    max_body_bytes: int = 16 * 1024,
    keepalive_seconds: float = 15.0,
    serve_page: bool = True,
) -> SubagentRouter:
    """Build the task API, the event streams and the run page for ``runtime``.

    Mount it with ``app.include_router(router, prefix="/subagents")``.

    ``owner_dependency``: a FastAPI dependency returning the current user's id;
    a user sees and stops only tasks whose ``owner`` equals it (others answer
    404). ``start_run``: what ``POST /runs`` starts (default: the bundled demo
    lead agent); ``None`` leaves ``POST /runs`` out. ``event_buffer_size``:
    how many recent events a reconnecting stream can catch up on.
    ``max_body_bytes``: larger request bodies get 413. ``keepalive_seconds``:
    idle streams send a comment this often (it also notices dead clients).
    ``serve_page``: serve the live run page at the router's root.
    """
    if not isinstance(runtime, SubagentRuntime):
        raise TypeError(f"runtime must be a SubagentRuntime, got {type(runtime).__name__}")
    check_callable("create_router", "owner_dependency", owner_dependency)
    check_int("create_router", "max_body_bytes", max_body_bytes, minimum=1)
    check_number("create_router", "keepalive_seconds", keepalive_seconds, positive=True)

    buffer = EventBuffer(runtime, capacity=event_buffer_size)
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

    router = SubagentRouter(lifespan=lifespan)
    # Annotated dependency/parameter types shared by the endpoints below.
    Owner = Annotated[str | None, Depends(owner_dependency)]
    After = Annotated[int | None, Query(ge=0, description="resume after this event seq")]
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

    @router.get("/tasks", name="subagent_exec_list_tasks")
    async def list_tasks(
        owner: Owner,
        status: Annotated[
            list[str] | None, Query(description="status filter; repeat or comma-separate")
        ] = None,
        parent_id: Annotated[str | None, Query(description="only this task's children")] = None,
        root: Annotated[bool | None, Query(description="true: only tasks without a parent")] = None,
    ) -> dict[str, Any]:
        """Your tasks in creation order, with ``last_seq``: open ``/events?after=last_seq``
        to follow them from this snapshot on without missing an event."""
        wanted = parse_statuses(status)
        if parent_id is not None:
            check_task_id(parent_id, "parent_id")
        # Read before the snapshot: replaying from here may repeat a transition
        # the snapshot already shows, but can never skip one.
        last_seq = buffer.last_seq
        holders = runtime.list_tasks(parent_id=parent_id, status=wanted)
        tasks = [
            task_json(h, owner)
            for h in holders
            if visible(h, owner) and (root is None or (h.parent_id is None) == root)
        ]
        return {"tasks": tasks, "last_seq": last_seq, "server_time": time.time()}

    @router.get("/tasks/{task_id}", name="subagent_exec_get_task")
    async def get_task(task_id: str, owner: Owner) -> dict[str, Any]:
        """One task: status, timings, parent and children, reason, error, result,
        and its AI messages so far (the list leaves those out: they can be long)."""
        holder = lookup(task_id, owner)
        data = task_json(holder, owner)
        # A copy taken now: the run may append while the response is encoded.
        data["ai_messages"] = list(holder.ai_messages)
        return data

    @router.post("/tasks/{task_id}/stop", status_code=202, name="subagent_exec_stop_task")
    async def stop_task(
        task_id: str, request: Request, owner: Owner
    ) -> Any:
        """Stop a task and its whole subtree. 202 with the status right now
        (``stopping`` while it unwinds); 409 if it had already ended."""
        holder = lookup(task_id, owner)
        body = await read_json_object(request, max_body_bytes, allowed={"reason"})
        reason = body.get("reason")
        if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS):
            raise HTTPException(
                400, f"'reason' must be a string of at most {MAX_REASON_CHARS} characters"
            )
        who = f" by {owner}" if owner is not None else ""
        stopped = runtime.request_cancel(task_id, reason or f"stopped over HTTP{who}")
        if not stopped:
            return JSONResponse(
                {"detail": f"task {task_id!r} has already ended", "status": holder.status.value},
                status_code=409,
            )
        return {
            "task_id": task_id,
            "status": "stopping" if holder.stopping else holder.status.value,
            "cancel_reason": holder.cancel_reason,
        }

    # -- event streams -------------------------------------------------------------

    @router.get("/events", name="subagent_exec_events", response_class=EventStreamResponse)
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
        response_class=EventStreamResponse,
    )
    async def task_events(
        task_id: str,
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

        @router.post("/runs", status_code=202, name="subagent_exec_start_run")
        async def start_run_endpoint(
            request: Request, owner: Owner
        ) -> dict[str, Any]:
            """Start a lead agent run in the background; answers with its root task id."""
            body = await read_json_object(request, max_body_bytes, allowed={"prompt"})
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

        @router.get("/ui-assets/{name}", name="subagent_exec_asset")
        async def asset(name: str) -> Response:
            if name not in assets:
                raise HTTPException(404, f"no asset {name!r}")
            return Response(
                assets[name], media_type=_STATIC_FILES[name],
                headers={"Cache-Control": "no-cache"},
            )

    return router


# -- helpers ---------------------------------------------------------------------------


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


class Subtree:
    """Which events belong to a task's subtree, and whether it has all ended.

    Members start as the tree known at connect time and grow from events:
    a task whose parent is a member is a member (a parent's ``created`` event
    always precedes its children's, the ring being in seq order).
    """

    def __init__(self, runtime: SubagentRuntime, root_id: str, owner: str | None) -> None:
        self._runtime = runtime
        self._owner = owner
        self.members: set[str] = set()
        stack = [root_id]
        while stack:
            task_id = stack.pop()
            if task_id in self.members:
                continue
            self.members.add(task_id)
            holder = runtime.get(task_id)
            if holder is not None:
                stack.extend(holder.children)

    def wants(self, item: BufferedEvent) -> bool:
        if item.owner != self._owner:
            return False
        if item.task_id in self.members:
            return True
        if item.parent_id is not None and item.parent_id in self.members:
            self.members.add(item.task_id)
            return True
        return False

    def finished(self) -> bool:
        """Every member has ended (a cleaned-up member counts as ended)."""
        for task_id in self.members:
            holder = self._runtime.get(task_id)
            if holder is not None and not holder.is_terminal:
                return False
        return True
