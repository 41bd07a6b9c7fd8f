"""``subagent-exec serve --db``: the server keeps its history across a
restart, says where at start, and an event stream that reconnects after the
restart gets every event it missed, replayed from the store."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from .server_support import SETTLE, read_until, sse_events, wait_for
from .test_server_cli import serve

TERMINAL = {"completed", "failed", "cancelled", "timed_out"}


def _start(*args: str, cwd: Path) -> tuple[subprocess.Popen[str], str, list[str]]:
    process = serve("--port", "0", *args, cwd=cwd)
    assert process.stdout is not None
    lines = [process.stdout.readline() for _ in range(3)]
    match = re.search(r"open (http://127\.0\.0\.1:\d+/) in a browser", lines[0])
    assert match, lines
    url = match.group(1)

    def up() -> bool:
        try:
            return httpx.get(url + "tasks", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(up, "serve answers")
    return process, url, lines


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    try:
        assert process.wait(SETTLE * 3) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.stdout is not None
    output = process.stdout.read()
    assert "Traceback" not in output, output
    return output


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    """The --db arguments (none: the default file in the current directory)."""
    if request.param == "postgres":
        return ["--db", str(request.getfixturevalue("postgres_dsn"))]
    return []


def test_a_restarted_server_has_its_history_and_replays_missed_events(
    tmp_path: Path, db: list[str]
) -> None:
    first, url, lines = _start(*db, cwd=tmp_path)
    if not db:
        assert f"task store SQLite file {tmp_path / 'subagent-exec.db'}" in lines[2], lines
        assert (tmp_path / "subagent-exec.db").exists()
    else:
        assert "task store PostgreSQL postgresql://postgres@127.0.0.1:" in lines[2], lines
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            root = client.post("/runs").json()["task_id"]
            with client.stream("GET", "/events", params={"after": 0}) as stream:
                events = sse_events(stream, hello=True)
                hello = next(events)
                # Until a sub-agent of the run is at work.
                seen = read_until(
                    events, lambda e: e.kind == "started" and e.data["parent_id"] == root
                )
            last_seen = seen[-1].id
            epoch = hello.data["epoch"]
    finally:
        # Ctrl-C stops the run: its cancellations are written before exit.
        _stop(first)

    second, url, _ = _start(*db, cwd=tmp_path)
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            # The run, from the store: finished, with its tree.
            page = client.get("/tasks", params={"root": "true", "limit": 10}).json()
            runs = [t for t in page["tasks"] if not t["background"]]  # a run's scouts are roots
            assert [t["task_id"] for t in runs] == [root] and page["next_cursor"] is None
            assert all(t["status"] in TERMINAL for t in page["tasks"])
            detail = client.get(f"/tasks/{root}").json()
            assert detail["status"] == "cancelled" and detail["children"]
            # The stream that saw up to `last_seen` before the restart gets the rest.
            headers = {"last-event-id": str(last_seen)}
            with client.stream("GET", "/events", headers=headers) as stream:
                events = sse_events(stream, hello=True)
                again = next(events)
                assert again.data["epoch"] == epoch  # the same numbering: resumed
                missed = read_until(
                    events, lambda e: e.kind == "cancelled" and e.data["task_id"] == root
                )
            assert all(e.event == "task" for e in missed), "no reset"
            seqs = [e.id for e in missed]
            assert seqs[0] == last_seen + 1 and seqs == sorted(seqs)
            # A new run numbers its events after the old ones.
            new_root = client.post("/runs").json()["task_id"]
            replay_of_new = client.get("/tasks", params={"limit": 1}).json()["tasks"]
            assert replay_of_new[0]["task_id"] == new_root
    finally:
        output = _stop(second)
    assert "subagent-exec: stopped" in output


def test_serve_with_db_memory_keeps_nothing(tmp_path: Path) -> None:
    process, _, lines = _start("--db", ":memory:", cwd=tmp_path)
    try:
        assert "task store in memory: nothing is kept" in lines[2]
        assert not list(tmp_path.iterdir())
    finally:
        _stop(process)


def test_serve_fails_at_start_naming_a_bad_store(tmp_path: Path) -> None:
    (tmp_path / "broken.db").write_bytes(b"this is not a database at all" * 200)
    done = subprocess.run(
        [sys.executable, "-m", "subagent_exec.server", "--port", "0", "--db", "broken.db"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert done.returncode == 1
    assert str(tmp_path / "broken.db") in done.stderr and "not a database" in done.stderr
