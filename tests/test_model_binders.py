"""The extension point ``register_model_binder`` and the clear error for loop-bound clients.

The toy provider below does what langchain-anthropic does: its async HTTP client is
cached for the whole process, so its connections belong to the first loop that used them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import httpx
import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from subagent_exec import (
    ModelBindingError,
    SubagentConfig,
    SubagentExecutor,
    SubagentRuntime,
    SubagentStatus,
    register_model_binder,
)
from subagent_exec._models import explain_loop_binding_error, find_binder

from .provider_servers import ProviderServer


class ToyChatModel(BaseChatModel):
    """An in-house provider: an OpenAI-compatible endpoint through one cached client."""

    base_url: str
    _shared: ClassVar[dict[str, httpx.AsyncClient]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    @property
    def _llm_type(self) -> str:
        return "toy"

    def client(self) -> httpx.AsyncClient:
        own = self.__dict__.get("own_client")
        if own is not None:
            return own  # type: ignore[no-any-return]
        with self._lock:  # the process-wide cache that breaks on per-run loops
            return self._shared.setdefault(self.base_url, httpx.AsyncClient())

    def bind_tools(self, tools: Any, **kwargs: Any) -> ToyChatModel:
        return self

    def _generate(self, messages: list[BaseMessage], *a: Any, **k: Any) -> ChatResult:
        raise NotImplementedError("async only")

    async def _agenerate(self, messages: list[BaseMessage], *a: Any, **k: Any) -> ChatResult:
        body = {"model": "toy", "messages": [{"role": "user", "content": messages[-1].text}]}
        response = await self.client().post(f"{self.base_url}/chat/completions", json=body)
        text = response.json()["choices"][0]["message"]["content"]
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])


#: (the loop a client was made on, the loop it was closed on), per run.
closed_on: list[tuple[asyncio.AbstractEventLoop, asyncio.AbstractEventLoop]] = []


def bind_toy(model: BaseChatModel) -> tuple[BaseChatModel, Callable[[], Any]]:
    """The few lines a user writes: a copy of the model with a client made for this run."""
    client = httpx.AsyncClient()
    run_model = model.model_copy()
    run_model.__dict__["own_client"] = client
    made_on = asyncio.get_running_loop()  # binders are called inside the run

    async def close() -> None:
        closed_on.append((made_on, asyncio.get_running_loop()))
        await client.aclose()

    return run_model, close


@pytest.fixture(scope="module")
def server() -> Iterator[ProviderServer]:
    with ProviderServer() as srv:
        yield srv


@pytest.fixture
def runtime5(make_runtime: Callable[..., SubagentRuntime]) -> SubagentRuntime:
    return make_runtime(max_workers=5)


@pytest.fixture
def toy_binder() -> Iterator[None]:
    register_model_binder(ToyChatModel, bind_toy)
    yield
    register_model_binder(ToyChatModel, None)


def test_toy_provider_fails_without_a_binder_with_a_clear_error(
    server: ProviderServer, make_runtime: Callable[..., SubagentRuntime]
) -> None:
    # A fresh loop per run: the client cached by the first run fails on every
    # later one. (With worker loops reused, the default, it fails on the runs
    # on other workers' loops: tests/test_worker_loops.py.)
    runtime = make_runtime(max_workers=5, backend="thread-fresh-loops")
    shared = ToyChatModel(base_url=server.base_url)
    executor = SubagentExecutor(SubagentConfig(name="toy", model=shared), runtime=runtime)
    holders = [executor.execute(f"q{i}", timeout=30) for i in range(6)]
    failed = [h for h in holders if h.status is SubagentStatus.FAILED]
    assert failed, "expected the cached client to fail on a later run's loop"
    for holder in failed:
        error = holder.error or ""
        assert error.startswith(
            "ModelBindingError: ToyChatModel made a call with an HTTP client bound to another "
            "event loop (RuntimeError: Event loop is closed)"
        ), error
        assert "register_model_binder(ToyChatModel, binder)" in error
        assert "docs/models.md" in error


def test_toy_provider_works_with_its_binder(
    server: ProviderServer, runtime5: SubagentRuntime, toy_binder: None
) -> None:
    shared = ToyChatModel(base_url=server.base_url)
    closed_on.clear()
    calls_before = server.model_calls("openai")
    for model in (shared, lambda: ToyChatModel(base_url=server.base_url)):
        executor = SubagentExecutor(SubagentConfig(name="toy", model=model), runtime=runtime5)
        in_a_row = [executor.execute(f"q{i}", timeout=30) for i in range(20)]
        ids = [executor.execute_async(f"p{i}") for i in range(5)]
        at_once = [runtime5.get(i) for i in ids]
        for holder in at_once:
            assert holder is not None and holder.wait(30)
        for holder in [*in_a_row, *at_once]:
            assert holder is not None
            assert holder.status is SubagentStatus.COMPLETED, holder.error
        assert [h.result for h in in_a_row] == [f"echo: q{i}" for i in range(20)]
    assert server.model_calls("openai") - calls_before == 50  # nothing retried
    # Every run's client was closed, each on the loop it was made on (its run's).
    assert len(closed_on) == 50 and all(made is closed for made, closed in closed_on)


def test_a_registered_binder_wins_and_the_most_specific_class_wins(toy_binder: None) -> None:
    class SpecialToy(ToyChatModel):
        pass

    found = find_binder(SpecialToy)
    assert found is not None and found[0] is bind_toy and found[1] is ToyChatModel

    def special(model: BaseChatModel) -> tuple[BaseChatModel, None]:
        return model, None

    register_model_binder(SpecialToy, special)
    try:
        assert find_binder(SpecialToy) == (special, SpecialToy)
        assert find_binder(ToyChatModel) == (bind_toy, ToyChatModel)
    finally:
        register_model_binder(SpecialToy, None)
    assert find_binder(SpecialToy) == (bind_toy, ToyChatModel)


def test_builtin_binders_are_found_by_class_and_a_user_binder_overrides_them() -> None:
    from langchain_anthropic import ChatAnthropic
    from langchain_openai import AzureChatOpenAI, ChatOpenAI

    from subagent_exec._models.anthropic import bind_anthropic
    from subagent_exec._models.openai import bind_openai

    assert find_binder(ChatAnthropic) == (bind_anthropic, ChatAnthropic)
    openai_found = find_binder(AzureChatOpenAI)
    assert openai_found is not None and openai_found[0] is bind_openai
    assert openai_found[1].__name__ == "BaseChatOpenAI"

    def mine(model: BaseChatModel) -> tuple[BaseChatModel, None]:
        return model, None

    register_model_binder(ChatOpenAI, mine)
    try:
        assert find_binder(ChatOpenAI) == (mine, ChatOpenAI)
        assert find_binder(AzureChatOpenAI) == openai_found  # a sibling keeps the built-in
    finally:
        register_model_binder(ChatOpenAI, None)
    assert find_binder(ChatOpenAI) == openai_found


def test_anthropic_subclass_with_its_own_client_builder_gets_a_new_client() -> None:
    """ChatAnthropicBedrock (langchain-aws) builds its SDK client per instance: the binder
    lets the copy build its own instead of copying the base class's cached one."""
    from langchain_aws import ChatAnthropicBedrock

    from subagent_exec._models.anthropic import bind_anthropic

    model = ChatAnthropicBedrock(
        model="anthropic.claude-test",
        region_name="us-east-1",
        aws_access_key_id="test",  # type: ignore[arg-type]
        aws_secret_access_key="test",  # type: ignore[arg-type]
    )
    original = model._async_client

    async def bind_and_close() -> tuple[Any, Any]:
        run_model, close = bind_anthropic(model)
        client = run_model._async_client  # type: ignore[attr-defined]
        assert close is not None
        await close()
        return client, client._client.is_closed

    client, closed = asyncio.run(bind_and_close())
    assert type(client) is type(original) and client is not original
    assert client._client is not original._client and closed
    assert not original._client.is_closed


