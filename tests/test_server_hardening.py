"""What a hostile HTTP client can send that the OpenAPI schema cannot express
(issue 10, server defects 12-16), against a real uvicorn on 127.0.0.1: lone
surrogates, deep nesting, odd header values, cross-site requests, foreign Host
names, huge fields in events. The schema-driven fuzzing is in
tests/test_server_fuzz.py; `serve`'s connection limits (17) are in
tests/test_server_cli.py.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from subagent_exec import (
    MemoryStore,
    SubagentConfig,
    SubagentExecutor,
    SubagentRuntime,
    TaskEvent,
)
from subagent_exec.server import EventBuffer, create_app, create_router
from subagent_exec.server._stream import EVENT_TEXT_CHARS, MAX_EVENT_FRAME_BYTES

from .helpers import reply_graph
from .server_support import (
    SETTLE,
    LiveServer,
    http_request,
    make_app,
    raw_http,
    sse_events,
    wait_for,
)

JSON = {"content-type": "application/json"}
JSON_BYTES = {b"content-type": b"application/json"}
TERMINAL = {"completed", "failed", "cancelled", "timed_out"}


@pytest.fixture(scope="module")
def hard_runtime() -> Iterator[SubagentRuntime]:
    runtime = SubagentRuntime(
        max_workers=4, max_depth=3, cleanup_timeout_seconds=2.0, name="hard"
    )
    yield runtime
    assert runtime.shutdown(cancel=True, wait=True, timeout=30.0)


@pytest.fixture(scope="module")
def live(hard_runtime: SubagentRuntime) -> Iterator[LiveServer]:
    app, _ = make_app(hard_runtime)
    server = LiveServer(app).start()
    yield server
    server.stop()


@pytest.fixture
def user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


def start_run(client: httpx.Client) -> str:
    response = client.post("/runs")
    assert response.status_code == 202, response.text
    return str(response.json()["task_id"])


def stop_and_wait(client: httpx.Client, task_id: str) -> None:
    client.post(f"/tasks/{task_id}/stop")
    wait_for(
        lambda: client.get(f"/tasks/{task_id}").json()["status"] in TERMINAL, f"{task_id} ends"
    )


def python_api_task(
    runtime: SubagentRuntime, prompt: str, answer: str, owner: str | None
) -> str:
    """A task started through the Python API (not over HTTP): its text never
    passed the HTTP boundary's checks."""
    config = SubagentConfig(name="plain", graph_factory=reply_graph(answer))
    task_id = SubagentExecutor(config, runtime=runtime).execute_async(prompt, owner=owner)
    wait_for(lambda: runtime.get(task_id).is_terminal, "the task ends")  # type: ignore[union-attr]
    return task_id


# -- 12: lone surrogates ----------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"prompt": "\\ud800"}',
        b'{"prompt": "fine \\udfff text"}',
        b'{"\\ud800": "a key"}',
        b'{"prompt": ["\\udc80"]}',
        b'{"prompt": {"deeper": ["\\ud83d"]}}',
    ],
)
def test_a_lone_surrogate_in_a_runs_body_is_refused_and_listings_keep_working(
    live: LiveServer, user: str, body: bytes
) -> None:
    client = live.client(user)
    response = client.post("/runs", content=body, headers=JSON)
    assert response.status_code == 400, response.text
    assert "lone surrogate" in response.json()["detail"]
    listing = client.get("/tasks")
    assert listing.status_code == 200 and listing.json()["tasks"] == [], "nothing was started"


def test_a_lone_surrogate_in_a_stop_reason_is_refused_and_stops_nothing(
    live: LiveServer, user: str
) -> None:
    client = live.client(user)
    root = start_run(client)
    response = client.post(
        f"/tasks/{root}/stop", content=b'{"reason": "\\ud800"}', headers=JSON
    )
    assert response.status_code == 400 and "lone surrogate" in response.json()["detail"]
    assert client.get(f"/tasks/{root}").json()["status"] == "running"
    assert client.get("/tasks").status_code == 200
    stop_and_wait(client, root)
    assert client.get("/tasks").status_code == 200


