"""The HTTP API against a real uvicorn server on 127.0.0.1: runs, stop, event
streams (resume, end, disconnect), ownership and bad input."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from subagent_exec import SubagentRuntime
from subagent_exec.server import SubagentRouter

from .server_support import (
    SETTLE,
    LiveServer,
    make_app,
    non_pool_threads,
    read_until,
    sse_events,
    wait_for,
)

TERMINAL = {"completed", "failed", "cancelled", "timed_out"}
JSON = "application/json"


@pytest.fixture(scope="module")
def http_runtime() -> Iterator[SubagentRuntime]:
    # A grace period makes "stopping" last long enough to be seen over HTTP.
    runtime = SubagentRuntime(
        max_workers=4, max_depth=3, cancel_grace_seconds=0.3, cleanup_timeout_seconds=2.0,
        name="http",
    )
    yield runtime
    assert runtime.shutdown(cancel=True, wait=True, timeout=30.0)


@pytest.fixture(scope="module")
def served(http_runtime: SubagentRuntime) -> Iterator[tuple[LiveServer, SubagentRouter]]:
    app, router = make_app(http_runtime)
    server = LiveServer(app).start()
    yield server, router
    server.stop()


@pytest.fixture
def live(served: tuple[LiveServer, SubagentRouter]) -> LiveServer:
    return served[0]


@pytest.fixture
def router(served: tuple[LiveServer, SubagentRouter]) -> SubagentRouter:
    return served[1]


@pytest.fixture
def user() -> str:
    """A fresh user per test: the other tests' tasks are invisible to it."""
    return f"user-{uuid.uuid4().hex[:8]}"


def start_run(client: httpx.Client) -> str:
    response = client.post("/runs")
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["events_url"] == f"/tasks/{body['task_id']}/events"
    return str(body["task_id"])


def wait_children_running(client: httpx.Client, root: str, count: int = 1) -> list[dict]:
    def children() -> list[dict] | None:
        tasks = client.get("/tasks", params={"parent_id": root, "status": "running"}).json()
        return tasks["tasks"] if len(tasks["tasks"]) >= count else None

    return wait_for(children, f"{count} running children of {root}")  # type: ignore[no-any-return]


def stop_and_wait(client: httpx.Client, task_id: str) -> None:
    client.post(f"/tasks/{task_id}/stop")
    wait_for(
        lambda: client.get(f"/tasks/{task_id}").json()["status"] in TERMINAL, f"{task_id} ends"
    )


# -- a run, its stream, and the stop ------------------------------------------------------