@pytest.mark.parametrize(
    ("model_class", "binder", "problem"),
    [
        ("ToyChatModel", 42, r"binder must be a callable"),
        (int, bind_toy, r"model_class must be a chat model class"),
        ("instance", bind_toy, r"model_class must be a chat model class"),
    ],
)
def test_register_model_binder_refuses_wrong_types(
    model_class: Any, binder: Any, problem: str
) -> None:
    if model_class == "ToyChatModel":
        model_class = ToyChatModel
    elif model_class == "instance":
        model_class = ToyChatModel(base_url="http://127.0.0.1:9")
    with pytest.raises(TypeError, match=problem):
        register_model_binder(model_class, binder)


def test_a_binder_returning_the_wrong_shape_fails_the_run_saying_so(
    server: ProviderServer, runtime5: SubagentRuntime
) -> None:
    register_model_binder(ToyChatModel, lambda model: model)  # type: ignore[arg-type,return-value]
    try:
        executor = SubagentExecutor(
            SubagentConfig(name="toy", model=ToyChatModel(base_url=server.base_url)),
            runtime=runtime5,
        )
        holder = executor.execute("q", timeout=30)
    finally:
        register_model_binder(ToyChatModel, None)
    assert holder.status is SubagentStatus.FAILED
    assert (holder.error or "").startswith("TypeError: model binder ")
    assert "<lambda> must return (model, async close or None), got ToyChatModel" in (
        holder.error or ""
    )


