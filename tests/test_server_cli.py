"""``subagent-exec serve`` and ``python -m subagent_exec.server`` as real processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .server_support import SETTLE

SCRIPT = Path(sys.executable).with_name("subagent-exec")


def serve(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "subagent_exec.server", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
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
