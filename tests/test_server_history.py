"""``GET /tasks?limit=&cursor=``: a user's past tasks from the store, newest
first, a page at a time, with the same filters and ownership as the list; and
``GET /tasks/{id}`` of a task only the store still has."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from subagent_exec import SubagentConfig, SubagentExecutor, SubagentRuntime
from subagent_exec.testing import ScriptedChatModel

from .server_support import LiveServer, make_app


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[LiveServer, dict[str, list[str]]]]:
    # Memory keeps one finished task; the store keeps them all.
    runtime = SubagentRuntime(max_workers=2, retain_max=1, store=str(tmp_path / "h.db"))
    executor = SubagentExecutor(
        SubagentConfig(name="quick", model=ScriptedChatModel(default="ok")), runtime=runtime
    )
    made: dict[str, list[str]] = {"ann": [], "bob": []}
    for i in range(5):
        for user in made:
            task_id = executor.execute_async(f"{user} job {i}", owner=user)
            holder = runtime.get(task_id)
            assert holder is not None and holder.wait(15.0)
            made[user].append(task_id)
    app, _ = make_app(runtime)
    server = LiveServer(app).start()
    yield server, made
    server.stop()
    assert runtime.shutdown(wait=True, timeout=30.0)


def test_pages_of_a_users_tasks_newest_first(
    served: tuple[LiveServer, dict[str, list[str]]],
) -> None:
    server, made = served
    client = server.client("ann")
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        body = client.get("/tasks", params=params).json()
        assert body["last_seq"] > 0 and "server_time" in body
        seen += [t["task_id"] for t in body["tasks"]]
        assert all(t["owner"] == "ann" and t["status"] == "completed" for t in body["tasks"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made["ann"]))
    # A row read from the store answers usage as a live task does (docs/budgets.md).
    rows = client.get("/tasks", params={"limit": "10"}).json()["tasks"]
    for row in rows:
        assert row["usage"]["model_calls"] == 1 and "cost" in row["usage"], row["usage"]
        assert row["tree_usage"] == row["usage"] and row["resumed_from"] is None
    # Memory has only the newest; the others answer from the store.
    oldest = client.get(f"/tasks/{made['ann'][0]}").json()
    assert oldest["result"] == "ok" and oldest["task"] == "ann job 0"
    assert len(oldest["ai_messages"]) == 1
    # Another user's stored task is a 404, as a live one is.
    assert server.client("bob").get(f"/tasks/{made['ann'][0]}").status_code == 404
    assert client.get("/tasks", params={"limit": "10", "status": "failed"}).json()["tasks"] == []
    roots = client.get("/tasks", params={"limit": "10", "root": "true"}).json()["tasks"]
    assert len(roots) == 5


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": "0"}, "'limit' must be a whole number from 1 to 500"),
        ({"limit": "501"}, "'limit' must be a whole number"),
        ({"limit": "²"}, "'limit' must be a whole number"),
        ({"limit": "-1"}, "'limit' must be a whole number"),
        ({"cursor": "42"}, "'cursor' must be the next_cursor of a previous page"),
        ({"limit": "5", "cursor": "c1; DROP TABLE subagent_tasks"}, "'cursor' must be"),
    ],
)
def test_bad_paging_input_is_a_400(
    served: tuple[LiveServer, dict[str, list[str]]], params: dict[str, str], message: str
) -> None:
    server, _ = served
    response = server.client("ann").get("/tasks", params=params)
    assert response.status_code == 400 and message in response.json()["detail"]
