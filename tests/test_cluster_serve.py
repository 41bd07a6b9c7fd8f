"""``subagent-exec serve --db postgresql://... --workers 3`` is one host:
a run started through one worker is watched (SSE) through a second and
stopped through a third, over HTTP. Which worker answers is the kernel's
choice; ``x-subagent-worker`` says which one did, so the test keeps a
connection (keep-alive) once it has landed on the worker it wants."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .server_support import read_until, sse_events, wait_for
from .test_server_cli import serve

WORKER = "x-subagent-worker"


@pytest.fixture
def cluster_url(postgres_dsn: str, tmp_path: Path) -> Iterator[str]:
    process = serve("--port", "0", "--db", postgres_dsn, "--workers", "3", cwd=tmp_path)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        match = re.search(r"open (http://127\.0\.0\.1:\d+/) in a browser", first)
        assert match and "3 worker processes" in first, first
        url = match.group(1)
        seen: set[str] = set()

        def all_up() -> bool:
            try:
                with httpx.Client(timeout=2) as client:
                    seen.add(client.get(url + "tasks").headers[WORKER])
            except httpx.TransportError:
                pass
            return len(seen) == 3

        wait_for(all_up, "three workers answer", timeout=90)
        yield url
        process.send_signal(signal.SIGINT)
        assert process.wait(40) == 0
        output = process.stdout.read()
        assert "Traceback" not in output, output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        # (The workers are the parent's children: on SIGINT it stops them and
        # waits; a parent killed here leaves them to see their socket closed.)


def client_on(url: str, wanted: set[str], tries: int = 300) -> tuple[httpx.Client, str]:
    """A client whose one kept-alive connection is served by a worker in ``wanted``."""
    for _ in range(tries):
        client = httpx.Client(
            base_url=url, timeout=10,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )
        worker = client.get("/tasks").headers[WORKER]
        if worker in wanted:
            return client, worker
        client.close()
        time.sleep(0.01)
    raise AssertionError(f"no connection landed on workers {wanted} in {tries} tries")


def test_start_through_one_worker_watch_through_another_stop_through_a_third(
    cluster_url: str,
) -> None:
    clients: list[httpx.Client] = []
    try:
        starter, first = client_on(cluster_url, {"0", "1", "2"})
        clients.append(starter)
        started = starter.post("/runs")
        assert started.status_code == 202, started.text
        root = started.json()["task_id"]
        assert started.headers[WORKER] == first
        watcher, second = client_on(cluster_url, {"0", "1", "2"} - {first})
        clients.append(watcher)
        stopper, third = client_on(cluster_url, {"0", "1", "2"} - {first, second})
        clients.append(stopper)
        # Every worker sees the run (through the store).
        detail = stopper.get(f"/tasks/{root}")
        assert detail.status_code == 200 and detail.headers[WORKER] == third
        with watcher.stream("GET", "/events", params={"after": 0}) as stream:
            assert stream.headers[WORKER] == second
            events = sse_events(stream)
            read_until(events, lambda e: e.kind == "started" and e.data["task_id"] == root)
            stop = stopper.post(f"/tasks/{root}/stop", json={"reason": "from the third"})
            assert stop.status_code == 202, stop.text
            assert stop.headers[WORKER] == third
            ended = read_until(
                events, lambda e: e.kind == "cancelled" and e.data["task_id"] == root
            )
        mine = [e.kind for e in ended if e.data["task_id"] == root]
        assert mine[-2:] == ["cancel_requested", "cancelled"], mine
        final = stopper.get(f"/tasks/{root}").json()
        assert final["status"] == "cancelled", final
        assert final["cancel_reason"] == "from the third"
        # Its sub-agents (in the first worker) were stopped with it.
        for child in final["children"]:
            wait_for(lambda c=child: stopper.get(f"/tasks/{c}").json()["status"]
                     in ("cancelled", "completed", "failed"), f"child {child} ended")
    finally:
        for client in clients:
            client.close()


def test_workers_need_a_shared_postgres_store(tmp_path: Path) -> None:
    process = serve("--port", "0", "--workers", "2", cwd=tmp_path)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "--workers N > 1 needs a store every worker shares" in output
    bad = serve("--port", "0", "--workers", "0", cwd=tmp_path)
    output, _ = bad.communicate(timeout=60)
    assert bad.returncode == 2 and "--workers must be >= 1" in output



def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited (its new parent may never reap it)


def test_workers_stop_when_their_parent_is_killed(postgres_dsn: str, tmp_path: Path) -> None:
    process = serve("--port", "0", "--db", postgres_dsn, "--workers", "2", cwd=tmp_path)
    workers: list[int] = []
    try:
        assert process.stdout is not None
        url = re.search(r"open (http://127\.0\.0\.1:\d+/)", process.stdout.readline())
        assert url
        seen: set[str] = set()

        def both_up() -> bool:
            try:
                with httpx.Client(timeout=2) as client:
                    seen.add(client.get(url.group(1) + "tasks").headers[WORKER])
            except httpx.TransportError:
                pass
            return len(seen) == 2

        wait_for(both_up, "two workers answer", timeout=90)
        workers = [pid for pid in _children(process.pid) if _running(pid)]
        assert len(workers) >= 2  # the workers (and multiprocessing's helper, if any)
        process.kill()
        process.wait(10)
        wait_for(lambda: not any(_running(pid) for pid in workers),
                 "the orphaned workers stopped", timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        for pid in workers:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
