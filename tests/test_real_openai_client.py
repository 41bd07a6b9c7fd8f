"""The real ``ChatOpenAI`` on many sub-agent loops, against a local server.

langchain-openai caches one ``httpx.AsyncClient`` per process; its
connections belong to the first loop that used them. Each sub-agent here has
its own loop, so without the per-run client rebinding of ``_models.py`` these
runs fail with "Event loop is closed". The first test shows the trap is real
in this environment, so the others prove something.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from langchain_openai import ChatOpenAI

from subagent_exec import (
    ModelBindingError,
    SubagentConfig,
    SubagentExecutor,
    SubagentRuntime,
    SubagentStatus,
)
from subagent_exec.testing import OpenAICompatServer


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAICompatServer]:
    with OpenAICompatServer() as srv:
        yield srv


@pytest.fixture
def runtime() -> Iterator[SubagentRuntime]:
    rt = SubagentRuntime(max_workers=5)
    yield rt
    assert rt.shutdown(wait=True, timeout=30)


def _chat(server: OpenAICompatServer, model: str = "x", **kwargs: object) -> ChatOpenAI:
    return ChatOpenAI(base_url=server.base_url, api_key="test", model=model, **kwargs)  # type: ignore[arg-type]


def test_the_trap_is_real_without_per_run_clients(server: OpenAICompatServer) -> None:
    """Control: one instance used from several threads' own loops breaks."""
    model = _chat(server, max_retries=0)
    errors: list[str] = []

    def run_on_own_loop(i: int) -> None:
        try:
            asyncio.run(model.ainvoke(f"hello {i}"))
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=run_on_own_loop, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(5):  # and sequentially, each loop closed before the next
        run_on_own_loop(i)
    assert errors, "expected the shared cached client to fail across loops"


def _assert_all_completed(holders: list, expected_prefix: str = "echo: ") -> None:  # type: ignore[type-arg]
    for h in holders:
        assert h.status is SubagentStatus.COMPLETED, (h.status, h.error)
        assert h.result.startswith(expected_prefix), h.result


@pytest.mark.parametrize("streaming", [False, True], ids=["plain", "streamed"])
def test_shared_instance_20_in_a_row_and_5_at_once(
    server: OpenAICompatServer, runtime: SubagentRuntime, streaming: bool
) -> None:
    config = SubagentConfig(name="oa", model=_chat(server, streaming=streaming))
    executor = SubagentExecutor(config, runtime=runtime)
    in_a_row = [executor.execute(f"question {i}") for i in range(20)]
    _assert_all_completed(in_a_row)
    assert [h.result for h in in_a_row] == [f"echo: question {i}" for i in range(20)]
    ids = [executor.execute_async(f"parallel {i}") for i in range(5)]
    at_once = [runtime.get(i) for i in ids]
    for h in at_once:
        assert h is not None and h.wait(30)
    _assert_all_completed(at_once)


def test_factory_20_in_a_row_and_5_at_once(
    server: OpenAICompatServer, runtime: SubagentRuntime
) -> None:
    config = SubagentConfig(name="oa", model=lambda: _chat(server, streaming=True))
    executor = SubagentExecutor(config, runtime=runtime)
    _assert_all_completed([executor.execute(f"q{i}") for i in range(20)])
    ids = [executor.execute_async(f"p{i}") for i in range(5)]
    holders = [runtime.get(i) for i in ids]
    for h in holders:
        assert h is not None and h.wait(30)
    _assert_all_completed(holders)


def test_provider_string_20_in_a_row_and_5_at_once(
    server: OpenAICompatServer, runtime: SubagentRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    executor = SubagentExecutor(SubagentConfig(name="oa", model="openai:x"), runtime=runtime)
    _assert_all_completed([executor.execute(f"q{i}") for i in range(20)])
    ids = [executor.execute_async(f"p{i}") for i in range(5)]
    holders = [runtime.get(i) for i in ids]
    for h in holders:
        assert h is not None and h.wait(30)
    _assert_all_completed(holders)


def test_cancel_mid_stream_leaves_the_next_run_working(
    server: OpenAICompatServer, runtime: SubagentRuntime
) -> None:
    shared = _chat(server, model="slow-0.2", streaming=True)
    executor = SubagentExecutor(SubagentConfig(name="oa", model=shared), runtime=runtime)
    long_task = " ".join(f"word{i}" for i in range(40))  # 40 chunks x 0.2 s
    requests_before = server.request_count
    task_id = executor.execute_async(long_task)
    holder = runtime.get(task_id)
    assert holder is not None
    deadline = time.monotonic() + 10
    while server.request_count == requests_before and time.monotonic() < deadline:
        time.sleep(0.01)  # wait until the streamed reply is under way
    time.sleep(0.5)
    stop = time.monotonic()
    assert runtime.request_cancel(task_id, "stop mid-stream")
    assert holder.wait(10)
    assert holder.status is SubagentStatus.CANCELLED
    assert time.monotonic() - stop < 2.0
    # The same shared instance keeps working, streamed and plain.
    after = SubagentExecutor(
        SubagentConfig(name="oa", model=_chat(server, streaming=True)), runtime=runtime
    )
    _assert_all_completed([after.execute("after the cancel") for _ in range(3)])
    _assert_all_completed([executor.execute("short") for _ in range(1)])


def test_instance_with_its_own_async_client_is_refused_with_the_fix(
    server: OpenAICompatServer, runtime: SubagentRuntime
) -> None:
    model = _chat(server, http_async_client=httpx.AsyncClient())
    with pytest.raises(ModelBindingError, match=r"model=lambda: ChatOpenAI"):
        SubagentExecutor(SubagentConfig(name="oa", model=model), runtime=runtime)


def test_factory_with_its_own_async_client_is_trusted(
    server: OpenAICompatServer, runtime: SubagentRuntime
) -> None:
    config = SubagentConfig(
        name="oa", model=lambda: _chat(server, http_async_client=httpx.AsyncClient())
    )
    executor = SubagentExecutor(config, runtime=runtime)
    _assert_all_completed([executor.execute(f"q{i}") for i in range(5)])