def test_a_stored_lone_surrogate_goes_out_as_a_replacement_character(
    live: LiveServer, hard_runtime: SubagentRuntime, user: str
) -> None:
    # Text that never crossed the HTTP boundary (Python API, a model's answer)
    # may hold one: the default owner's listing must not fail because of it.
    task_id = python_api_task(hard_runtime, "ask \ud800 this", "answer \udfff here", user)
    client = live.client(user)
    listing = client.get("/tasks")
    assert listing.status_code == 200, listing.text
    [task] = listing.json()["tasks"]
    assert task["task"] == "ask \ufffd this" and task["result"] == "answer \ufffd here"
    assert client.get(f"/tasks/{task_id}").json()["task"] == "ask \ufffd this"
    with client.stream("GET", f"/tasks/{task_id}/events") as response:
        events = list(sse_events(response))
    created = next(e for e in events if e.kind == "created")
    assert created.data["data"]["task"] == "ask \ufffd this"
    terminal = next(e for e in events if e.kind in TERMINAL)
    assert terminal.data["outcome"]["result"] == "answer \ufffd here"


def test_surrogates_cannot_arrive_through_query_path_or_headers(
    live: LiveServer, user: str
) -> None:
    # %ED%A0%80 is U+D800 encoded as UTF-8 would be: the server decodes query
    # and path with replacement characters and headers as Latin-1, so no lone
    # surrogate gets in this way; whatever is answered is a clean 4xx or 200.
    client = live.client(user)
    answers = [
        client.get("/tasks?status=%ED%A0%80"),
        client.get("/tasks?parent_id=%ED%A0%80"),
        client.get("/tasks/%ED%A0%80"),
        client.post("/tasks/%ED%A0%80/stop"),
        client.get("/tasks", headers={b"x-user": b"\xed\xa0\x80"}),
    ]
    assert [a.status_code for a in answers] == [400, 400, 400, 400, 200]
    assert all(a.headers["content-type"] == "application/json" for a in answers)
    with client.stream("GET", "/events", headers={b"last-event-id": b"\xed\xa0\x80"}) as r:
        assert r.status_code == 400
    assert client.get("/tasks").status_code == 200


# -- 13: nesting depth ------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 8000,
        b"[" * 8000 + b"]" * 8000,
        b'{"prompt": ' + b"[" * 8000,
        b'{"prompt": ' + b'{"a": ' * 2000 + b"1" + b"}" * 2000 + b"}",
        b'{"prompt": ' + b"[" * 32 + b"]" * 32 + b"}",  # 33 levels with the object
    ],
)
def test_deep_nesting_under_the_size_cap_is_refused_before_parsing(
    live: LiveServer, user: str, body: bytes
) -> None:
    assert len(body) <= 16 * 1024
    client = live.client(user)
    response = client.post("/runs", content=body, headers=JSON)
    assert response.status_code == 400, response.text
    assert "deeper than 32 levels" in response.json()["detail"]
    root = start_run(client)
    stop = client.post(f"/tasks/{root}/stop", content=b"[" * 8000, headers=JSON)
    assert stop.status_code == 400 and "deeper than" in stop.json()["detail"]
    assert client.get(f"/tasks/{root}").json()["status"] == "running"
    stop_and_wait(client, root)


def test_nesting_up_to_the_limit_and_brackets_inside_strings_are_fine(
    live: LiveServer, user: str
) -> None:
    client = live.client(user)
    # 32 levels: parsed, then refused for what it is (a list is no prompt).
    at_limit = b'{"prompt": ' + b"[" * 31 + b"]" * 31 + b"}"
    response = client.post("/runs", content=at_limit, headers=JSON)
    assert response.status_code == 400 and "'prompt' must be" in response.json()["detail"]
    # Brackets and escaped quotes inside a string nest nothing.
    prompt = '[[[[{{{{ \\" [[[[' * 200
    response = client.post("/runs", json={"prompt": prompt})
    assert response.status_code == 202, response.text
    stop_and_wait(client, response.json()["task_id"])


# -- 14: event seqs -----------------------------------------------------------------------

BAD_SEQS = [
    b"\xb2",  # Latin-1 superscript two: "²".isdigit() is True, int("²") raises
    "\u0663".encode(),  # an Arabic-Indic digit, as UTF-8
    b"1" * 5000,  # int() of over 4,300 digits raises
    b"1" * 19,
    b"-1",
    b"+1",
    b"1e3",
    b"0x10",
    b"1 2",
]


