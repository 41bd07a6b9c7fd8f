"""A tiny OpenAI-compatible HTTP server for offline tests (stdlib only).

Usage::

    with OpenAICompatServer() as srv:
        llm = ChatOpenAI(base_url=srv.base_url, api_key="test", model="x")
        llm.invoke("hello").content  # -> "echo: hello"

Endpoints:

* ``POST /v1/chat/completions`` -- non-streamed JSON, or ``"stream": true`` server-sent events
  in the OpenAI chunk format ending with ``data: [DONE]`` (sent with chunked transfer encoding,
  so HTTP/1.1 keep-alive works for streams too). ``stream_options.include_usage`` adds the final
  usage chunk. The reply defaults to ``"echo: " + <text of the last user message>``.
* ``GET /v1/models``.

Slowness, per server or per request through the model name:

* ``delay`` / model name containing ``delay-<seconds>``: wait before answering.
* ``chunk_delay`` / model name containing ``slow-<seconds>``: wait before each streamed content
  chunk (the reply is split word by word). Non-streamed replies wait ``chunk_delay`` once per
  word too, so a reply takes about as long streamed or not.
* model name containing ``error-<status>`` (e.g. ``error-500``): reply with that HTTP status and
  an OpenAI-style error body (note the OpenAI client retries 5xx/429 by default).

Clients that disconnect mid-reply are tolerated quietly and noticed at once even while the
server is waiting (counted in ``disconnects``; their connection is closed).
"""

from __future__ import annotations

import contextlib
import json
import re
import select
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = ["OpenAICompatServer", "RecordedRequest"]

_CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)
_WORD_RE = re.compile(r"(?<=\s)(?=\S)")
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


class _ServerStopped(Exception):
    """Raised inside a handler when the server shuts down during a wait."""


def _message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") in (None, "text")
        )
    return ""


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return _message_text(message)
    return ""


def _split_words(text: str) -> list[str]:
    return [part for part in _WORD_RE.split(text) if part] or [""]


def _count_tokens(text: str) -> int:
    return len(text.split())


def _echo(body: dict[str, Any]) -> str:
    return "echo: " + _last_user_text(body)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    _in_reply = False  # a chat completion is being produced on this connection

    # ----------------------------------------------------------------- plumbing

    def setup(self) -> None:
        super().setup()
        self.server.owner._connection_opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except _CLIENT_GONE:
            pass
        finally:
            self.server.owner._connection_closed(self.connection)

    def handle(self) -> None:
        try:
            super().handle()
        except _CLIENT_GONE:
            self.close_connection = True
            if self._in_reply:
                self.server.owner._client_disconnected()
        except _ServerStopped:
            self.close_connection = True

    def _wait(self, seconds: float) -> None:
        """Sleep ``seconds``, noticing at once a client hang-up or a server shutdown."""
        owner = self.server.owner
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            if owner._stopping.is_set():
                raise _ServerStopped
            step = min(remaining, 0.05)
            readable, _, _ = select.select([self.connection], [], [], step)
            if owner._stopping.is_set():
                raise _ServerStopped
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

        text = owner.reply(body)
        words = _split_words(text)
        prompt_tokens = sum(
            _count_tokens(_message_text(m)) for m in body["messages"] if isinstance(m, dict)
        )
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(words),
            "total_tokens": prompt_tokens + len(words),
        }
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())

        if body.get("stream"):
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
            self._stream(completion_id, created, model, words, chunk_delay, usage, include_usage)
            self._in_reply = False
            return

        for _ in words:
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
                        "message": {"role": "assistant", "content": text, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
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
        words: list[str],
        chunk_delay: float,
        usage: dict[str, int],
        include_usage: bool,
    ) -> None:
        def event(delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
            payload: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": None,
                "choices": [
                    {
                        "index": 0,
                        "delta": delta,
                        "logprobs": None,
                        "finish_reason": finish_reason,
                    }
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
        for word in words:
            self._wait(chunk_delay)
            send(event({"content": word}, None))
        send(event({}, "stop"))
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


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: OpenAICompatServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Drop connection errors quietly; report anything else as usual."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (*_CLIENT_GONE, _ServerStopped)):
            return
        super().handle_error(request, client_address)


class OpenAICompatServer:
    """OpenAI-compatible chat-completions server on ``127.0.0.1`` and an ephemeral port.

    Args:
        delay: Seconds to wait before answering each chat completion.
        chunk_delay: Seconds to wait before each streamed content chunk (word).
        reply: Function from the request body (parsed JSON) to the reply text; defaults to
            ``"echo: " + <last user message text>``.
        models: Model ids listed by ``GET /v1/models``.
        host: Interface to bind.
    """

    #: The request handler; tests/provider_servers.py adds other providers' wire formats.
    handler_class: type[BaseHTTPRequestHandler] = _Handler

    def __init__(
        self,
        *,
        delay: float = 0.0,
        chunk_delay: float = 0.0,
        reply: Callable[[dict[str, Any]], str] | None = None,
        models: tuple[str, ...] = ("echo",),
        host: str = "127.0.0.1",
    ) -> None:
        self.delay = delay
        self.chunk_delay = chunk_delay
        self.reply: Callable[[dict[str, Any]], str] = reply or _echo
        self.models = models
        self._host = host
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._requests: list[RecordedRequest] = []
        self._open: set[socket.socket] = set()
        self._total_connections = 0
        self._disconnects = 0
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> OpenAICompatServer:
        """Bind and start serving in a daemon thread (idempotent)."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _HTTPServer((self._host, 0), self.handler_class)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"openai-compat-server:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def shutdown(self) -> None:
        """Stop serving, abort in-flight waits, close open connections, join the thread."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        with self._lock:
            open_sockets = list(self._open)
        for sock in open_sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> OpenAICompatServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    # ----------------------------------------------------------------- introspection

    @property
    def port(self) -> int:
        if self._httpd is None:
            msg = "server is not running"
            raise RuntimeError(msg)
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, to pass as ``ChatOpenAI(base_url=...)``."""
        return f"http://{self._host}:{self.port}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        """Snapshot of every request received so far."""
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        """Number of HTTP requests received (any path)."""
        with self._lock:
            return len(self._requests)

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        """Bodies of the ``POST /v1/chat/completions`` requests, in arrival order."""
        with self._lock:
            return [
                r.body
                for r in self._requests
                if r.method == "POST"
                and r.path.rstrip("/") == "/v1/chat/completions"
                and r.body is not None
            ]

    @property
    def open_connections(self) -> int:
        """TCP connections currently open (keep-alive connections count while idle)."""
        with self._lock:
            return len(self._open)

    @property
    def total_connections(self) -> int:
        """TCP connections accepted since start."""
        with self._lock:
            return self._total_connections

    @property
    def disconnects(self) -> int:
        """Chat completions the client hung up on before the reply was complete."""
        with self._lock:
            return self._disconnects

    # ----------------------------------------------------------------- handler hooks

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _connection_opened(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.add(sock)
            self._total_connections += 1

    def _connection_closed(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)

    def _client_disconnected(self) -> None:
        with self._lock:
            self._disconnects += 1