def test_stop_root_cancels_every_descendant_and_the_stream_ends_with_terminal_events(
    live: LiveServer, user: str
) -> None:
    client = live.client(user)
    root = start_run(client)
    with client.stream("GET", f"/tasks/{root}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
        # Watch the tree fill in: the lead agent, its sub-agents, theirs.
        seen = read_until(
            events, lambda e: e.kind == "started" and e.data["parent_id"] not in (None, root)
        )
        stop = client.post(f"/tasks/{root}/stop", json={"reason": "user pressed Stop"})
        assert stop.status_code == 202
        assert stop.json()["status"] == "stopping"  # unwinding, not yet terminal
        assert stop.json()["cancel_reason"] == "user pressed Stop"
        seen += list(events)  # the server ends the stream once the whole tree ended
    assert seen[-1].event == "end"
    task_events = [e for e in seen if e.event == "task"]
    ids = [e.id for e in task_events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), "events in seq order, no repeats"
    tree = {e.data["task_id"] for e in task_events}
    assert len(tree) >= 3, "the run has sub-agents, and they have their own"
    # Every task of the tree got exactly one terminal event, and it says cancelled.
    terminal = [e for e in task_events if e.kind in TERMINAL]
    assert sorted(e.data["task_id"] for e in terminal) == sorted(tree)
    assert {e.kind for e in terminal} == {"cancelled"}
    # A terminal event says why, so a page needs no extra request.
    reasons = {e.data["task_id"]: e.data["outcome"]["cancel_reason"] for e in terminal}
    assert reasons[root] == "user pressed Stop"
    # The terminal events close the stream: nothing but "end" follows them.
    last_terminal = max(seen.index(e) for e in terminal)
    assert [e.event for e in seen[last_terminal + 1 :]] == ["end"]
    listed = client.get("/tasks").json()["tasks"]
    assert {t["task_id"] for t in listed} == tree
    parents = {t["task_id"]: t["parent_id"] for t in listed}
    for task in listed:
        assert task["status"] == "cancelled", task
        assert task["stopping"] is False
        if task["task_id"] != root:
            # Usually the root's stop; a child its parent was starting just as
            # the stop reached that parent says "parent ... was already stopped".
            ancestors, up = [], parents[task["task_id"]]
            while up is not None:
                ancestors.append(up)
                up = parents.get(up)
            assert any(a in task["cancel_reason"] for a in ancestors), (
                "descendants say which ancestor stopped them", task["cancel_reason"]
            )


def test_task_detail_shows_tree_timings_and_owner(live: LiveServer, user: str) -> None:
    client = live.client(user)
    root = start_run(client)
    children = wait_children_running(client, root)
    detail = client.get(f"/tasks/{root}").json()
    assert detail["status"] == "running" and detail["parent_id"] is None
    assert detail["started_at"] is not None and detail["completed_at"] is None
    assert {c["task_id"] for c in children} <= set(detail["children"])
    child = client.get(f"/tasks/{children[0]['task_id']}").json()
    assert child["parent_id"] == root
    assert child["owner"] == user, "children inherit the owner of the run"
    stop_and_wait(client, root)
    ended = client.get(f"/tasks/{root}").json()
    assert ended["completed_at"] is not None and ended["duration_seconds"] > 0


def test_task_detail_has_the_ai_messages_the_list_leaves_out(
    live: LiveServer, user: str
) -> None:
    client = live.client(user)
    root = start_run(client)
    wait_for(lambda: client.get(f"/tasks/{root}").json()["ai_messages"], "a first AI message")
    wait_for(
        lambda: client.get(f"/tasks/{root}").json()["status"] == "completed", "the run ends", 30
    )
    detail = client.get(f"/tasks/{root}").json()
    messages = detail["ai_messages"]
    assert len(messages) == detail["ai_message_count"] == 3
    delegated = [c["args"]["subagent_type"] for m in messages for c in m["tool_calls"]]
    assert delegated == ["researcher", "researcher", "writer"]
    assert messages[-1]["text"] == detail["result"] and messages[-1]["id"]
    listed = client.get("/tasks", params={"root": "true"}).json()["tasks"]
    assert [t["ai_message_count"] for t in listed] == [3]
    assert "ai_messages" not in listed[0], "the list stays small: counts only"


def test_list_filters_status_parent_and_root(live: LiveServer, user: str) -> None:
    client = live.client(user)
    first = start_run(client)
    wait_children_running(client, first)
    second = start_run(client)
    stop_and_wait(client, second)
    roots = client.get("/tasks", params={"root": "true"}).json()["tasks"]
    assert [t["task_id"] for t in roots] == [first, second]
    non_roots = client.get("/tasks", params={"root": "false"}).json()["tasks"]
    assert non_roots and all(t["parent_id"] is not None for t in non_roots)
    running = client.get("/tasks", params={"status": "running"}).json()["tasks"]
    assert first in {t["task_id"] for t in running} and second not in {
        t["task_id"] for t in running
    }
    both = client.get("/tasks", params=[("status", "running"), ("status", "cancelled")]).json()
    comma = client.get("/tasks", params={"status": "running,cancelled"}).json()
    assert {t["task_id"] for t in both["tasks"]} == {t["task_id"] for t in comma["tasks"]}
    assert second in {t["task_id"] for t in both["tasks"]}
    children = client.get("/tasks", params={"parent_id": first}).json()["tasks"]
    assert children and all(t["parent_id"] == first for t in children)
    stop_and_wait(client, first)


def test_stop_answers_404_for_unknown_and_409_for_terminal(live: LiveServer, user: str) -> None:
    client = live.client(user)
    unknown = client.post(f"/tasks/{uuid.uuid4().hex}/stop")
    assert unknown.status_code == 404
    root = start_run(client)
    stop_and_wait(client, root)
    again = client.post(f"/tasks/{root}/stop")
    assert again.status_code == 409
    assert again.json() == {"detail": f"task {root!r} has already ended", "status": "cancelled"}


def test_stop_a_single_sub_agent_leaves_the_run_going(live: LiveServer, user: str) -> None:
    client = live.client(user)
    root = start_run(client)
    child = wait_children_running(client, root)[0]["task_id"]
    assert client.post(f"/tasks/{child}/stop").status_code == 202
    wait_for(lambda: client.get(f"/tasks/{child}").json()["status"] == "cancelled", "child ends")
    assert client.get(f"/tasks/{root}").json()["status"] == "running"
    stop_and_wait(client, root)


# -- ownership ---------------------------------------------------------------------------------


def test_another_users_task_is_404_everywhere_and_cannot_be_stopped(live: LiveServer) -> None:
    alice = live.client(f"alice-{uuid.uuid4().hex[:6]}")
    bob = live.client(f"bob-{uuid.uuid4().hex[:6]}")
    root = start_run(alice)
    child = wait_children_running(alice, root)[0]["task_id"]
    never = uuid.uuid4().hex
    for task_id in (root, child):
        for method, path in [
            ("GET", f"/tasks/{task_id}"),
            ("POST", f"/tasks/{task_id}/stop"),
            ("GET", f"/tasks/{task_id}/events"),
        ]:
            theirs = bob.request(method, path)
            nobody = bob.request(method, path.replace(task_id, never))
            assert theirs.status_code == 404, (method, path)
            # Same answer as for an id that does not exist: nothing is confirmed.
            assert theirs.json()["detail"] == nobody.json()["detail"].replace(never, task_id)
    assert bob.get("/tasks").json()["tasks"] == []
    assert bob.get("/tasks", params={"parent_id": root}).json()["tasks"] == []
    assert alice.get(f"/tasks/{root}").json()["status"] == "running", "bob's stop did nothing"
    # Anonymous requests (no user) see only owner-less tasks either.
    assert root not in {t["task_id"] for t in live.client().get("/tasks").json()["tasks"]}
    stop_and_wait(alice, root)


def test_event_stream_carries_only_the_users_own_events(live: LiveServer) -> None:
    alice = live.client(f"alice-{uuid.uuid4().hex[:6]}")
    bob = live.client(f"bob-{uuid.uuid4().hex[:6]}")
    with bob.stream("GET", "/events") as response:
        events = sse_events(response)
        alices = start_run(alice)
        wait_children_running(alice, alices)
        bobs = start_run(bob)  # after alice's: her events come first in seq order
        first = read_until(events, lambda e: e.event == "task")[-1]
        assert first.data["task_id"] == bobs and first.data["owner"] != alice.headers["x-user"]
        stop_and_wait(bob, bobs)
        seen = read_until(events, lambda e: e.kind in TERMINAL and e.data["task_id"] == bobs)
    assert {e.data["owner"] for e in [first, *seen]} == {bob.headers["x-user"]}
    stop_and_wait(alice, alices)


def test_dependency_override_of_current_owner_in_a_prefixed_mount(
    http_runtime: SubagentRuntime,
) -> None:
    from fastapi import FastAPI, Header

    from subagent_exec.server import create_router, current_owner

    def api_key_user(x_api_key: str = Header()) -> str:
        return {"key-1": "carol"}.get(x_api_key, "nobody")

    app = FastAPI()
    app.include_router(create_router(http_runtime), prefix="/agents")
    app.dependency_overrides[current_owner] = api_key_user
    server = LiveServer(app).start()
    try:
        carol = server.client(headers={"x-api-key": "key-1"})
        started = carol.post("/agents/runs")
        assert started.status_code == 202
        root = started.json()["task_id"]
        assert started.json()["task_url"] == f"/agents/tasks/{root}"
        assert carol.get(f"/agents/tasks/{root}").json()["owner"] == "carol"
        other = server.client(headers={"x-api-key": "key-2"})
        assert other.get(f"/agents/tasks/{root}").status_code == 404
        # The header is required by the host's dependency: FastAPI's 422, as JSON.
        assert server.client().get("/agents/tasks").status_code == 422
        page = carol.get("/agents/")
        assert page.status_code == 200
        assert '<meta name="subagent-exec-base" content="/agents/">' in page.text
        app_js = carol.get("/agents/ui-assets/app.js")
        assert app_js.status_code == 200
        # The page's modules import each other by relative path: each is served.
        imported = set(re.findall(r'from "\./([a-z]+\.js)"', app_js.text))
        assert imported == {"model.js", "view.js"}
        for name in imported:
            module = carol.get(f"/agents/ui-assets/{name}")
            assert module.status_code == 200, name
            assert module.headers["content-type"].startswith("text/javascript")
        assert carol.post(f"/agents/tasks/{root}/stop").status_code == 202
        wait_for(
            lambda: carol.get(f"/agents/tasks/{root}").json()["status"] in TERMINAL, "run ends"
        )
    finally:
        server.stop()


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "detail_part"),
    [
        ("GET", "/tasks/bad%20id", {}, 400, "invalid task id"),
        ("GET", "/tasks/" + "a" * 200, {}, 400, "invalid task id"),
        ("POST", "/tasks/-leading-dash/stop", {}, 400, "invalid task id"),
        ("GET", "/tasks", {"params": {"status": "sleeping"}}, 400, "unknown status 'sleeping'"),
        ("GET", "/tasks", {"params": {"parent_id": "x y"}}, 400, "invalid parent_id"),
        ("GET", "/tasks", {"params": {"root": "maybe"}}, 422, None),
        ("GET", "/events", {"params": {"after": "-1"}}, 400, "'after' must be"),
        ("GET", "/events", {"headers": {"last-event-id": "abc"}}, 400, "Last-Event-ID"),
        ("POST", "/runs", {"content": b"{not json", "headers": {"content-type": JSON}},
         400, "not valid JSON"),
        ("POST", "/runs", {"json": ["a list"]}, 400, "must be a JSON object"),
        ("POST", "/runs", {"json": {"prompt": "x", "extra": 1}}, 400, "unknown field(s) 'extra'"),
        ("POST", "/runs", {"json": {"prompt": ""}}, 400, "'prompt' must be"),
        ("POST", "/runs", {"json": {"prompt": 42}}, 400, "'prompt' must be"),
        ("POST", "/runs", {"content": b"prompt=x", "headers": {"content-type": "text/plain"}},
         415, "application/json"),
        ("POST", "/runs", {"json": {"prompt": "x" * 20_000}}, 413, "larger than"),
    ],
)
def test_bad_input_gets_a_clear_4xx_without_a_stack_trace(
    live: LiveServer,
    user: str,
    method: str,
    path: str,
    kwargs: dict,
    status: int,
    detail_part: str | None,
) -> None:
    response = live.client(user).request(method, path, **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    detail = response.json()["detail"]
    if detail_part is not None:
        assert detail_part in detail
    assert "Traceback" not in response.text
    assert live.client(user).get("/tasks").json()["tasks"] == [], "nothing was started"


def test_stop_body_is_checked(live: LiveServer, user: str) -> None:
    client = live.client(user)
    root = start_run(client)
    long_reason = client.post(f"/tasks/{root}/stop", json={"reason": "r" * 5000})
    assert long_reason.status_code == 400 and "'reason'" in long_reason.json()["detail"]
    wrong_type = client.post(f"/tasks/{root}/stop", json={"reason": ["no"]})
    assert wrong_type.status_code == 400
    garbage = client.post(
        f"/tasks/{root}/stop", content=b"\xff\xfe", headers={"content-type": "application/json"}
    )
    assert garbage.status_code == 400 and "not valid JSON" in garbage.json()["detail"]
    assert client.get(f"/tasks/{root}").json()["status"] == "running", "bad stops stop nothing"
    stop_and_wait(client, root)


def test_oversized_chunked_body_is_refused_while_reading(live: LiveServer, user: str) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap applies while reading
        yield b'{"prompt": "'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"}'

    response = live.client(user).post(
        "/runs", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert live.client(user).get("/tasks").json()["tasks"] == []


# -- Last-Event-ID resume -------------------------------------------------------------------


def test_reconnect_with_last_event_id_gets_exactly_the_missed_events(
    live: LiveServer, user: str
) -> None:
    client = live.client(user)
    with client.stream("GET", "/events") as response:
        events = sse_events(response)
        root = start_run(client)
        first_part = read_until(events, lambda e: e.kind == "started")
    last_id = first_part[-1].id
    assert last_id is not None
    # While nobody listens, the run gets its sub-agents and is stopped.
    wait_children_running(client, root)
    stop_and_wait(client, root)
    with client.stream("GET", "/events", headers={"last-event-id": str(last_id)}) as response:
        resumed = read_until(
            sse_events(response), lambda e: e.kind == "cancelled" and e.data["task_id"] == root
        )
    # The full story from the buffer, for comparison.
    with client.stream("GET", f"/tasks/{root}/events") as response:
        everything = [e for e in sse_events(response) if e.event == "task"]
    # Together, the two connections saw the run's events exactly once, in
    # order, with nothing missing at the seam.
    got = [e.id for e in first_part + resumed]
    assert got == [e.id for e in everything][: len(got)]
    assert len(resumed) > 1 and all(e.id is not None and e.id > last_id for e in resumed)


def test_query_after_resumes_like_last_event_id_and_header_wins(
    live: LiveServer, user: str
) -> None:
    client = live.client(user)
    snapshot = client.get("/tasks").json()
    root = start_run(client)
    stop_and_wait(client, root)
    with client.stream("GET", "/events", params={"after": snapshot["last_seq"]}) as response:
        from_query = read_until(sse_events(response), lambda e: e.kind == "cancelled")
    assert from_query[0].kind == "created" and from_query[0].data["task_id"] == root
    with client.stream(
        "GET", "/events", params={"after": 0},
        headers={"last-event-id": str(from_query[0].id)},
    ) as response:
        from_header = read_until(sse_events(response), lambda e: e.kind == "cancelled")
    assert [e.id for e in from_header] == [e.id for e in from_query[1:]]


def test_every_stream_opens_with_the_servers_epoch(
    live: LiveServer, user: str, router: SubagentRouter, http_runtime: SubagentRuntime
) -> None:
    # The epoch names the runtime's store, whose numbering seqs follow: it
    # tells a reconnecting client whether it resumed (the same store, after a
    # restart too) or reached a different one (then: re-read /tasks).
    client = live.client(user)
    with client.stream("GET", "/events") as response:
        first = next(sse_events(response, hello=True))
    with client.stream("GET", "/events", headers={"last-event-id": "1"}) as response:
        again = next(sse_events(response, hello=True))
    assert first.event == again.event == "hello"
    assert first.data["epoch"] == again.data["epoch"] == router.event_buffer.epoch
    _, same_store = make_app(http_runtime)
    assert same_store.event_buffer.epoch == first.data["epoch"]
    other_runtime = SubagentRuntime(max_workers=1, name="other")  # its own memory store
    app, other = make_app(other_runtime)
    server = LiveServer(app).start()
    try:
        with server.client(user).stream("GET", "/events") as response:
            elsewhere = next(sse_events(response, hello=True))
        assert elsewhere.data["epoch"] == other.event_buffer.epoch != first.data["epoch"]
    finally:
        server.stop()
        assert other_runtime.shutdown(wait=True, timeout=30.0)


def test_stale_last_event_id_gets_a_reset(
    live: LiveServer, user: str, router: SubagentRouter
) -> None:
    client = live.client(user)
    future = router.event_buffer.last_seq + 1_000_000
    with client.stream("GET", "/events", headers={"last-event-id": str(future)}) as response:
        first = next(sse_events(response))
    assert first.event == "reset" and "not from this server" in first.data["reason"]


def test_falling_behind_a_small_buffer_replays_from_the_store(
    http_runtime: SubagentRuntime,
) -> None:
    app, router = make_app(http_runtime, event_buffer_size=5)
    server = LiveServer(app).start()
    try:
        client = server.client("dora")
        before = router.event_buffer.last_seq
        root = start_run(client)
        wait_children_running(client, root)
        stop_and_wait(client, root)
        wait_for(lambda: router.event_buffer.last_seq >= http_runtime.last_event_seq, "buffer")
        with client.stream("GET", "/events", params={"after": before}) as response:
            events = sse_events(response)
            rest = read_until(events, lambda e: e.kind == "cancelled" and e.data["task_id"] == root)
        assert all(e.event == "task" for e in rest), "no reset: the store had them all"
        assert [e.id for e in rest] == sorted(e.id for e in rest) and rest[0].id == before + 1
        assert len(rest) > 5
    finally:
        server.stop()


def test_events_removed_by_store_retention_get_a_reset_then_the_rest() -> None:
    # A memory store keeps no more than memory: one finished task here.
    http_runtime = SubagentRuntime(max_workers=8, retain_max=1, cleanup_timeout_seconds=2.0)
    app, router = make_app(http_runtime, event_buffer_size=5)
    server = LiveServer(app).start()
    try:
        client = server.client("dora")
        before = router.event_buffer.last_seq
        root = start_run(client)
        wait_children_running(client, root)
        stop_and_wait(client, root)
        wait_for(lambda: router.event_buffer.last_seq >= http_runtime.last_event_seq, "buffer")
        with client.stream("GET", "/events", params={"after": before}) as response:
            events = sse_events(response)
            reset = next(events)
            rest = read_until(events, lambda e: e.kind == "cancelled" and e.data["task_id"] == root)
        assert reset.event == "reset" and "retention removed" in reset.data["reason"]
        assert rest and all(e.event == "task" for e in rest)
    finally:
        server.stop()
        assert http_runtime.shutdown(cancel=True, wait=True, timeout=30.0)


def test_task_stream_of_an_ended_run_replays_it_and_ends(live: LiveServer, user: str) -> None:
    client = live.client(user)
    root = start_run(client)
    wait_children_running(client, root)
    stop_and_wait(client, root)
    with client.stream("GET", f"/tasks/{root}/events") as response:
        replay = list(sse_events(response))
    assert replay[0].kind == "created" and replay[0].data["task_id"] == root
    assert replay[-1].event == "end"
    assert replay[-2].kind == "cancelled"
    last = replay[-2].id
    with client.stream(
        "GET", f"/tasks/{root}/events", headers={"last-event-id": str(last)}
    ) as response:
        assert [e.event for e in sse_events(response)] == ["end"]


# -- a client that goes away ----------------------------------------------------------------


def test_disconnect_mid_stream_leaves_nothing_behind(
    live: LiveServer, router: SubagentRouter, user: str, http_runtime: SubagentRuntime
) -> None:
    client = live.client(user)
    root = start_run(client)
    wait_children_running(client, root)
    baseline_tasks = live.loop_task_count()
    baseline_threads = non_pool_threads((http_runtime.name,))
    assert router.event_buffer.client_count == 0

    streams = []
    for path in ("/events", f"/tasks/{root}/events", "/events"):
        watcher = live.client(user)
        response = watcher.send(watcher.build_request("GET", path), stream=True)
        streams.append((watcher, response, sse_events(response)))
    # Each stream gets going (the per-task one replays the run so far)...
    next(streams[1][2])
    wait_for(lambda: router.event_buffer.client_count == 3, "3 streams registered")
    assert live.loop_task_count() > baseline_tasks
    # ...then every client goes away abruptly, mid-run, while the run goes on.
    for watcher, response, _ in streams:
        response.close()
        watcher.close()

    wait_for(lambda: router.event_buffer.client_count == 0, "streams unregistered")
    wait_for(lambda: live.loop_task_count() == baseline_tasks, "server tasks back to baseline")
    assert non_pool_threads((http_runtime.name,)) == baseline_threads
    assert client.get(f"/tasks/{root}").json()["status"] == "running", "the run is unaffected"
    stop_and_wait(client, root)


def test_idle_stream_notices_the_disconnect_without_waiting_for_a_write(
    live: LiveServer, router: SubagentRouter, user: str
) -> None:
    # keepalive is 15 s: without listening for the disconnect, the server
    # would only notice a gone client at its next write.
    watcher = live.client(user)
    response = watcher.send(watcher.build_request("GET", "/events"), stream=True)
    wait_for(lambda: router.event_buffer.client_count == 1, "stream registered")
    started = time.monotonic()
    response.close()
    watcher.close()
    wait_for(lambda: router.event_buffer.client_count == 0, "stream unregistered", timeout=5.0)
    assert time.monotonic() - started < 5.0


def test_server_shutdown_with_an_open_stream_is_bounded_and_cleans_up(
    http_runtime: SubagentRuntime,
) -> None:
    # An event stream never ends by itself, so uvicorn's graceful shutdown
    # waits for it; with timeout_graceful_shutdown (as `serve` sets it) the
    # stream is cancelled, unregisters, and the lifespan unsubscribes.
    app, router = make_app(http_runtime)
    server = LiveServer(app, graceful_seconds=0.5).start()
    watcher = server.client("erin")
    response = watcher.send(watcher.build_request("GET", "/events"), stream=True)
    try:
        wait_for(lambda: router.event_buffer.client_count == 1, "stream registered")
        stopped_at = time.monotonic()
        server.stop()
        assert time.monotonic() - stopped_at < 0.5 + SETTLE / 3
        assert router.event_buffer.client_count == 0
        assert not router.event_buffer.running, "the app's lifespan unsubscribed the buffer"
    finally:
        response.close()
        watcher.close()


def test_runs_endpoint_can_be_left_out(http_runtime: SubagentRuntime) -> None:
    app, _ = make_app(http_runtime, start_run=None)
    server = LiveServer(app).start()
    try:
        client = server.client("frank")
        assert client.post("/runs").status_code in (404, 405)
        assert 'content="false"' in client.get("/").text
    finally:
        server.stop()


def test_full_or_closed_runtime_answers_503_and_a_queued_stop_is_cancelled_at_once() -> None:
    runtime = SubagentRuntime(max_workers=1, max_pending=1, name="tiny")
    app, _ = make_app(runtime)
    server = LiveServer(app).start()
    try:
        client = server.client("gina")
        running = start_run(client)
        wait_for(lambda: client.get(f"/tasks/{running}").json()["status"] == "running", "run")
        queued = start_run(client)  # waits for the only worker: pending
        full = client.post("/runs")
        assert full.status_code == 503 and "max_pending" in full.json()["detail"]
        # A task stopped before it started is cancelled right away, not "stopping".
        stop = client.post(f"/tasks/{queued}/stop")
        assert stop.status_code == 202 and stop.json()["status"] == "cancelled"
        stop_and_wait(client, running)
        runtime.shutdown(cancel=True, wait=True, timeout=SETTLE)
        closed = client.post("/runs")
        assert closed.status_code == 503 and "shut down" in closed.json()["detail"]
    finally:
        server.stop()
        runtime.shutdown(cancel=True, wait=True, timeout=SETTLE)
