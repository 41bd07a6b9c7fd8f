"""POST /tasks/{id}/resume against a real uvicorn server on 127.0.0.1:
ownership, 202 with the new id, 409 with the reason, bad bodies."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from subagent_exec import SubagentExecutor, SubagentRuntime, SubagentStatus

from .resume_support import FINAL, TASK, CountingAgent
from .server_support import LiveServer, make_app


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def served(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[LiveServer, SubagentRuntime]]:
    store: str | None = None  # the database first: it outlives the runtime
    if request.param == "postgres":
        store = str(request.getfixturevalue("postgres_dsn"))
    elif request.param == "sqlite":
        store = str(tmp_path / "tasks.db")
    runtime = SubagentRuntime(
        max_workers=4, cleanup_timeout_seconds=2.0, name="resume-http", store=store
    )
    app, _router = make_app(runtime, start_run=None)
    server = LiveServer(app).start()
    yield server, runtime
    server.stop()
    assert runtime.shutdown(cancel=True, wait=True, timeout=30.0)


def test_http_resume_with_ownership(served: tuple[LiveServer, SubagentRuntime]) -> None:
    live, runtime = served
    alice_id, bob_id = f"alice-{uuid.uuid4().hex[:6]}", f"bob-{uuid.uuid4().hex[:6]}"
    alice, bob = live.client(alice_id), live.client(bob_id)
    agent = CountingAgent()
    executor = SubagentExecutor(agent.config(), tools=agent.tools(), runtime=runtime)
    holder = executor.start(TASK, owner=alice_id)
    assert agent.slow_started.wait(10)

    running = alice.post(f"/tasks/{holder.task_id}/resume")
    assert running.status_code == 409
    assert running.json()["reason"] == "unfinished" and "message_task" in running.json()["detail"]
    assert alice.post(f"/tasks/{holder.task_id}/stop").status_code == 202
    assert holder.wait(10) and holder.status is SubagentStatus.CANCELLED

    # Another user's task, and an unknown one: the same 404.
    assert bob.post(f"/tasks/{holder.task_id}/resume").status_code == 404
    assert alice.post(f"/tasks/{uuid.uuid4().hex}/resume").status_code == 404
    assert alice.post(f"/tasks/{holder.task_id}/resume", json={"message": ""}).status_code == 400
    assert alice.post(f"/tasks/{holder.task_id}/resume", json={"other": 1}).status_code == 400

    accepted = alice.post(f"/tasks/{holder.task_id}/resume")
    assert accepted.status_code == 202, accepted.text
    body = accepted.json()
    assert body["resumed_from"] == holder.task_id and body["task_id"] != holder.task_id
    resumed = runtime.get(body["task_id"])
    assert resumed is not None and resumed.wait(10) and resumed.result == FINAL
    assert resumed.owner == alice_id
    assert agent.calls == {"step1": 1, "step2": 1, "slow": 2}
    detail = alice.get(f"/tasks/{resumed.task_id}").json()
    assert detail["resumed_from"] == holder.task_id and detail["status"] == "completed"

    done = alice.post(f"/tasks/{resumed.task_id}/resume")
    assert done.status_code == 409 and done.json()["reason"] == "completed"
    follow = alice.post(f"/tasks/{resumed.task_id}/resume", json={"message": "newest?"})
    assert follow.status_code == 202, follow.text
    answer = runtime.get(follow.json()["task_id"])
    assert answer is not None and answer.wait(10)
    assert answer.result == "follow-up answer to: newest?"
