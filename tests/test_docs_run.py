"""Every ```python block of README.md and docs/*.md runs as a reader would paste it.

Each block runs alone, in a fresh interpreter, in an empty directory, offline:
the provider clients a block uses are pointed at local fake servers through
the environment variables a reader would set (``OPENAI_BASE_URL``,
``ANTHROPIC_BASE_URL`` and their keys). A block that cannot run offline says
why in an HTML comment right above it, ``<!-- not run: <reason> -->``; there
are few of those, and this test keeps it so.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from .provider_servers import ProviderServer

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"(<!-- not run: ([^>]*)-->\s*\n)?```python\n(.*?)```", re.DOTALL)
#: Blocks allowed to carry a "not run" reason (each must say why).
MAX_NOT_RUN = 6
BLOCK_TIMEOUT_SECONDS = 180


@dataclass(frozen=True)
class Block:
    document: str
    line: int
    code: str
    not_run: str | None

    @property
    def name(self) -> str:
        return f"{self.document}:{self.line}"


def blocks() -> list[Block]:
    found = []
    for path in DOCUMENTS:
        text = path.read_text(encoding="utf-8")
        for match in _BLOCK.finditer(text):
            line = text[: match.start(3)].count("\n")
            found.append(
                Block(str(path.relative_to(ROOT)), line, match.group(3), match.group(2))
            )
    return found


@pytest.fixture(scope="module")
def fake_providers() -> Iterator[ProviderServer]:
    with ProviderServer() as server:
        yield server


def test_few_blocks_are_not_run_and_each_says_why() -> None:
    skipped = [b for b in blocks() if b.not_run is not None]
    assert len(skipped) <= MAX_NOT_RUN, [b.name for b in skipped]
    assert all(b.not_run and b.not_run.strip() for b in skipped)


@pytest.fixture
def ray_tmpdir() -> Iterator[str]:
    """A short directory for Ray's session files (its socket paths must stay
    under 108 bytes, which pytest's tmp_path is too deep for); removed after."""
    path = tempfile.mkdtemp(prefix="sxr")
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Zygote:
    """A fork server (tests/docs_zygote.py) that runs one block at a time.

    Set ``DOCS_RUN_FRESH=1`` to run every block in a fresh interpreter instead
    (slower; the same results are expected)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "docs_zygote.py")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
        )
        assert self._line() == "ready"

    def _line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the docs fork server ended ({self.process.wait(10)})")
        return line.strip()

    def run(self, code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        assert self.process.stdin is not None
        out, err = cwd / "stdout.txt", cwd / "stderr.txt"
        request = {"code": code, "cwd": str(cwd), "out": str(out), "err": str(err)}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        pid = int(self._line().removeprefix("pid "))
        # The block's own time limit: kill the child, not the server.
        timer = threading.Timer(BLOCK_TIMEOUT_SECONDS, os.kill, (pid, signal.SIGKILL))
        timer.start()
        try:
            code_ = int(self._line().removeprefix("exit "))
        finally:
            timer.cancel()
        return subprocess.CompletedProcess(
            [sys.executable, "-c", code], code_,
            out.read_text(errors="replace"), err.read_text(errors="replace"),
        )

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# Each block runs in its own interpreter: forked from a server that imported
# the heavy modules once (tests/docs_zygote.py says why that is the same for a
# block), two at a time. The whole set still takes a while on 2 shared cores,
# beyond the suite's default per-test timeout; each block keeps its own limit.
@pytest.mark.timeout(420)
def test_every_python_block_runs_as_pasted(
    fake_providers: ProviderServer, tmp_path: Path, ray_tmpdir: str
) -> None:
    env = {
        **os.environ,
        "OPENAI_BASE_URL": fake_providers.base_url,
        "OPENAI_API_KEY": "sk-test",
        "ANTHROPIC_BASE_URL": fake_providers.root_url,
        "ANTHROPIC_API_KEY": "test",
        "RAY_AUTH_MODE": "disabled",
        "RAY_TMPDIR": ray_tmpdir,  # Ray's session files stay in this test's dir
        "PYTHONPATH": "",  # only what a reader has: the installed package
    }
    runnable = [b for b in blocks() if b.not_run is None]
    assert len(runnable) >= 10
    fresh = os.environ.get("DOCS_RUN_FRESH") == "1"
    servers: queue.Queue[Zygote] = queue.Queue()
    workers = 2
    if not fresh:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for server in pool.map(lambda _: Zygote(env), range(workers)):
                servers.put(server)

    def run(index_block: tuple[int, Block]) -> tuple[Block, subprocess.CompletedProcess[str]]:
        index, block = index_block
        workdir = tmp_path / f"block{index}"
        workdir.mkdir()
        if not fresh:
            server = servers.get()
            try:
                return block, server.run(block.code, workdir)
            finally:
                servers.put(server)
        done = subprocess.run(
            [sys.executable, "-c", block.code],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT_SECONDS,
        )
        return block, done

    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(run, enumerate(runnable)))
    finally:
        while not servers.empty():
            servers.get().close()
    failures = [
        f"{block.name} exited {done.returncode}:\n{done.stderr[-2500:]}"
        for block, done in results
        if done.returncode != 0
    ]
    assert failures == [], "\n\n".join(failures)
