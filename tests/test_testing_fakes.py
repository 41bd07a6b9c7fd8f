"""Tests for subagent_exec.testing.ScriptedChatModel (offline, fast)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.tools import tool

from subagent_exec.testing import ScriptedCall, ScriptedChatModel, tool_call, tool_calls


@tool
def get_weather(city: str) -> str:
    """Return the weather for a city."""
    return f"sunny in {city}"


def _weather_model(**kwargs: Any) -> ScriptedChatModel:
    return ScriptedChatModel(
        script={
            "Paris": [tool_call("get_weather", {"city": "Paris"}), "Paris is sunny."],
            "Rome": [
                tool_calls(("get_weather", {"city": "Rome"}), ("get_weather", {"city": "Milan"})),
                "Rome and Milan are sunny.",
            ],
        },
        **kwargs,
    )


# ---------------------------------------------------------------- routing and turns


def test_routes_by_first_human_message() -> None:
    model = ScriptedChatModel(script={"alpha": "A reply", "beta": "B reply"})
    assert model.invoke("please do beta").content == "B reply"
    assert model.invoke("alpha first").content == "A reply"
    # only the FIRST human message is the task
    msgs: list[BaseMessage] = [
        SystemMessage("you are alpha"),
        HumanMessage("beta task"),
        AIMessage("ok"),
        HumanMessage("now alpha"),
    ]
    assert model.invoke(msgs).content == "B reply"


def test_first_matching_key_in_insertion_order_wins() -> None:
    model = ScriptedChatModel(script={"report": "generic", "weekly report": "specific"})
    assert model.invoke("weekly report please").content == "generic"


def test_turn_index_is_number_of_ai_messages_and_last_reply_repeats() -> None:
    model = ScriptedChatModel(script={"task": ["zero", "one", "two"]})
    history: list[BaseMessage] = [HumanMessage("the task")]
    seen = []
    for _ in range(5):
        reply = model.invoke(history)
        seen.append(reply.content)
        history += [reply, HumanMessage("go on")]
    assert seen == ["zero", "one", "two", "two", "two"]
    assert [c.turn for c in model.calls] == [0, 1, 2, 3, 4]
    assert {c.key for c in model.calls} == {"task"}


def test_callable_reply_router_and_default() -> None:
    model = ScriptedChatModel(
        script={"count": lambda msgs: f"{len(msgs)} messages"},
        router=lambda msgs: "routed" if "route" in str(msgs[-1].content) else "other",
        default="unused",
    )
    assert model.invoke("count these").content == "1 messages"
    assert model.invoke("route me").content == "routed"
    assert model.invoke("anything").content == "other"

    with_default = ScriptedChatModel(script={"x": "y"}, default="fallback")
    assert with_default.invoke("no match").content == "fallback"
    assert with_default.calls[-1].key is None


def test_unmatched_without_default_raises_value_error_naming_task() -> None:
    model = ScriptedChatModel(script={"known": "k"})
    with pytest.raises(ValueError, match="mystery task"):
        model.invoke("a mystery task")
    with pytest.raises(ValueError, match="mystery task"):
        asyncio.run(model.ainvoke("a mystery task"))


def test_invalid_script_rejected() -> None:
    with pytest.raises(ValueError, match="no replies"):
        ScriptedChatModel(script={"k": []})
    with pytest.raises(ValueError, match="a reply must be"):
        ScriptedChatModel(script={"k": [42]})  # type: ignore[list-item]
    with pytest.raises(ValueError, match="sequence of replies"):
        ScriptedChatModel(script={"k": 42})  # type: ignore[dict-item]


def test_unique_ids_and_scripted_messages_are_copied() -> None:
    scripted = tool_call("get_weather", {"city": "Paris"})
    fixed = AIMessage("fixed", id="my-id")
    model = ScriptedChatModel(script={"a": [scripted], "b": [fixed], "c": ["text"]})
    r1, r2 = model.invoke("a"), model.invoke("a")
    assert r1 is not scripted and r1.id and r2.id and r1.id != r2.id
    # tool calls without an id get a fresh id per reply; the script itself is untouched
    assert r1.tool_calls[0]["id"] and r1.tool_calls[0]["id"] != r2.tool_calls[0]["id"]
    assert scripted.tool_calls[0]["id"] is None and scripted.id is None
    r1.tool_calls[0]["args"]["city"] = "mutated"
    assert scripted.tool_calls[0]["args"] == {"city": "Paris"}
    assert model.invoke("b").id == "my-id"
    t1, t2 = model.invoke("c"), model.invoke("c")
    assert t1.id != t2.id


def test_tool_call_helpers() -> None:
    one = tool_call("search", {"q": "x"}, id="call_1")
    assert one.content == ""
    assert one.tool_calls == [
        {"name": "search", "args": {"q": "x"}, "id": "call_1", "type": "tool_call"}
    ]
    many = tool_calls(("a", {"i": 1}), ("b", {"i": 2}))
    assert [tc["name"] for tc in many.tool_calls] == ["a", "b"]
    with pytest.raises(ValueError):
        tool_calls()


def test_call_log_records_text_time_and_thread() -> None:
    model = ScriptedChatModel(default="ok")
    before = time.time()
    model.invoke([SystemMessage("sys"), HumanMessage("hello")])
    call = model.calls[0]
    assert isinstance(call, ScriptedCall)
    assert call.messages == (("system", "sys"), ("human", "hello"))
    assert call.texts == ("sys", "hello")
    assert call.task == "hello" and call.turn == 0 and not call.streamed
    assert before <= call.timestamp <= time.time()
    assert call.thread_name == threading.current_thread().name
    assert model.call_count == 1
    model.reset_calls()
    assert model.call_count == 0


# ---------------------------------------------------------------- latency and cancellation


def test_async_latency_is_really_awaited_concurrently() -> None:
    model = ScriptedChatModel(default="ok", latency=0.1)

    async def main() -> float:
        start = time.monotonic()
        await asyncio.gather(*(model.ainvoke(f"task {i}") for i in range(10)))
        return time.monotonic() - start

    elapsed = asyncio.run(main())
    assert 0.09 <= elapsed < 0.5  # ten 0.1 s calls overlap on one loop
    assert model.call_count == 10


def test_async_latency_is_cancellable_at_once() -> None:
    model = ScriptedChatModel(default="ok", latency=2.0)

    async def main() -> float:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(model.ainvoke("slow"), 0.05)
        return time.monotonic() - start

    assert asyncio.run(main()) < 0.3


def test_stream_is_cancellable_mid_stream() -> None:
    model = ScriptedChatModel(default="one two three four five six seven eight", latency=1.6)
    received: list[str] = []

    async def consume() -> None:
        async for chunk in model.astream("go"):
            received.append(str(chunk.content))

    async def main() -> float:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(consume(), 0.3)  # 0.2 s per chunk
        return time.monotonic() - start

    elapsed = asyncio.run(main())
    assert elapsed < 0.6
    assert received[:1] == ["one "]
    assert len(received) < 8


def test_latency_by_key_and_sync_latency() -> None:
    model = ScriptedChatModel(
        script={"fast": "f", "slow": "s"}, latency=0.0, latency_by_key={"slow": 0.1}
    )
    start = time.monotonic()
    model.invoke("fast")
    assert time.monotonic() - start < 0.05
    start = time.monotonic()
    model.invoke("slow")
    assert time.monotonic() - start >= 0.09


# ---------------------------------------------------------------- streaming


def test_astream_word_chunks_with_latency_split() -> None:
    model = ScriptedChatModel(default="the quick brown fox", latency=0.2)

    async def main() -> list[tuple[float, AIMessageChunk]]:
        start = time.monotonic()
        return [(time.monotonic() - start, c) async for c in model.astream("x")]

    timed = asyncio.run(main())
    chunks = [c for _, c in timed]
    assert [c.content for c in chunks] == ["the ", "quick ", "brown ", "fox"]
    assert len({c.id for c in chunks}) == 1
    assert chunks[-1].chunk_position == "last"
    # the latency is spread: roughly 0.05 s between chunks
    assert 0.03 <= timed[0][0] < 0.18
    assert timed[-1][0] >= 0.18
    assert model.calls[0].streamed


def test_stream_tool_calls_in_final_chunk() -> None:
    model = ScriptedChatModel(
        script={"x": [tool_calls(("a", {"i": 1}), ("b", {"i": 2}))]}, latency=0.01
    )
    chunks = list(model.stream("x"))
    assert chunks[-1].tool_call_chunks
    assert all(not c.tool_call_chunks for c in chunks[:-1])
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert [(tc["name"], tc["args"]) for tc in merged.tool_calls] == [
        ("a", {"i": 1}),
        ("b", {"i": 2}),
    ]
    assert all(tc["id"] for tc in merged.tool_calls)


def test_text_with_tool_call_streams_text_then_tool_call() -> None:
    reply = AIMessage(
        "let me check",
        tool_calls=[{"name": "t", "args": {}, "id": "c1", "type": "tool_call"}],
    )
    model = ScriptedChatModel(default="unused", script={"q": [reply]})
    chunks = list(model.stream("q"))
    assert [c.content for c in chunks] == ["let ", "me ", "check"]
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert merged.content == "let me check"
    assert merged.tool_calls[0]["id"] == "c1"


def test_astream_events_emit_stream_events() -> None:
    model = ScriptedChatModel(default="a b c", latency=0.01)

    async def main() -> list[dict[str, Any]]:
        return [dict(e) async for e in model.astream_events("hi", version="v2")]

    events = asyncio.run(main())
    streamed = [e["data"]["chunk"].content for e in events if e["event"] == "on_chat_model_stream"]
    assert "".join(streamed) == "a b c"
    assert events[-1]["event"] == "on_chat_model_end"


# ---------------------------------------------------------------- create_agent + parallelism


def test_bind_tools_returns_self() -> None:
    model = ScriptedChatModel(default="x")
    assert model.bind_tools([get_weather]) is model
    assert model._llm_type == "scripted-fake"


def test_create_agent_sync_invoke() -> None:
    agent = create_agent(_weather_model(), tools=[get_weather])
    out = agent.invoke({"messages": [("user", "weather in Paris?")]})
    messages = out["messages"]
    assert isinstance(messages[2], ToolMessage) and messages[2].content == "sunny in Paris"
    assert messages[-1].content == "Paris is sunny."


def test_create_agent_parallel_threads_each_get_own_replies() -> None:
    model = _weather_model(latency=0.1)
    agent = create_agent(model, tools=[get_weather])
    results: dict[tuple[str, str, int], list[BaseMessage]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def run(city: str, mode: str, n: int) -> None:
        async def main() -> list[BaseMessage]:
            request = {"messages": [("user", f"What is the weather in {city}?")]}
            barrier.wait()
            if mode == "invoke":
                out = await agent.ainvoke(request)
                return list(out["messages"])
            last: dict[str, Any] = {}
            async for state in agent.astream(request, stream_mode="values"):
                last = state
            return list(last["messages"])

        try:
            results[(city, mode, n)] = asyncio.run(main())
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(city, mode, n), name=f"{city}-{mode}-{n}")
        for city in ("Paris", "Rome")
        for mode in ("invoke", "stream")
        for n in range(2)
    ]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    elapsed = time.monotonic() - start

    assert not errors
    assert len(results) == 8
    for (city, _, _), messages in results.items():
        if city == "Paris":
            assert [m.type for m in messages] == ["human", "ai", "tool", "ai"]
            assert messages[-1].content == "Paris is sunny."
        else:
            assert [m.type for m in messages] == ["human", "ai", "tool", "tool", "ai"]
            assert {m.content for m in messages[2:4]} == {"sunny in Rome", "sunny in Milan"}
            assert messages[-1].content == "Rome and Milan are sunny."
    ai_ids = [m.id for msgs in results.values() for m in msgs if isinstance(m, AIMessage)]
    assert len(ai_ids) == len(set(ai_ids))
    assert model.call_count == 16
    assert len({c.thread_name for c in model.calls}) == 8
    assert elapsed < 1.2  # 8 agents x 2 turns x 0.1 s ran in parallel, not in series (1.6 s)


def test_create_agent_messages_stream_uses_streaming_path() -> None:
    model = _weather_model(latency=0.02)
    agent = create_agent(model, tools=[get_weather])

    async def main() -> list[str]:
        tokens: list[str] = []
        async for chunk, _meta in agent.astream(
            {"messages": [("user", "weather in Paris")]}, stream_mode="messages"
        ):
            if isinstance(chunk, AIMessageChunk) and isinstance(chunk.content, str):
                tokens.append(chunk.content)
        return tokens

    tokens = asyncio.run(main())
    assert "".join(tokens) == "Paris is sunny."
    assert all(c.streamed for c in model.calls)


def test_a_scripted_model_pickles_and_copies_with_its_own_lock_and_log() -> None:
    """The Ray backend sends configs to other processes by pickle."""
    import copy
    import pickle

    model = ScriptedChatModel(script={"hi": ["hello"]}, latency=0.0)
    model.invoke("hi there")
    for clone in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        assert clone.invoke("hi again").content == "hello"
        assert clone.call_count == 1  # its own log, starting empty
    assert model.call_count == 1
