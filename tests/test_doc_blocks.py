"""The ```python blocks of docs/models.md, docs/testing.md, docs/deepagents.md and of the
README's "Real models on many loops" section run as a reader would paste them, offline.

A reader has their provider's API key set; the blocks only build models and configs, so a
dummy key stands in for it. Each document's blocks run in order in one fresh interpreter
(a block may use what an earlier one defined); a block preceded by ``<!-- not run: ... -->``
is skipped.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_BLOCK = re.compile(r"(<!-- not run:[^>]*-->\s*)?```python\n(.*?)```", re.DOTALL)
DUMMY_KEYS = {"ANTHROPIC_API_KEY": "dummy", "OPENAI_API_KEY": "dummy"}


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    following = text.find("\n## ", start + len(heading))
    return text[start : following if following != -1 else len(text)]


def _blocks(text: str) -> list[str]:
    return [code for skipped, code in _BLOCK.findall(text) if not skipped]


DOCS = {
    "docs/models.md": (ROOT / "docs" / "models.md").read_text(),
    "docs/testing.md": (ROOT / "docs" / "testing.md").read_text(),
    "docs/deepagents.md": (ROOT / "docs" / "deepagents.md").read_text(),
    "README: Real models on many loops": _section(
        (ROOT / "README.md").read_text(), "## Real models on many loops"
    ),
}


@pytest.mark.parametrize("name", list(DOCS))
def test_python_blocks_run(name: str) -> None:
    blocks = _blocks(DOCS[name])
    assert blocks, f"no python block found in {name}"
    script = "\n\n".join(blocks)
    env = {**os.environ, **DUMMY_KEYS}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
