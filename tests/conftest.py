"""Shared fixtures for the engine tests (helpers live in tests/helpers.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from subagent_exec import SubagentRuntime


@pytest.fixture
def make_runtime() -> Iterator[Callable[..., SubagentRuntime]]:
    """Build runtimes with any options; every one is shut down (wait=True) after the test."""
    made: list[SubagentRuntime] = []

    def make(**options: Any) -> SubagentRuntime:
        options.setdefault("cleanup_timeout_seconds", 2.0)
        runtime = SubagentRuntime(**options)
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        assert runtime.shutdown(cancel=True, wait=True, timeout=30.0), (
            f"runtime {runtime.name} did not shut down cleanly"
        )


@pytest.fixture
def runtime(make_runtime: Callable[..., SubagentRuntime]) -> SubagentRuntime:
    """A runtime with 4 workers, shut down with ``wait=True`` after the test."""
    return make_runtime(max_workers=4)


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """An event for blocking sync code; always released at teardown so no
    thread outlives the test by more than a moment."""
    event = threading.Event()
    yield event
    event.set()
