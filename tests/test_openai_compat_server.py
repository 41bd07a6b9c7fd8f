"""Tests for the OpenAI-compatible test server, driven by the real ChatOpenAI client."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
import urllib.request
from typing import Any

import openai
import pytest
from langchain_core.messages import AIMessageChunk
from langchain_openai import ChatOpenAI

from subagent_exec.testing import OpenAICompatServer


def _llm(srv: OpenAICompatServer, model: str = "x", **kwargs: Any) -> ChatOpenAI:
    # ChatOpenAI caches its default async HTTP client per (base_url, timeout) for the whole
    # process, and that client's pooled connections belong to the event loop that opened them:
    # a later asyncio.run() (or another thread's loop) reusing it fails with "Event loop is
    # closed" / "bound to a different event loop". An unhashable Timeout bypasses that cache,
    # so every ChatOpenAI built here gets its own client.
    kwargs.setdefault("timeout", openai.Timeout(10.0))
    return ChatOpenAI(base_url=srv.base_url, api_key="test", model=model, max_retries=0, **kwargs)


def _wait_until(predicate: Any, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


def _merge(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    return merged


@pytest.fixture
def srv() -> Any:
    with OpenAICompatServer() as server:
        yield server


def test_base_url_and_context_manager() -> None:
    with OpenAICompatServer() as server:
        assert server.base_url.startswith("http://127.0.0.1:")
        assert server.base_url.endswith("/v1")
        port = server.port
        assert port > 0
    with pytest.raises(RuntimeError):
        _ = server.base_url
    server.shutdown()  # idempotent


def test_invoke_echoes_last_user_message_with_usage(srv: OpenAICompatServer) -> None:
    reply = _llm(srv).invoke([("system", "be nice"), ("user", "first"), ("user", "hello world")])
    assert reply.content == "echo: hello world"
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["output_tokens"] == 3
    assert reply.usage_metadata["input_tokens"] == 5
    assert reply.response_metadata["finish_reason"] == "stop"
    assert srv.request_count == 1
    assert srv.chat_requests[0]["model"] == "x"


def test_ainvoke(srv: OpenAICompatServer) -> None:
    reply = asyncio.run(_llm(srv).ainvoke("hi async"))
    assert reply.content == "echo: hi async"


def test_astream_chunks_and_usage(srv: OpenAICompatServer) -> None:
    async def collect(**kwargs: Any) -> list[AIMessageChunk]:
        return [c async for c in _llm(srv).astream("stream me please", **kwargs)]

    chunks = asyncio.run(collect())
    texts = [c.content for c in chunks if c.content]
    assert texts == ["echo: ", "stream ", "me ", "please"]
    assert _merge(chunks).content == "echo: stream me please"

    with_usage = _merge(asyncio.run(collect(stream_usage=True)))
    assert with_usage.usage_metadata is not None
    assert with_usage.usage_metadata["output_tokens"] == 4
    assert srv.chat_requests[-1]["stream_options"] == {"include_usage": True}


def test_sync_stream(srv: OpenAICompatServer) -> None:
    chunks = list(_llm(srv).stream("sync stream"))
    assert _merge(chunks).content == "echo: sync stream"


def test_raw_sse_format_and_keep_alive(srv: OpenAICompatServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "a b"}]}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    conn.request("POST", "/v1/chat/completions", json.dumps(body))
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("Content-Type", "").startswith("text/event-stream")
    raw = resp.read().decode()
    events = [line[len("data: ") :] for line in raw.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    payloads = [json.loads(e) for e in events[:-1]]
    assert all(p["object"] == "chat.completion.chunk" for p in payloads)
    assert payloads[0]["choices"][0]["delta"]["role"] == "assistant"
    content = "".join(
        p["choices"][0]["delta"].get("content") or "" for p in payloads if p["choices"]
    )
    assert content == "echo: a b"
    assert payloads[-2]["choices"][0]["finish_reason"] == "stop"
    assert payloads[-1]["choices"] == [] and payloads[-1]["usage"]["completion_tokens"] == 3

    # same connection again, non-streamed: HTTP/1.1 keep-alive works after a stream
    conn.request("POST", "/v1/chat/completions", json.dumps({"model": "m", "messages": []}))
    resp = conn.getresponse()
    data = json.loads(resp.read())
    assert data["object"] == "chat.completion"
    assert data["choices"][0]["message"] == {
        "role": "assistant",
        "content": "echo: ",
        "refusal": None,
    }
    assert data["usage"]["total_tokens"] == data["usage"]["prompt_tokens"] + 1
    assert srv.total_connections == 1
    assert srv.open_connections == 1
    conn.close()
    assert _wait_until(lambda: srv.open_connections == 0)


def test_models_endpoint_and_errors(srv: OpenAICompatServer) -> None:
    with urllib.request.urlopen(srv.base_url + "/models", timeout=5) as resp:
        listing = json.load(resp)
    assert listing["object"] == "list" and listing["data"][0]["id"] == "echo"

    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    conn.request("POST", "/v1/chat/completions", b"not json")
    resp = conn.getresponse()
    assert resp.status == 400 and "error" in json.loads(resp.read())
    conn.request("GET", "/v1/nope")
    resp = conn.getresponse()
    assert resp.status == 404
    resp.read()
    conn.close()

    with pytest.raises(openai.InternalServerError):
        _llm(srv, model="error-500").invoke("boom")


def test_custom_reply_function() -> None:
    with OpenAICompatServer(reply=lambda body: f"model={body['model']}") as server:
        assert _llm(server, model="abc").invoke("x").content == "model=abc"


def test_server_delay() -> None:
    with OpenAICompatServer(delay=0.3) as server:
        start = time.monotonic()
        assert _llm(server).invoke("x").content == "echo: x"
        assert time.monotonic() - start >= 0.28


def test_slow_model_name_only_slows_that_request(srv: OpenAICompatServer) -> None:
    durations: dict[str, float] = {}

    async def timed(model: str) -> None:
        start = time.monotonic()
        chunks = [c async for c in _llm(srv, model=model).astream("one two")]
        assert _merge(chunks).content == "echo: one two"
        durations[model] = time.monotonic() - start

    async def main() -> None:
        await asyncio.gather(timed("slow-0.3"), timed("fast"))

    asyncio.run(main())
    assert durations["slow-0.3"] >= 0.85  # 3 words x 0.3 s
    # Generous under load: the fast request did not wait for the slow one.
    assert durations["fast"] < durations["slow-0.3"] - 0.4


def test_client_disconnect_mid_stream_is_quiet(
    srv: OpenAICompatServer, capfd: pytest.CaptureFixture[str]
) -> None:
    received: list[str] = []

    async def consume() -> None:
        async for chunk in _llm(srv, model="slow-0.5").astream("a b c d e f"):
            if chunk.content:
                received.append(str(chunk.content))

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(consume(), 0.75)

    asyncio.run(main())
    assert received in ([], ["echo: "])  # hung up mid-reply (the 2nd chunk is due at 1.0 s)
    # the server notices the hang-up while waiting, without writing first
    assert _wait_until(lambda: srv.disconnects == 1, timeout=1.0)
    assert _wait_until(lambda: srv.open_connections == 0, timeout=1.0)
    # and keeps serving
    assert _llm(srv).invoke("still alive").content == "echo: still alive"
    err = capfd.readouterr().err
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_shutdown_interrupts_in_flight_slow_request(capfd: pytest.CaptureFixture[str]) -> None:
    server = OpenAICompatServer(chunk_delay=5.0).start()
    errors: list[BaseException] = []

    def call() -> None:
        try:
            list(_llm(server).stream("slow"))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    assert _wait_until(lambda: server.request_count == 1)
    start = time.monotonic()
    server.shutdown()
    assert time.monotonic() - start < 1.0
    thread.join(timeout=2)
    assert not thread.is_alive()
    assert errors  # the client saw the connection end early
    assert "Traceback" not in capfd.readouterr().err


def test_threads_with_own_event_loops_and_per_loop_clients(srv: OpenAICompatServer) -> None:
    """Several threads, each with its own event loop, call the server at once.

    Each loop gives ChatOpenAI its own ``http_async_client`` (the supported way to use
    ChatOpenAI from several event loops; see ``_llm``).
    """
    errors: list[BaseException] = []
    replies: dict[int, list[str]] = {}
    barrier = threading.Barrier(6)

    def run(i: int) -> None:
        async def main() -> list[str]:
            async with openai.DefaultAsyncHttpxClient() as client:
                llm = ChatOpenAI(
                    base_url=srv.base_url,
                    api_key="test",
                    model="slow-0.02",
                    max_retries=0,
                    http_async_client=client,
                )
                barrier.wait()
                first = await llm.ainvoke(f"task {i}")
                chunks = [c async for c in llm.astream(f"again {i}")]
                return [str(first.content), str(_merge(chunks).content)]

        try:
            replies[i] = asyncio.run(main())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    assert not errors
    assert replies == {i: [f"echo: task {i}", f"echo: again {i}"] for i in range(6)}
    assert srv.request_count == 12
    assert srv.total_connections >= 6
