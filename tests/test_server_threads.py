"""Threads over HTTP against a real uvicorn server: ``GET /tasks?thread_id=``
and ``POST /threads/{thread_id}/stop``, with runs of the demo lead that start
a news scout in the background."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from subagent_exec import SubagentRuntime
from subagent_exec.server import demo_run_starter

from .server_support import LiveServer, make_app, wait_for

TERMINAL = {"completed", "failed", "cancelled", "timed_out"}


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    runtime = SubagentRuntime(max_workers=6, max_depth=3, cleanup_timeout_seconds=2.0,
                              name="threads")
    app, _ = make_app(runtime, start_run=demo_run_starter(0.5, background=True))
    server = LiveServer(app).start()
    yield server
    server.stop()
    assert runtime.shutdown(cancel=True, wait=True, timeout=30.0)


def _user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


def _run_with_a_running_scout(client: httpx.Client) -> tuple[str, dict[str, Any]]:
    response = client.post("/runs")
    assert response.status_code == 202, response.text
    root = response.json()["task_id"]

    def scout() -> dict[str, Any] | None:
        tasks = client.get("/tasks", params={"thread_id": root}).json()["tasks"]
        found = [t for t in tasks if t["background"] and t["status"] == "running"]
        return found[0] if found else None

    return root, wait_for(scout, "the news scout running")


def test_a_thread_lists_the_run_and_its_background_task(live: LiveServer) -> None:
    client = live.client(_user())
    root, scout = _run_with_a_running_scout(client)
    other, _ = _run_with_a_running_scout(client)

    listed = client.get("/tasks", params={"thread_id": root}).json()["tasks"]
    assert listed[0]["task_id"] == root and listed[0]["thread_id"] == root
    assert listed[0]["background"] is False
    assert {t["thread_id"] for t in listed} == {root}  # the whole run, nothing of the other
    assert scout["subagent_name"] == "news-scout" and scout["parent_id"] is None
    assert scout["owner"] == client.headers["x-user"]
    assert scout["task_id"] not in listed[0]["children"]  # a root, not the lead's child
    theirs = client.get("/tasks", params={"thread_id": other}).json()["tasks"]
    assert {t["task_id"] for t in theirs}.isdisjoint({t["task_id"] for t in listed})
    for thread in (root, other):
        assert client.post(f"/threads/{thread}/stop").status_code == 202


def test_stopping_the_run_spares_its_background_task_and_stop_all_reaches_it(
    live: LiveServer,
) -> None:
    client = live.client(_user())
    root, scout = _run_with_a_running_scout(client)
    assert client.post(f"/tasks/{root}/stop").status_code == 202
    wait_for(lambda: client.get(f"/tasks/{root}").json()["status"] in TERMINAL, "the lead ends")
    assert client.get(f"/tasks/{scout['task_id']}").json()["status"] == "running"

    stop = client.post(f"/threads/{root}/stop", json={"reason": "Stop all"})
    assert stop.status_code == 202, stop.text
    body = stop.json()
    assert body["thread_id"] == root and body["cancel_reason"] == "Stop all"
    assert scout["task_id"] in body["stopped"] and root not in body["stopped"]  # it had ended

    def all_ended() -> bool:
        tasks = client.get("/tasks", params={"thread_id": root}).json()["tasks"]
        return all(t["status"] in TERMINAL for t in tasks)

    wait_for(all_ended, "every task of the thread ends")
    ended = client.get(f"/tasks/{scout['task_id']}").json()
    assert ended["status"] == "cancelled" and ended["cancel_reason"] == "Stop all"
    again = client.post(f"/threads/{root}/stop")
    assert again.status_code == 409
    assert again.json()["detail"] == f"every task of thread {root!r} has already ended"


def test_another_users_thread_is_404_and_cannot_be_stopped(live: LiveServer) -> None:
    alice, bob = live.client(_user()), live.client(_user())
    root, scout = _run_with_a_running_scout(alice)
    theirs = bob.post(f"/threads/{root}/stop")
    nobody = bob.post("/threads/no-such-thread/stop")
    assert theirs.status_code == nobody.status_code == 404
    assert theirs.json()["detail"] == f"no thread {root!r}"
    assert nobody.json()["detail"] == "no thread 'no-such-thread'"
    assert bob.get("/tasks", params={"thread_id": root}).json()["tasks"] == []
    assert alice.get(f"/tasks/{scout['task_id']}").json()["status"] == "running"
    assert alice.post(f"/threads/{root}/stop").status_code == 202


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "detail"),
    [
        ("GET", "/tasks", {"params": {"thread_id": "bad\u0007id"}}, 400, "invalid thread id"),
        ("GET", "/tasks", {"params": {"thread_id": "x" * 300}}, 400, "1-256 printable"),
        ("GET", "/tasks", {"params": {"thread_id": " "}}, 400, "invalid thread id"),
        ("POST", "/threads/t/stop", {"json": {"reason": "r" * 2000}}, 400, "'reason' must be"),
        ("POST", "/threads/t/stop", {"json": {"why": "x"}}, 400, "unknown field(s) 'why'"),
        ("POST", "/threads/t/stop", {"content": b"reason", "headers": {
            "content-type": "text/plain"}}, 415, "application/json"),
    ],
)
def test_bad_thread_requests_get_a_clear_4xx(
    live: LiveServer, method: str, path: str, kwargs: dict[str, Any], status: int, detail: str
) -> None:
    response = live.client(_user()).request(method, path, **kwargs)
    assert response.status_code == status, response.text
    assert detail in response.json()["detail"]
