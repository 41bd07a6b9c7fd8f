"""HTTP plumbing of the fake OpenAI-compatible server (stdlib ``http.server``).

One handler per connection, HTTP/1.1 keep-alive, streamed replies in chunked
transfer encoding. Waits notice at once a client that hung up and a server
that shuts down, so a test never waits for a reply nobody reads. What to
answer is decided by the server object (:mod:`._server`); this module only
speaks HTTP and the OpenAI JSON shapes (:mod:`._wire`).
"""

from __future__ import annotations

import json
import re
import select
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from langchain_core.messages import AIMessage

from ._wire import completion_message, finish_reason, message_text, stream_deltas

CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)
_NUMBER = r"(\d+(?:\.\d+)?)"
_SLOW_RE = re.compile(rf"(?:^|[^a-z])slow-{_NUMBER}", re.IGNORECASE)
_DELAY_RE = re.compile(rf"(?:^|[^a-z])delay-{_NUMBER}", re.IGNORECASE)
_ERROR_RE = re.compile(r"(?:^|[^a-z])error-(\d{3})", re.IGNORECASE)


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request received by the server."""

    method: str
    path: str
    body: dict[str, Any] | None
    timestamp: float = field(default_factory=time.time)


class ServerStopped(Exception):
    """Raised inside a handler when the server shuts down during a wait."""


class BadRequest(Exception):
    """The request cannot be answered; the message goes back with HTTP 400."""


class Owner(Protocol):
    """What the handler needs of the server object (``OpenAICompatServer``)."""

    delay: float
    chunk_delay: float
    models: tuple[str, ...]
    _stopping: threading.Event

    def _answer(self, body: dict[str, Any]) -> tuple[AIMessage, float]: ...
    def _record(self, request: RecordedRequest) -> None: ...
    def _connection_opened(self, sock: socket.socket) -> None: ...
    def _connection_closed(self, sock: socket.socket) -> None: ...
    def _client_disconnected(self) -> None: ...


def _count_tokens(text: str) -> int:
    return len(text.split())


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HTTPServer
    _in_reply = False  # a chat completion is being produced on this connection

    # ----------------------------------------------------------------- plumbing

    def setup(self) -> None:
        super().setup()
        self.server.owner._connection_opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except CLIENT_GONE:
            pass
        finally:
            self.server.owner._connection_closed(self.connection)

    def handle(self) -> None:
        try:
            super().handle()
        except CLIENT_GONE:
            self.close_connection = True
            if self._in_reply:
                self.server.owner._client_disconnected()
        except ServerStopped:
            self.close_connection = True

    def _wait(self, seconds: float) -> None:
        """Sleep ``seconds``, noticing at once a client hang-up or a server shutdown."""
        owner = self.server.owner
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            if owner._stopping.is_set():
                raise ServerStopped
            step = min(remaining, 0.05)
            readable, _, _ = select.select([self.connection], [], [], step)
            if owner._stopping.is_set():
                raise ServerStopped
            if readable:
                try:
                    peeked = self.connection.recv(1, socket.MSG_PEEK)
                except OSError as exc:
                    raise ConnectionResetError("client connection failed") from exc
                if not peeked:
                    raise ConnectionResetError("client closed the connection")
                owner._stopping.wait(step)  # pipelined bytes: nothing to learn, just sleep

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log."""

    def _send_json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _send_error_json(self, status: int, message: str, kind: str) -> None:
        self._send_json(
            status,
            {"error": {"message": message, "type": kind, "param": None, "code": None}},
        )

    def _read_json(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _write_chunk(self, data: bytes) -> None:
        """Write one HTTP/1.1 chunked-transfer-encoding chunk."""
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    # ----------------------------------------------------------------- routes

    def do_GET(self) -> None:
        owner = self.server.owner
        owner._record(RecordedRequest("GET", self.path, None))
        if self.path.rstrip("/") == "/v1/models":
            self._send_json(
                200,
                {
                    "object": "list",
                    "data": [
                        {
                            "id": name,
                            "object": "model",
                            "created": 0,
                            "owned_by": "openai-compat-server",
                        }
                        for name in owner.models
                    ],
                },
            )
        else:
            self._send_error_json(404, f"unknown path {self.path}", "invalid_request_error")

    def do_POST(self) -> None:
        owner = self.server.owner
        body = self._read_json()
        owner._record(RecordedRequest("POST", self.path, body))
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send_error_json(404, f"unknown path {self.path}", "invalid_request_error")
            return
        if body is None:
            self._send_error_json(400, "request body is not a JSON object", "invalid_request_error")
            return
        if not isinstance(body.get("messages"), list):
            self._send_error_json(400, "'messages' must be a list", "invalid_request_error")
            return

        model = str(body.get("model") or "")
        delay, chunk_delay = owner.delay, owner.chunk_delay
        if match := _DELAY_RE.search(model):
            delay = float(match.group(1))
        if match := _SLOW_RE.search(model):
            chunk_delay = float(match.group(1))

        self._in_reply = True
        self._wait(delay)
        if match := _ERROR_RE.search(model):
            status = int(match.group(1))
            self._send_error_json(status, f"requested error {status}", "server_error")
            self._in_reply = False
            return
        try:
            reply, latency = owner._answer(body)
        except BadRequest as exc:
            self._send_error_json(400, str(exc), "invalid_request_error")
            self._in_reply = False
            return
        self._wait(latency)

        deltas = stream_deltas(reply)
        prompt_tokens = sum(
            _count_tokens(message_text(m)) for m in body["messages"] if isinstance(m, dict)
        )
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(deltas),
            "total_tokens": prompt_tokens + len(deltas),
        }
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())

        if body.get("stream"):
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
            self._stream(completion_id, created, model, reply, chunk_delay, usage, include_usage)
            self._in_reply = False
            return

        for _ in deltas:
            self._wait(chunk_delay)
        self._send_json(
            200,
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "system_fingerprint": None,
                "choices": [
                    {
                        "index": 0,
                        "message": completion_message(reply),
                        "logprobs": None,
                        "finish_reason": finish_reason(reply),
                    }
                ],
                "usage": usage,
            },
        )
        self._in_reply = False

    def _stream(
        self,
        completion_id: str,
        created: int,
        model: str,
        reply: AIMessage,
        chunk_delay: float,
        usage: dict[str, int],
        include_usage: bool,
    ) -> None:
        def event(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
            payload: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": None,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if include_usage:
                payload["usage"] = None
            return payload

        def send(payload: dict[str, Any] | str) -> None:
            data = payload if isinstance(payload, str) else json.dumps(payload)
            self._write_chunk(f"data: {data}\n\n".encode())

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        send(event({"role": "assistant", "content": "", "refusal": None}, None))
        for delta in stream_deltas(reply):
            self._wait(chunk_delay)
            send(event(delta, None))
        send(event({}, finish_reason(reply)))
        if include_usage:
            send(
                {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "system_fingerprint": None,
                    "choices": [],
                    "usage": usage,
                }
            )
        # "[DONE]" and the terminating zero-length chunk in one write, so a client that stops
        # reading at "[DONE]" still finds the response complete and can reuse the connection.
        done = b"data: [DONE]\n\n"
        self.wfile.write(f"{len(done):x}\r\n".encode() + done + b"\r\n0\r\n\r\n")
        self.wfile.flush()


class HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: Owner

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Drop connection errors quietly; report anything else as usual."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (*CLIENT_GONE, ServerStopped)):
            return
        super().handle_error(request, client_address)
