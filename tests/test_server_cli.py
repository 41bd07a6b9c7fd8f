"""``subagent-exec serve`` and ``python -m subagent_exec.server`` as real processes."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from .server_support import SETTLE, http_request, raw_http

SCRIPT = Path(sys.executable).with_name("subagent-exec")


def serve(*args: str, cwd: str | Path | None = None) -> subprocess.Popen[str]:
    """``serve`` in ``cwd`` (default: a new temporary directory, where its
    default task store, a SQLite file, is made)."""
    return subprocess.Popen(
        [sys.executable, "-m", "subagent_exec.server", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        cwd=cwd if cwd is not None else tempfile.mkdtemp(prefix="subagent-serve-"),
    )


def test_serve_prints_the_address_serves_the_page_and_stops_on_ctrl_c() -> None:
    process = serve("--port", "0")
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"open (http://127\.0\.0\.1:(\d+)/) in a browser", line)
        assert match, line
        url = match.group(1)

        def page() -> httpx.Response | None:
            try:
                return httpx.get(url, timeout=2)
            except httpx.TransportError:
                return None

        deadline = time.monotonic() + SETTLE
        response = page()
        while response is None and time.monotonic() < deadline:
            time.sleep(0.1)
            response = page()
        assert response is not None and response.status_code == 200
        assert "subagent-exec" in response.text
        started = httpx.post(url + "runs", timeout=5)
        assert started.status_code == 202
        # Ctrl-C with a run in progress and a page's event stream open.
        with httpx.stream("GET", url + "events", timeout=5) as stream:
            assert stream.status_code == 200
            process.send_signal(signal.SIGINT)
            assert process.wait(SETTLE) == 0
        output = process.stdout.read()
        # The open stream was ended at once, not cancelled after a timeout.
        assert "graceful shutdown exceeded" not in output, output
        assert "Traceback" not in output and "subagent-exec: stopped" in output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "70000"], "--port must be between 0 and 65535"),
        (["--max-workers", "0"], "--max-workers must be >= 1"),
        (["--port", "many"], "invalid int value"),
        (["--limit-concurrency", "0"], "--limit-concurrency must be >= 1"),
        (["--header-timeout", "0"], "--header-timeout must be a number > 0"),
        (["--header-timeout", "nan"], "--header-timeout must be a number > 0"),
        (["--allowed-host", "ev*l.example"], "--allowed-host entries must be host names"),
        (["--allowed-host", "http://x"], "--allowed-host entries must be host names"),
    ],
)
def test_serve_refuses_bad_options(args: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "subagent_exec.server", *args],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert message in done.stderr


def test_subagent_exec_command_has_serve() -> None:
    assert SCRIPT.exists(), f"{SCRIPT} missing: pip install -e '.[test]'"
    helped = subprocess.run([str(SCRIPT), "serve", "--help"], capture_output=True, text=True,
                            timeout=60)
    assert helped.returncode == 0
    assert "--host" in helped.stdout and "--port" in helped.stdout
    assert "127.0.0.1" in helped.stdout
    missing = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "serve" in missing.stderr


@pytest.fixture
def launch() -> Iterator[Callable[..., int]]:
    """Start `serve --port 0 ...`; returns its port. Stopped (Ctrl-C) after the test,
    which also checks that it stopped cleanly."""
    processes: list[subprocess.Popen[str]] = []

    def start(*args: str) -> int:
        process = serve("--port", "0", *args)
        processes.append(process)
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"open http://127\.0\.0\.1:(\d+)/", line)
        assert match, line
        port = int(match.group(1))
        deadline = time.monotonic() + SETTLE
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return port
            except OSError:
                assert time.monotonic() < deadline, "serve did not start listening"
                time.sleep(0.1)

    yield start
    for process in processes:
        process.send_signal(signal.SIGINT)
        try:
            assert process.wait(SETTLE) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.stdout is not None
        output = process.stdout.read()
        assert "Traceback" not in output and "500 Internal Server Error" not in output, output


def test_serve_answers_only_its_own_host_names(launch: Callable[..., int]) -> None:
    # DNS rebinding: a page whose name now resolves to 127.0.0.1 sends its own
    # name as Host; `serve` must not answer it (400, never a 500).
    port = launch("--allowed-host", "agents.example.test")
    for host, expected in [
        (b"127.0.0.1:%d" % port, 200), (b"localhost:%d" % port, 200), (b"[::1]:%d" % port, 200),
        (b"agents.example.test", 200), (b"evil.example", 400), (b"evil.example:%d" % port, 400),
        (b"agents.example.test.evil.example", 400), (b"a b", 400), (b"[::1", 400),
    ]:
        status, body = raw_http(port, http_request("GET", "/tasks", host))
        assert status == expected, (host, body)
    status, _ = raw_http(port, http_request(
        "POST", "/runs", b"evil.example", {b"content-type": b"application/json"}, b"{}"
    ))
    assert status == 400
    listing = httpx.get(f"http://127.0.0.1:{port}/tasks", timeout=5).json()
    assert listing["tasks"] == [], "the refused POST started nothing"


def test_serve_closes_half_open_connections_and_caps_concurrency(
    launch: Callable[..., int],
) -> None:
    header_timeout = 2.0
    port = launch("--header-timeout", str(header_timeout), "--limit-concurrency", "10")
    # 30 clients that never finish a request: half send nothing at all, half
    # half a request head.
    idle = []
    for index in range(30):
        sock = socket.create_connection(("127.0.0.1", port), timeout=SETTLE)
        if index % 2:
            sock.sendall(b"GET /tasks HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        idle.append(sock)
    opened = time.monotonic()
    # While they are open the concurrency limit holds: a complete request is
    # answered 503 at once rather than joining an unbounded pile.
    status, _ = raw_http(port, http_request("GET", "/tasks", b"127.0.0.1"))
    assert status == 503
    # The server closes every one of them once the header timeout has passed.
    for sock in idle:
        try:
            assert sock.recv(1024) == b""
        except ConnectionResetError:
            pass
        sock.close()
    closed_after = time.monotonic() - opened
    assert closed_after < header_timeout + SETTLE / 3, closed_after
    assert raw_http(port, http_request("GET", "/tasks", b"127.0.0.1"))[0] == 200
    # Kept alive after a response, a connection gets the same bound for its
    # next request head (sooner than the 5 s keep-alive timeout would act).
    with socket.create_connection(("127.0.0.1", port), timeout=SETTLE) as sock:
        sock.sendall(b"GET /tasks HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        response = b""
        while b"\r\n\r\n" not in response or not response.endswith(b"}"):
            response += sock.recv(65536)
        assert response.startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /tasks HTTP/1.1\r\nHo")
        started = time.monotonic()
        assert sock.recv(1024) == b""
        assert time.monotonic() - started < 4.5
    # An unfinished request head is buffered up to 16 KiB, then refused at
    # once (not only when the header timeout ends it).
    unfinished = b"GET /tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 20_000
    with socket.create_connection(("127.0.0.1", port), timeout=SETTLE) as sock:
        sent = time.monotonic()
        sock.sendall(unfinished)
        answer = sock.recv(1024)
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert time.monotonic() - sent < header_timeout
