"""Real provider clients on per-sub-agent loops, against local fake servers (docs/models.md).

For every provider of tests/provider_matrix.py and each model form (a shared instance, a
factory, an ``init_chat_model`` string), streamed and not: 20 runs in a row and 5 at once
all COMPLETED, with exactly one HTTP request per model call (an SDK retry hiding a
loop-bound failure would add requests and seconds), and no loop-closed text in any error,
log record, loop exception handler call, unraisable hook call or ResourceWarning. Then a
cancel in the middle of a slow streamed reply, after which the next run completes.

``test_control_the_trap_is_real`` shows the trap exists in this environment for the
providers that keep their client across runs, so the matrix proves something.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from subagent_exec import (
    SubagentConfig,
    SubagentExecutor,
    SubagentResult,
    SubagentRuntime,
    SubagentStatus,
    register_model_binder,
)

from .provider_matrix import PROVIDERS, SLOW, Provider, model_spec
from .provider_servers import MODEL_CALL_PATHS, ProviderServer

LOOP_TEXTS = (
    "Event loop is closed",
    "attached to a different loop",
    "bound to a different event loop",
    "Task exception was never retrieved",
    "unclosed transport",
    "Unclosed client session",
)


@pytest.fixture(scope="module")
def server() -> Iterator[ProviderServer]:
    with ProviderServer() as srv:
        yield srv


@pytest.fixture(scope="module", autouse=True)
def _frozen_heap() -> Iterator[None]:
    """Each test's closing gc.collect() looks only at what that test made: everything
    older is frozen (a full collection of this heap costs ~0.3 s a test)."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()
    gc.collect()


@pytest.fixture
def runtime5(make_runtime: Callable[..., SubagentRuntime]) -> SubagentRuntime:
    return make_runtime(max_workers=5)


