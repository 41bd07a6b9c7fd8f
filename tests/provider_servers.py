"""Local fakes of several chat providers' HTTP APIs, for offline tests (stdlib only).

:class:`ProviderServer` is the OpenAI-compatible server of ``openai_compat_server.py``
that also speaks the wire formats the real client packages send:

* **Anthropic Messages API** (``langchain-anthropic``): ``POST /v1/messages``, a JSON
  ``message`` or, with ``"stream": true``, server-sent events (``message_start``,
  ``content_block_start``, ``ping``, one ``content_block_delta`` per word,
  ``content_block_stop``, ``message_delta``, ``message_stop``). Point the client at it with
  ``ChatAnthropic(base_url=srv.root_url, api_key="test", ...)``.
* **Ollama** (``langchain-ollama``): ``POST /api/chat``, one JSON object or, streamed,
  newline-delimited JSON (one line per word, then a ``"done": true`` line).
  ``ChatOllama(base_url=srv.root_url, ...)``.
* **Groq** (``langchain-groq``): the OpenAI chat-completions format at
  ``/openai/v1/chat/completions``. ``ChatGroq(base_url=srv.root_url, api_key="test", ...)``.
* **Mistral** (``langchain-mistralai``) and everything OpenAI-like: ``/v1/chat/completions``
  (Azure's ``/openai/deployments/<d>/chat/completions`` is answered, and counted, the same).
  ``ChatMistralAI(endpoint=srv.base_url, api_key="test", ...)``.
* **Gemini API** (``langchain-google-genai``): ``POST /v1[beta]/models/<m>:generateContent``
  (JSON) and ``:streamGenerateContent?alt=sse`` (server-sent events, one candidate chunk per
  word). ``ChatGoogleGenerativeAI(base_url=srv.root_url, api_key="test", ...)``.
* **Bedrock Converse** (``langchain-aws``): ``POST /model/<id>/converse`` (JSON only).
  ``ChatBedrockConverse(endpoint_url=srv.root_url, region_name=..., ...)``.

Every format honours the server's ``delay`` / ``chunk_delay`` and the model-name switches
``delay-<s>`` / ``slow-<s>`` (see ``openai_compat_server.py``), so a reply can be made slow
enough to be cancelled in the middle. The reply is ``"echo: " + <last user text>``.
:meth:`ProviderServer.model_calls` counts the model-call requests per format, so a test can
tell that no request was retried.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any
from urllib.parse import unquote

from .openai_compat_server import (
    _DELAY_RE,
    _SLOW_RE,
    OpenAICompatServer,
    RecordedRequest,
    _count_tokens,
    _Handler,
    _message_text,
    _split_words,
)

__all__ = ["MODEL_CALL_PATHS", "ProviderServer"]

#: The path of a model call in each wire format.
MODEL_CALL_PATHS: dict[str, str] = {
    "anthropic": "/v1/messages",
    "ollama": "/api/chat",
    "groq": "/openai/v1/chat/completions",
    "openai": "/v1/chat/completions",
    "google": "/v1beta/models/<model>:generateContent",
    "bedrock": "/model/<id>/converse",
}

_GEMINI_RE = re.compile(r"^/v1(?:beta)?/models/([^/:]+):(generateContent|streamGenerateContent)$")
_AZURE_RE = re.compile(r"^/openai/deployments/[^/]+/chat/completions$")
_CONVERSE_RE = re.compile(r"^/model/([^/]+)/(converse|converse-stream)$")


class _ProviderHandler(_Handler):
    """Routes each provider's model-call path to its wire format."""

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == MODEL_CALL_PATHS["anthropic"]:
            self._reply(self._anthropic)
        elif path == MODEL_CALL_PATHS["ollama"]:
            self._reply(self._ollama)
        elif match := _GEMINI_RE.match(path):
            model, call = match.groups()
            self._reply(self._gemini, model=model, stream=call == "streamGenerateContent")
        elif match := _CONVERSE_RE.match(path):
            model, call = match.groups()
            self._reply(self._converse, model=unquote(model), stream=call == "converse-stream")
        elif path == MODEL_CALL_PATHS["groq"]:
            # Same wire format as OpenAI under another prefix.
            self.server.owner._groq_calls += 1  # type: ignore[attr-defined]
            self.path = MODEL_CALL_PATHS["openai"]
            super().do_POST()
        elif _AZURE_RE.match(path):  # AzureChatOpenAI: /openai/deployments/<d>/chat/completions
            self.path = MODEL_CALL_PATHS["openai"]
            super().do_POST()
        else:
            super().do_POST()

    # -- shared steps ---------------------------------------------------------------------

    def _reply(self, write: Any, *, model: str | None = None, stream: bool | None = None) -> None:
        owner = self.server.owner
        body = self._read_json()
        owner._record(RecordedRequest("POST", self.path, body))
        if body is not None and "contents" in body:  # Gemini: contents/parts
            body["messages"] = [
                {"role": c.get("role"), "content": c.get("parts")} for c in body["contents"]
            ]
        if body is None or not isinstance(body.get("messages"), list):
            self._send_error_json(400, "'messages' must be a list", "invalid_request_error")
            return
        if stream is not None:
            body["stream"] = stream
        model = model if model is not None else str(body.get("model") or "")
        delay, chunk_delay = owner.delay, owner.chunk_delay
        if match := _DELAY_RE.search(model):
            delay = float(match.group(1))
        if match := _SLOW_RE.search(model):
            chunk_delay = float(match.group(1))
        self._in_reply = True
        self._wait(delay)
        text = _echo_last_user(body)
        words = _split_words(text)
        prompt_tokens = sum(
            _count_tokens(_message_text(m)) for m in body["messages"] if isinstance(m, dict)
        )
        write(body, model, text, words, chunk_delay, prompt_tokens)
        self._in_reply = False

    def _start_stream(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # -- Anthropic Messages API -------------------------------------------------------------

    def _anthropic(
        self,
        body: dict[str, Any],
        model: str,
        text: str,
        words: list[str],
        chunk_delay: float,
        prompt_tokens: int,
    ) -> None:
        message_id = f"msg_{uuid.uuid4().hex[:24]}"
        if not body.get("stream"):
            for _ in words:
                self._wait(chunk_delay)
            self._send_json(
                200,
                {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [{"type": "text", "text": text}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": {"input_tokens": prompt_tokens, "output_tokens": len(words)},
                },
            )
            return

        def send(kind: str, payload: dict[str, Any]) -> None:
            data = json.dumps({"type": kind, **payload})
            self._write_chunk(f"event: {kind}\ndata: {data}\n\n".encode())

        self._start_stream("text/event-stream; charset=utf-8")
        send(
            "message_start",
            {
                "message": {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": prompt_tokens, "output_tokens": 1},
                }
            },
        )
        send("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
        send("ping", {})
        for word in words:
            self._wait(chunk_delay)
            send("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": word}})
        send("content_block_stop", {"index": 0})
        send(
            "message_delta",
            {
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": len(words)},
            },
        )
        send("message_stop", {})
        self._end_stream()

    # -- Ollama ---------------------------------------------------------------------------

    def _ollama(
        self,
        body: dict[str, Any],
        model: str,
        text: str,
        words: list[str],
        chunk_delay: float,
        prompt_tokens: int,
    ) -> None:
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        final = {
            "model": model,
            "created_at": created,
            "done": True,
            "done_reason": "stop",
            "total_duration": 1000,
            "load_duration": 10,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": 10,
            "eval_count": len(words),
            "eval_duration": 10,
        }
        if body.get("stream") is False:
            for _ in words:
                self._wait(chunk_delay)
            self._send_json(200, {**final, "message": {"role": "assistant", "content": text}})
            return
        self._start_stream("application/x-ndjson")
        for word in words:
            self._wait(chunk_delay)
            line = {
                "model": model,
                "created_at": created,
                "message": {"role": "assistant", "content": word},
                "done": False,
            }
            self._write_chunk(json.dumps(line).encode() + b"\n")
        line = {**final, "message": {"role": "assistant", "content": ""}}
        self._write_chunk(json.dumps(line).encode() + b"\n")
        self._end_stream()

    # -- Gemini API ---------------------------------------------------------------------

    def _gemini(
        self,
        body: dict[str, Any],
        model: str,
        text: str,
        words: list[str],
        chunk_delay: float,
        prompt_tokens: int,
    ) -> None:
        def chunk(part: str, finished: bool) -> dict[str, Any]:
            candidate: dict[str, Any] = {
                "content": {"role": "model", "parts": [{"text": part}]},
                "index": 0,
            }
            if finished:
                candidate["finishReason"] = "STOP"
            return {
                "candidates": [candidate],
                "usageMetadata": {
                    "promptTokenCount": prompt_tokens,
                    "candidatesTokenCount": len(words),
                    "totalTokenCount": prompt_tokens + len(words),
                },
                "modelVersion": model,
                "responseId": uuid.uuid4().hex[:16],
            }

        if not body.get("stream"):
            for _ in words:
                self._wait(chunk_delay)
            self._send_json(200, chunk(text, True))
            return
        self._start_stream("text/event-stream")
        for position, word in enumerate(words):
            self._wait(chunk_delay)
            payload = json.dumps(chunk(word, position == len(words) - 1))
            self._write_chunk(f"data: {payload}\r\n\r\n".encode())
        self._end_stream()

    # -- Bedrock Converse -----------------------------------------------------------------

    def _converse(
        self,
        body: dict[str, Any],
        model: str,
        text: str,
        words: list[str],
        chunk_delay: float,
        prompt_tokens: int,
    ) -> None:
        usage = {
            "inputTokens": prompt_tokens,
            "outputTokens": len(words),
            "totalTokens": prompt_tokens + len(words),
        }
        if not body.get("stream"):
            for _ in words:
                self._wait(chunk_delay)
            self._send_json(
                200,
                {
                    "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                    "stopReason": "end_turn",
                    "usage": usage,
                    "metrics": {"latencyMs": 1},
                },
            )
            return
        # converse-stream (the binary event-stream framing) is not faked: ChatBedrockConverse
        # does not stream on ainvoke, which is how a sub-agent calls its model.
        self._send_error_json(400, "converse-stream is not faked", "invalid_request_error")


def _echo_last_user(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return "echo: " + _message_text(message)
    return "echo: "


class ProviderServer(OpenAICompatServer):
    """:class:`OpenAICompatServer` plus the Anthropic, Ollama and Groq wire formats."""

    handler_class = _ProviderHandler
    _groq_calls = 0

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT``, the base URL for clients that add their own prefix."""
        return f"http://127.0.0.1:{self.port}"

    def model_calls(self, kind: str) -> int:
        """How many model-call requests of one wire format (a key of ``MODEL_CALL_PATHS``)
        arrived; a retried request counts twice."""
        if kind not in MODEL_CALL_PATHS:
            raise ValueError(f"kind must be one of {sorted(MODEL_CALL_PATHS)}, got {kind!r}")
        if kind == "groq":
            return self._groq_calls
        wanted = MODEL_CALL_PATHS[kind]
        if kind in ("google", "bedrock"):  # the model id is part of the path
            pattern = _GEMINI_RE if kind == "google" else _CONVERSE_RE
            return sum(
                1
                for r in self.requests
                if r.method == "POST" and pattern.match(r.path.split("?", 1)[0])
            )
        calls = sum(1 for r in self.requests if r.method == "POST" and r.path.rstrip("/") == wanted)
        return calls - self._groq_calls if kind == "openai" else calls
