"""Every ```python block of README.md and docs/*.md runs as a reader would paste it.

Each block runs alone, in a fresh interpreter, in an empty directory, offline:
the provider clients a block uses are pointed at local fake servers through
the environment variables a reader would set (``OPENAI_BASE_URL``,
``ANTHROPIC_BASE_URL`` and their keys). A block that cannot run offline says
why in an HTML comment right above it, ``<!-- not run: <reason> -->``; there
are few of those, and this test keeps it so.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
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


# Each block is a fresh interpreter (imports alone take seconds): with 25-odd
# blocks on 2 shared cores the whole set takes ~2 min, beyond the suite's
# default per-test timeout. Each block keeps its own limit.
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

    def run(index_block: tuple[int, Block]) -> tuple[Block, subprocess.CompletedProcess[str]]:
        index, block = index_block
        workdir = tmp_path / f"block{index}"
        workdir.mkdir()
        done = subprocess.run(
            [sys.executable, "-c", block.code],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT_SECONDS,
        )
        return block, done

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(run, enumerate(runnable)))
    failures = [
        f"{block.name} exited {done.returncode}:\n{done.stderr[-2500:]}"
        for block, done in results
        if done.returncode != 0
    ]
    assert failures == [], "\n\n".join(failures)