class _WatchingPolicy(asyncio.DefaultEventLoopPolicy):
    """Every new loop (each sub-agent's) reports what reaches its exception handler."""

    def __init__(self, seen: list[str]) -> None:
        super().__init__()
        self._seen = seen

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        loop = super().new_event_loop()

        def record(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            self._seen.append(
                f"loop handler: {context.get('message')} {context.get('exception')!r}"
            )

        loop.set_exception_handler(record)
        return loop


@pytest.fixture
def watch(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """Fails the test if anything loop-related went wrong anywhere: loop exception
    handlers, the unraisable hook, log records (tracebacks included), ResourceWarnings."""
    seen: list[str] = []

    def unraisable(info: Any) -> None:
        seen.append(f"unraisable: {info.exc_value!r} in {info.object!r}")

    monkeypatch.setattr(sys, "unraisablehook", unraisable)
    previous = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(_WatchingPolicy(seen))
    caplog.set_level(logging.INFO)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            yield seen
            gc.collect()  # what this test left unclosed warns now
            gc.freeze()
    finally:
        asyncio.set_event_loop_policy(previous)
    resource = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    texts = [*seen, caplog.text, *resource]
    bad = [t for t in texts if any(k in t for k in LOOP_TEXTS)]
    assert not bad, bad
    assert not seen, seen


def _cases() -> list[Any]:
    cases = []
    for provider in PROVIDERS:
        for form in ("instance", "factory", "string"):
            variants = provider.streaming
            if form == "string":  # init_chat_model("p:m") takes no streaming flag
                variants = variants[:1]
            for streaming in variants:
                mode = "streamed" if streaming else "plain"
                cases.append(
                    pytest.param(provider, form, streaming, id=f"{provider}-{form}-{mode}")
                )
    return cases


def _wait_all(runtime: SubagentRuntime, ids: list[str]) -> list[SubagentResult]:
    holders = [runtime.get(i) for i in ids]
    for holder in holders:
        assert holder is not None and holder.wait(30)
    return holders  # type: ignore[return-value]


def _streamed(server: ProviderServer, since: int) -> set[bool]:
    return {
        bool((r.body or {}).get("stream"))
        for r in server.requests[since:]
        if r.method == "POST" and r.body is not None
    }


@pytest.mark.parametrize(("provider", "form", "streaming"), _cases())
def test_20_in_a_row_and_5_at_once(
    provider: Provider,
    form: str,
    streaming: bool,
    server: ProviderServer,
    runtime5: SubagentRuntime,
    watch: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in provider.env(server).items():
        monkeypatch.setenv(name, value)
    config = SubagentConfig(name=provider.name, model=model_spec(provider, server, form, streaming))
    executor = SubagentExecutor(config, runtime=runtime5)
    calls_before, mark = server.model_calls(provider.kind), len(server.requests)

    runs = 20 if form == "instance" else provider.in_a_row_built
    started = time.monotonic()
    in_a_row = [executor.execute(f"question {i}", timeout=30) for i in range(runs)]
    elapsed = time.monotonic() - started
    at_once = _wait_all(runtime5, [executor.execute_async(f"parallel {i}") for i in range(5)])

    for holder in in_a_row + at_once:
        assert holder.status is SubagentStatus.COMPLETED, (holder.status, holder.error)
    assert [h.result for h in in_a_row] == [f"echo: question {i}" for i in range(runs)]
    assert sorted(h.result or "" for h in at_once) == [f"echo: parallel {i}" for i in range(5)]
    # One HTTP request per model call: no run needed a retry to succeed.
    assert server.model_calls(provider.kind) - calls_before == runs + 5
    assert _streamed(server, mark) == {streaming}
    # At the fake server's speed (an SDK retry backs off >= 0.5 s); factories and strings
    # also pay for building the provider's clients on every run (up to ~0.5 s for boto3).
    per_run = 0.4 if form == "instance" else 1.0
    assert elapsed < per_run * runs, f"{runs} runs took {elapsed:.2f} s"


@pytest.mark.parametrize("provider", PROVIDERS, ids=str)
def test_cancel_mid_stream_then_the_next_run_completes(
    provider: Provider, server: ProviderServer, runtime5: SubagentRuntime, watch: list[str]
) -> None:
    shared = provider.make(server, SLOW, True)  # 0.2 s before each streamed word
    executor = SubagentExecutor(SubagentConfig(name=provider.name, model=shared), runtime=runtime5)
    calls_before, disconnects_before = server.model_calls(provider.kind), server.disconnects
    task_id = executor.execute_async(" ".join(f"word{i}" for i in range(40)))
    holder = runtime5.get(task_id)
    assert holder is not None
    deadline = time.monotonic() + 10
    while server.model_calls(provider.kind) == calls_before and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.5)  # a few words into the reply
    stop = time.monotonic()
    assert runtime5.request_cancel(task_id, "stop mid-stream")
    assert holder.wait(10)
    assert holder.status is SubagentStatus.CANCELLED
    assert time.monotonic() - stop < 2.0
    if provider.name != "bedrock":  # boto3 reads on in its abandoned thread (docs/models.md)
        deadline = time.monotonic() + 5
        while server.disconnects == disconnects_before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.disconnects > disconnects_before, "the client did not hang up"

    after = executor.execute("short", timeout=30)
    assert after.status is SubagentStatus.COMPLETED, after.error
    assert after.result == "echo: short"


@pytest.mark.parametrize(
    "provider",
    [p for p in PROVIDERS if p.name in ("anthropic", "groq", "mistral", "ollama", "deepseek")],
    ids=str,
)
def test_control_the_trap_is_real(
    provider: Provider, server: ProviderServer, make_runtime: Callable[..., SubagentRuntime]
) -> None:
    """Without its binder (a pass-through one registered), a shared instance fails on
    the second run's loop: what the matrix above would hit without the binders.
    (Runs in a row often land on one reused worker loop by default; a fresh
    loop per run makes the trap show on every later run. Reused loops:
    tests/test_worker_loops.py.)"""
    runtime = make_runtime(max_workers=5, backend="thread-fresh-loops")
    options = {} if provider.name == "ollama" else {"max_retries": 0}  # let failures show
    shared = provider.make(server, "test-model", False, **options)
    register_model_binder(type(shared), lambda model: (model, None))
    try:
        executor = SubagentExecutor(SubagentConfig(name="trap", model=shared), runtime=runtime)
        holders = [executor.execute(f"q{i}", timeout=30) for i in range(4)]
    finally:
        register_model_binder(type(shared), None)
    failed = [h for h in holders if h.status is SubagentStatus.FAILED]
    assert failed, [h.status for h in holders]
    for holder in failed:  # and the failure says what it is and how to fix it
        assert (holder.error or "").startswith(
            f"ModelBindingError: {type(shared).__name__} made a call with an HTTP client "
            "bound to another event loop"
        ), holder.error


def test_every_wire_format_is_covered() -> None:
    assert {p.kind for p in PROVIDERS} == set(MODEL_CALL_PATHS)
