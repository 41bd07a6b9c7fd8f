"""Runtime processes of a cluster for the tests: each a subprocess running
tests/cluster_child.py on one PostgreSQL store, driven over its stdin and
stdout (one JSON line each way), killed at the end whatever happens."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CHILD = Path(__file__).resolve().parent / "cluster_child.py"
#: Fast timings for tests: a dead process is noticed within ~2 s.
FAST = ("0.3", "1.5", "0.5")


class Node:
    """One runtime process of the cluster."""

    def __init__(self, dsn: str, name: str, *, timings: tuple[str, ...] = FAST,
                 flush: float = 0.1) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), dsn, *timings, str(flush)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def wait_ready(self) -> Node:
        ready = self._next(60.0)
        assert json.loads(ready) == {"ready": True}, ready
        return self

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def _next(self, timeout: float) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.name} did not answer in {timeout}s") from None
        if line is None:
            raise AssertionError(
                f"{self.name} exited ({self.proc.wait(5)}): {''.join(self.stderr[-30:])}"
            )
        return line

    def call(self, op: str, timeout: float = 30.0, **args: Any) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self._next(timeout))
        if not reply["ok"]:
            raise AssertionError(f"{self.name} {op}: {reply['error']}")
        return reply["value"]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            if sig == signal.SIGKILL:
                self.proc.wait(10)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("quit", timeout=30.0)
                self.proc.wait(10)
            except Exception:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def until(condition: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