# -- explain_loop_binding_error, as a pure function ----------------------------------------


def _raised(make: Callable[[], BaseException]) -> BaseException:
    try:
        raise make()
    except BaseException as exc:
        return exc


class _ProviderConnectionError(Exception):
    pass


def _connection_error_caused_by(text: str) -> BaseException:
    try:
        try:
            raise RuntimeError(text)
        except RuntimeError as inner:
            raise _ProviderConnectionError("Connection error.") from inner
    except _ProviderConnectionError as outer:
        return outer


def test_explain_finds_the_loop_error_as_a_cause_and_names_the_model() -> None:
    model = ToyChatModel(base_url="http://127.0.0.1:9")

    async def call() -> None:
        await model.ainvoke("x")

    def run_twice() -> BaseException:
        shared = httpx.AsyncClient()
        ToyChatModel._shared["http://127.0.0.1:9"] = shared

        async def fail_like_a_closed_loop(*a: Any, **k: Any) -> Any:
            raise _connection_error_caused_by("Event loop is closed")

        shared.post = fail_like_a_closed_loop  # type: ignore[method-assign]
        try:
            asyncio.run(call())
        except BaseException as exc:
            return exc
        finally:
            ToyChatModel._shared.pop("http://127.0.0.1:9", None)
        raise AssertionError("expected a failure")

    error = explain_loop_binding_error(run_twice())
    assert isinstance(error, ModelBindingError)
    text = str(error)
    assert text.startswith(
        "ToyChatModel made a call with an HTTP client bound to another event loop "
        "(_ProviderConnectionError: Connection error., caused by RuntimeError: Event loop is "
        "closed)"
    ), text
    assert "register_model_binder(ToyChatModel, binder)" in text
    assert isinstance(error.__cause__, _ProviderConnectionError)


@pytest.mark.parametrize(
    "text",
    [
        "Event loop is closed",
        "Task <Task pending> got Future <Future pending> attached to a different loop",
        "<asyncio.locks.Event object> is bound to a different event loop",
    ],
)
def test_explain_recognises_each_loop_binding_text(text: str) -> None:
    error = explain_loop_binding_error(_connection_error_caused_by(text))
    assert isinstance(error, ModelBindingError)
    assert str(error).startswith("the chat model made a call with an HTTP client bound")
    assert "register_model_binder(YourChatModel, binder)" in str(error)


def test_explain_leaves_other_errors_alone() -> None:
    assert explain_loop_binding_error(_connection_error_caused_by("connection refused")) is None
    assert explain_loop_binding_error(_raised(lambda: ValueError("bad input"))) is None
    already = ModelBindingError("Event loop is closed somewhere")
    assert explain_loop_binding_error(already) is None


def test_explain_with_a_registered_binder_points_at_the_factory(toy_binder: None) -> None:
    model = ToyChatModel(base_url="http://127.0.0.1:9")

    def failing(self: Any) -> None:
        raise _connection_error_caused_by("Event loop is closed")

    try:
        failing(model)
    except BaseException as exc:
        error = explain_loop_binding_error(exc)
    assert error is not None
    assert "A binder is registered for ToyChatModel" in str(error)
    assert "Build the model (and any client it holds) inside the factory" in str(error)


def test_groq_instance_with_its_own_async_client_is_refused_and_a_factory_is_trusted(
    server: ProviderServer, runtime5: SubagentRuntime
) -> None:
    """ChatGroq takes http_async_client like the OpenAI family; the same rule applies."""
    from langchain_groq import ChatGroq

    def groq(**options: Any) -> ChatGroq:
        return ChatGroq(base_url=server.root_url, api_key="test", model="g", **options)  # type: ignore[arg-type]

    with pytest.raises(ModelBindingError, match=r"model=lambda: ChatGroq\(\.\.\., http_async"):
        SubagentExecutor(
            SubagentConfig(name="g", model=groq(http_async_client=httpx.AsyncClient())),
            runtime=runtime5,
        )
    factory = SubagentExecutor(
        SubagentConfig(name="g", model=lambda: groq(http_async_client=httpx.AsyncClient())),
        runtime=runtime5,
    )
    for i in range(3):
        holder = factory.execute(f"q{i}", timeout=30)
        assert holder.status is SubagentStatus.COMPLETED, holder.error
        assert holder.result == f"echo: q{i}"