@pytest.mark.parametrize("value", BAD_SEQS)
def test_a_bad_last_event_id_or_after_is_400_on_every_stream(
    live: LiveServer, user: str, value: bytes
) -> None:
    client = live.client(user)
    root = start_run(client)
    try:
        for path in ("/events", f"/tasks/{root}/events"):
            header = client.get(path, headers={b"last-event-id": value})
            assert header.status_code == 400, (path, value, header.text)
            assert "Last-Event-ID must be" in header.json()["detail"]
            query = client.get(path, params={"after": value.decode("latin-1")})
            assert query.status_code == 400, (path, value, query.text)
            assert "'after' must be" in query.json()["detail"]
    finally:
        stop_and_wait(client, root)


def test_good_event_seqs_still_resume(live: LiveServer, user: str) -> None:
    client = live.client(user)
    for headers, params in [
        ({"last-event-id": "0"}, {}),
        ({}, {"after": "0"}),
        ({"last-event-id": "9" * 18}, {}),  # the longest accepted: from the future, so a reset
    ]:
        with client.stream("GET", "/events", headers=headers, params=params) as response:
            assert response.status_code == 200
            first = next(sse_events(response, hello=True))
            assert first.event == "hello"


# -- 15: cross-site requests and Host --------------------------------------------------

FOREIGN = "http://evil.example"


def refused_posts(origin: str) -> list[tuple[dict[str, str], bytes, int]]:
    """(headers, body, expected status) of requests a cross-site page can send
    without a preflight, and their near relatives."""
    return [
        ({"content-type": "application/x-www-form-urlencoded", "origin": FOREIGN},
         b"prompt=x", 403),
        ({"content-type": "application/x-www-form-urlencoded"}, b"", 415),  # fieldless form
        ({"content-type": "multipart/form-data; boundary=x"}, b"", 415),
        ({"content-type": "text/plain"}, b'{"prompt": "x"}', 415),  # JSON in a text/plain form
        ({"content-type": "application/json", "origin": FOREIGN}, b'{"prompt": "x"}', 403),
        ({"origin": FOREIGN}, b"", 403),  # a bodiless no-cors fetch
        ({"content-type": "application/json", "origin": "null"}, b"{}", 403),
        ({"content-type": "application/json", "origin": origin + ".evil.example"}, b"{}", 403),
    ]


def test_cross_site_posts_are_refused_and_change_nothing(live: LiveServer, user: str) -> None:
    client = live.client(user)
    victim = start_run(client)
    own = live.base_url
    for headers, body, status in refused_posts(own):
        for path in ("/runs", f"/tasks/{victim}/stop"):
            response = client.post(path, content=body, headers=headers)
            assert response.status_code == status, (path, headers, response.text)
            assert response.headers["content-type"] == "application/json"
    [only] = client.get("/tasks", params={"root": "true"}).json()["tasks"]
    assert only["task_id"] == victim and only["status"] == "running", "nothing started or stopped"
    stop_and_wait(client, victim)


def test_same_origin_posts_and_plain_clients_are_accepted(live: LiveServer, user: str) -> None:
    client = live.client(user)
    own_page = client.post("/runs", json={"prompt": "hi"}, headers={"origin": live.base_url})
    assert own_page.status_code == 202, own_page.text
    # The scheme is not compared (TLS may end at a proxy): same host and port.
    behind_tls = client.post(
        "/runs", json={"prompt": "hi"}, headers={"origin": live.base_url.replace("http", "https")}
    )
    assert behind_tls.status_code == 202
    # curl -X POST: no Origin, no Content-Type, no body.
    bare = client.post("/runs", headers={"content-type": ""})
    assert bare.status_code == 415, "an empty Content-Type is still a declared one"
    curl_like = client.post("/runs")
    assert curl_like.status_code == 202
    for response in (own_page, behind_tls, curl_like):
        stop_and_wait(client, response.json()["task_id"])


