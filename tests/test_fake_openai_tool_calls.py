"""The fake OpenAI-compatible server answering with scripts: tool calls in the
OpenAI wire format, streamed and not, read by the real ChatOpenAI client; its
command line; and the quickstart delegating offline through it."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from subagent_exec.testing import OpenAICompatServer, ScriptedChatModel, tool_call, tool_calls
from subagent_exec.testing._cli import load_script

from .test_examples import load_example

ROOT = Path(__file__).resolve().parent.parent


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


@tool
def get_time(city: str) -> str:
    """The local time in a city."""
    return f"noon in {city}"


WEATHER = ScriptedChatModel(
    script={
        "weather": [tool_call("get_weather", {"city": "Paris"}), "It is sunny in Paris."],
        "both": [
            tool_calls(("get_weather", {"city": "Oslo"}), ("get_time", {"city": "Oslo"})),
            "Sunny, and noon.",
        ],
        "rogue": tool_call("delete_everything", {}),
    },
)


def _llm(server: OpenAICompatServer, model: str = "gpt-test", **kwargs: Any) -> ChatOpenAI:
    # A hashable timeout keeps langchain-openai's cached HTTP client: one per
    # server address (each test has its own server), used on one loop, never
    # garbage-collected mid-suite. A per-instance client (unhashable timeout)
    # would be, and openai's finaliser then schedules its close on whatever
    # loop runs at that moment: a stray "Task exception was never retrieved"
    # in some later test.
    return ChatOpenAI(
        base_url=server.base_url, api_key="test", model=model, max_retries=0, timeout=10.0, **kwargs
    )


@pytest.fixture
def server() -> Iterator[OpenAICompatServer]:
    with OpenAICompatServer(chat_model=WEATHER) as srv:
        yield srv


def test_a_scripted_tool_call_reaches_chatopenai_as_a_tool_call(
    server: OpenAICompatServer,
) -> None:
    reply = _llm(server).bind_tools([get_weather]).invoke("What's the weather in Paris?")
    assert reply.content == ""
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [
        ("get_weather", {"city": "Paris"})
    ]
    assert str(reply.tool_calls[0]["id"]).startswith("call_")
    assert reply.response_metadata["finish_reason"] == "tool_calls"
    # the request offered the tool in the OpenAI format
    offered = server.chat_requests[0]["tools"]
    assert offered[0]["function"]["name"] == "get_weather"


def test_streamed_parallel_tool_calls_merge_back_into_tool_calls(
    server: OpenAICompatServer,
) -> None:
    async def collect() -> list[AIMessageChunk]:
        llm = _llm(server).bind_tools([get_weather, get_time])
        return [c async for c in llm.astream("both things in Oslo")]

    chunks = asyncio.run(collect())
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert [(c["name"], c["args"]) for c in merged.tool_calls] == [
        ("get_weather", {"city": "Oslo"}),
        ("get_time", {"city": "Oslo"}),
    ]
    ids = [c["id"] for c in merged.tool_calls]
    assert len(set(ids)) == 2 and all(ids)
    assert merged.response_metadata["finish_reason"] == "tool_calls"


def test_a_real_chatopenai_agent_runs_the_tool_and_answers(server: OpenAICompatServer) -> None:
    agent = create_agent(_llm(server), tools=[get_weather])
    result = asyncio.run(agent.ainvoke({"messages": [("user", "weather in Paris please")]}))
    assert result["messages"][-1].text == "It is sunny in Paris."
    # turn 2 was chosen because the input held one assistant message, and it
    # carried the tool's real result back in the OpenAI format
    second = server.chat_requests[1]["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "tool"]
    assert second[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert second[2]["content"] == "sunny in Paris"


def test_raw_stream_sends_tool_calls_in_openai_chunks(server: OpenAICompatServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "weather?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}],
        "stream": True,
    }
    conn.request("POST", "/v1/chat/completions", json.dumps(body))
    raw = conn.getresponse().read().decode()
    conn.close()
    events = [line[len("data: ") :] for line in raw.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    deltas = [json.loads(e)["choices"][0] for e in events[:-1]]
    head, args = deltas[1]["delta"]["tool_calls"][0], deltas[2]["delta"]["tool_calls"][0]
    assert head["index"] == 0 and head["type"] == "function" and head["id"].startswith("call_")
    assert head["function"] == {"name": "get_weather", "arguments": ""}
    assert json.loads(args["function"]["arguments"]) == {"city": "Paris"}
    assert deltas[-1]["finish_reason"] == "tool_calls"


def test_non_streamed_tool_call_has_null_content(server: OpenAICompatServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "weather?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}],
    }
    conn.request("POST", "/v1/chat/completions", json.dumps(body))
    data = json.loads(conn.getresponse().read())
    conn.close()
    message = data["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"][0]["function"]["arguments"] == '{"city": "Paris"}'
    assert data["choices"][0]["finish_reason"] == "tool_calls"


def test_script_mistakes_come_back_as_400_saying_what_is_wrong(
    server: OpenAICompatServer,
) -> None:
    llm = _llm(server)
    with pytest.raises(openai.BadRequestError, match=r"delete_everything.*offers"):
        llm.bind_tools([get_weather]).invoke("rogue request")
    with pytest.raises(openai.BadRequestError, match="no reply for task 'unscripted'"):
        llm.invoke("unscripted")
    assert server.request_count == 2  # no retries for a 400


def test_chat_models_are_chosen_by_the_request_model_name() -> None:
    models = {
        "lead": ScriptedChatModel(default="from the lead model"),
        "*": ScriptedChatModel(default="from the fallback"),
    }
    with OpenAICompatServer(chat_model=models) as srv:
        assert _llm(srv, model="lead").invoke("x").content == "from the lead model"
        assert _llm(srv, model="other").invoke("x").content == "from the fallback"
    only = {"only": ScriptedChatModel(default="y")}
    with (
        OpenAICompatServer(chat_model=only) as srv,
        pytest.raises(openai.BadRequestError, match=r"no chat model for model name 'x'"),
    ):
        _llm(srv, model="x").invoke("hi")


def test_reply_function_may_return_tool_calls() -> None:
    def reply(body: dict[str, Any]) -> AIMessage:
        return tool_call("get_time", {"city": body["model"]})

    with OpenAICompatServer(reply=reply) as srv:
        answer = _llm(srv, model="Rome").bind_tools([get_time]).invoke("time?")
    assert answer.tool_calls[0]["args"] == {"city": "Rome"}


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(TypeError, match="chat_model must be a chat model"):
        OpenAICompatServer(chat_model="gpt")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="wrong entries"):
        OpenAICompatServer(chat_model={"a": "b"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="not both"):
        OpenAICompatServer(reply=lambda body: "x", chat_model=WEATHER)
    with pytest.raises(ValueError, match="delay must be a finite number >= 0"):
        OpenAICompatServer(delay=-1)
    with pytest.raises(TypeError, match="port must be an int"):
        OpenAICompatServer(port="80")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="port must be 0"):
        OpenAICompatServer(port=70000)


def test_json_scripts_load_into_a_scripted_model(tmp_path: Path) -> None:
    path = tmp_path / "script.json"
    path.write_text(
        json.dumps(
            {
                "script": {
                    "weather": [
                        {"tool_calls": [{"name": "get_weather", "args": {"city": "Lima"}}]},
                        "Warm.",
                    ]
                },
                "default": "Hello.",
            }
        )
    )
    model = load_script(str(path))
    with OpenAICompatServer(chat_model=model) as srv:
        agent = create_agent(_llm(srv), tools=[get_weather])
        result = agent.invoke({"messages": [("user", "weather in Lima")]})
        assert result["messages"][2].content == "sunny in Lima"
        assert result["messages"][-1].text == "Warm."
        assert _llm(srv).invoke("hi").content == "Hello."
    with pytest.raises(ValueError, match=r"use FILE\.py:NAME"):
        load_script("nothing-here")


def test_quickstart_delegates_through_the_real_chatopenai_in_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    quickstart = load_example("quickstart")
    with OpenAICompatServer(chat_model=quickstart.fake_openai_model()) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "test")
        assert quickstart.main(["--model", "openai:gpt-4o-mini"]) == 0
        requests = srv.chat_requests
    out = capsys.readouterr().out
    assert "task_completed  researcher" in out and "task_completed  writer" in out
    assert "Three facts:\n1. The Moon" in out and "borrowing the sun's old light." in out
    systems = {r["messages"][0]["content"].split(".")[0] for r in requests}
    assert systems == {
        "You answer by delegating research and writing to your sub-agents",
        "You are a careful researcher",
        "You are a concise writer",
    }
    # the lead offered the task tool, and its second turn carried both answers
    lead = [r for r in requests if r["messages"][0]["content"].startswith("You answer")]
    assert [t["function"]["name"] for t in lead[0]["tools"]] == ["task"]
    assert [m["role"] for m in lead[1]["messages"]][-2:] == ["tool", "tool"]


def test_module_cli_serves_the_quickstart_script_to_a_separate_quickstart_process() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "subagent_exec.testing",
            "--port",
            "0",
            "--script",
            "examples/quickstart.py:fake_openai_model",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        done = subprocess.run(
            [sys.executable, "examples/quickstart.py", "--model", "openai:gpt-4o-mini"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={**env, "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "test"},
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert done.returncode == 0, done.stderr
    assert "task_started    researcher" in done.stdout
    assert "task_completed  writer" in done.stdout
    assert "Three facts:" in done.stdout
    assert server.returncode == 0  # SIGTERM ends it cleanly