def test_allowed_origins_lets_listed_pages_post(hard_runtime: SubagentRuntime) -> None:
    app, _ = make_app(hard_runtime, allowed_origins=["http://app.example:3000"])
    server = LiveServer(app).start()
    try:
        client = server.client("olga")
        listed = client.post("/runs", json={}, headers={"origin": "http://APP.example:3000"})
        assert listed.status_code == 202, listed.text
        for origin in ("http://app.example:3001", "https://app.example:3000", FOREIGN):
            other = client.post("/runs", json={}, headers={"origin": origin})
            assert other.status_code == 403, origin
        stop_and_wait(client, listed.json()["task_id"])
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("http://app.example", TypeError),
        ([5], TypeError),
        (["app.example"], ValueError),
        (["ftp://app.example"], ValueError),
        (["http://app.example/path"], ValueError),
        (["http://user@app.example"], ValueError),
        (["null"], ValueError),
    ],
)
def test_allowed_origins_is_checked(
    hard_runtime: SubagentRuntime, value: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match=r"create_router\.allowed_origins"):
        create_router(hard_runtime, allowed_origins=value)


@pytest.fixture(scope="module")
def host_checked(hard_runtime: SubagentRuntime) -> Iterator[LiveServer]:
    app = create_app(hard_runtime, allowed_hosts=["localhost", "127.0.0.1", "[::1]"])
    server = LiveServer(app).start()
    yield server
    server.stop()


@pytest.mark.parametrize(
    "host",
    [
        b"evil.example", b"evil.example:%d", b"127.0.0.1.evil.example", b"localhost.evil",
        b"[::2]:%d", b"a b", b"[::1", b"::1]", b"a/b", b"a@127.0.0.1", b"\xff", b"",
        b"127.0.0.1:notaport", b"[zz]:1",
    ],
)
def test_a_foreign_or_malformed_host_gets_400_never_500(
    host_checked: LiveServer, host: bytes
) -> None:
    if b"%d" in host:
        host = host % host_checked.port
    for method, path, body in [("GET", "/tasks", b""), ("GET", "/", b""),
                               ("POST", "/runs", b'{"prompt": "x"}')]:
        status, answer = raw_http(
            host_checked.port, http_request(method, path, host, JSON_BYTES, body)
        )
        # DNS rebinding: the page of a name that now points here reads nothing.
        assert status == 400, (host, method, path, answer)
        assert b"tasks" not in answer



def test_the_servers_own_host_names_are_answered(host_checked: LiveServer) -> None:
    port = host_checked.port
    for host in (b"127.0.0.1:%d" % port, b"localhost:%d" % port, b"LOCALHOST", b"[::1]:%d" % port):
        status, answer = raw_http(port, http_request("GET", "/tasks", host))
        assert status == 200, (host, answer)
        assert "tasks" in json.loads(answer)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("localhost", TypeError), ([None], TypeError), ([], ValueError),
        (["ev*l.example"], ValueError), (["*example.com"], ValueError),
        (["http://localhost"], ValueError),
    ],
)
def test_allowed_hosts_is_checked(
    hard_runtime: SubagentRuntime, value: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match=r"create_app\.allowed_hosts"):
        create_app(hard_runtime, allowed_hosts=value)


# -- 16: the event buffer in bytes ------------------------------------------------------


def test_big_prompts_and_answers_cost_the_event_buffer_kilobytes_not_megabytes() -> None:
    # The trial, scaled down: 20 tasks with 0.5 MB prompts and answers
    # and retain_max=5 held every byte of them in the event ring.
    runtime = SubagentRuntime(max_workers=4, retain_max=5, name="bytes")
    buffer = EventBuffer(runtime)
    buffer.start()
    try:
        big = 500_000
        for index in range(20):
            python_api_task(runtime, f"{index}" + "p" * big, "a" * big, None)
        wait_for(lambda: buffer.last_seq == runtime.last_event_seq, "buffer caught up")
        items, _ = buffer.read_after(0)
        frames = [item.frame for item in items]
        assert len(frames) >= 20 * 3, "every event is still there, only smaller"
        assert sum(map(len, frames)) < 1_000_000
        assert max(map(len, frames)) <= MAX_EVENT_FRAME_BYTES
        assert buffer.size_bytes <= buffer.max_bytes
        created = [json.loads(f.split(b"data: ", 1)[1]) for f in frames if b'"created"' in f]
        assert len(created) == 20
        assert all(e["truncated"]["data.task"] > big for e in created), "marked as cut"
    finally:
        buffer.stop()
        assert runtime.shutdown(cancel=True, wait=True, timeout=30.0)


def test_a_cut_field_is_marked_and_get_task_has_it_whole(
    live: LiveServer, hard_runtime: SubagentRuntime, user: str
) -> None:
    prompt, answer = "q" * 100_000, "r" * 50_000
    task_id = python_api_task(hard_runtime, prompt, answer, user)
    client = live.client(user)
    with client.stream("GET", f"/tasks/{task_id}/events") as response:
        events = [e for e in sse_events(response) if e.event == "task"]
    created = next(e for e in events if e.kind == "created")
    assert created.data["data"]["task"] == "q" * EVENT_TEXT_CHARS + "…"
    assert created.data["truncated"] == {"data.task": 100_000}
    ended = next(e for e in events if e.kind in TERMINAL)
    assert ended.data["outcome"]["result"] == "r" * EVENT_TEXT_CHARS + "…"
    assert ended.data["truncated"]["outcome.result"] == 50_000
    assert all("truncated" not in e.data for e in events if e.kind == "started")
    detail = client.get(f"/tasks/{task_id}").json()
    assert detail["task"] == prompt and detail["result"] == answer


class _Publisher:
    """Just what EventBuffer uses of a runtime."""

    def __init__(self) -> None:
        self.callback: Any = None
        self.last_event_seq = 0
        self.store = MemoryStore()

    def get(self, task_id: str) -> None:
        return None

    def subscribe(self, callback: Any) -> Any:
        self.callback = callback
        return lambda: None

    def publish(self, seq: int, data: dict[str, Any]) -> None:
        self.last_event_seq = seq
        event = TaskEvent(
            seq=seq, kind="ai_message", task_id="t", parent_id=None, trace_id="tr",
            subagent_name="a", status="running", timestamp=time.time(), data=data,
        )
        self.store.record(event, {})
        self.callback(event)


def test_the_byte_bound_drops_the_oldest_events_and_streams_read_them_from_the_store() -> None:
    runtime = _Publisher()
    buffer = EventBuffer(runtime, capacity=10_000, max_bytes=20_000)  # type: ignore[arg-type]
    buffer.start()
    for seq in range(1, 51):
        runtime.publish(seq, {"text": "x" * 1500})
        assert buffer.size_bytes <= 20_000
    assert buffer.size_bytes > 10_000  # the newest fill it
    items, gap = buffer.read_after(0)
    assert not gap and [i.seq for i in items] == list(range(1, 51))


def test_an_event_too_big_after_cutting_its_strings_goes_out_without_its_data() -> None:
    runtime = _Publisher()
    buffer = EventBuffer(runtime)  # type: ignore[arg-type]
    buffer.start()
    runtime.publish(1, {"blocks": [{"type": "text", "text": "ab"}] * 20_000})
    [item] = buffer.read_after(0)[0]
    assert len(item.frame) <= MAX_EVENT_FRAME_BYTES
    event = json.loads(item.frame.split(b"data: ", 1)[1])
    assert event["data"] == {} and event["truncated"]["data"] > MAX_EVENT_FRAME_BYTES


def test_event_buffer_bytes_is_checked(hard_runtime: SubagentRuntime) -> None:
    with pytest.raises(ValueError, match=r"EventBuffer\.max_bytes must be an int >= 1"):
        create_router(hard_runtime, event_buffer_bytes=0)
    with pytest.raises(TypeError, match=r"EventBuffer\.max_bytes"):
        create_router(hard_runtime, event_buffer_bytes=1.5)  # type: ignore[arg-type]


# -- 17 (router side): a body that stops arriving ------------------------------------------


def test_a_body_that_stops_arriving_gets_408_in_bounded_time(
    hard_runtime: SubagentRuntime,
) -> None:
    app, _ = make_app(hard_runtime, body_timeout_seconds=0.5)
    server = LiveServer(app).start()
    try:
        head = http_request("POST", "/runs", b"127.0.0.1", JSON_BYTES, b"x" * 100)
        partial = head[: len(head) - 90]  # the head and 10 of the 100 body bytes
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", server.port), timeout=SETTLE) as sock:
            sock.sendall(partial)
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert time.monotonic() - started < 0.5 + SETTLE / 3
        assert server.client("nobody").get("/tasks").json()["tasks"] == []
    finally:
        server.stop()
    with pytest.raises(ValueError, match="body_timeout_seconds"):
        create_router(hard_runtime, body_timeout_seconds=float("inf"))
