"""A fake OpenAI-compatible chat-completions server for offline tests (stdlib HTTP).

Point the real OpenAI client at it (``ChatOpenAI(base_url=server.base_url)``,
or ``OPENAI_BASE_URL``) and every request is answered on ``127.0.0.1``, with no
key and no network::

    with OpenAICompatServer() as srv:
        llm = ChatOpenAI(base_url=srv.base_url, api_key="test", model="x")
        llm.invoke("hello").content  # -> "echo: hello"

What it answers, in this order of choice:

* ``chat_model=``: a chat model (typically a :class:`ScriptedChatModel`) or a
  mapping of request model names to chat models (``"*"``: any other name). The
  request's messages are turned into LangChain messages and the model's reply,
  text and tool calls, goes back in the OpenAI wire format, streamed or not.
  A :class:`ScriptedChatModel` routes by the input (the first user message
  picks the script entry, the number of assistant messages the turn), so one
  server can answer a lead agent and all its sub-agents at once, and its
  ``latency`` is awaited by the server, where a disconnect or a shutdown
  interrupts it.
* ``reply=``: a function from the request body (parsed JSON) to the reply: a
  string or an ``AIMessage`` (tool calls included).
* Otherwise: ``"echo: " + <text of the last user message>``.

A reply that calls a tool the request does not offer, a script with no reply
for the input, or a malformed message is answered with HTTP 400 and a message
saying so (the OpenAI client raises ``BadRequestError`` at once, no retries).

Endpoints: ``POST /v1/chat/completions`` (JSON, or ``"stream": true`` server-sent
events in the OpenAI chunk format ending with ``data: [DONE]``, chunked, so
HTTP/1.1 keep-alive works for streams too; ``stream_options.include_usage``
adds the usage chunk) and ``GET /v1/models``.

Slowness, per server or per request through the model name:

* ``delay`` / model name containing ``delay-<seconds>``: wait before answering.
* ``chunk_delay`` / model name containing ``slow-<seconds>``: wait before each streamed
  chunk (text word by word, then the tool calls). Non-streamed replies wait as long.
* model name containing ``error-<status>`` (e.g. ``error-500``): reply with that HTTP status
  and an OpenAI-style error body (note the OpenAI client retries 5xx/429 by default).

Clients that disconnect mid-reply are tolerated quietly and noticed at once even while the
server is waiting (counted in ``disconnects``; their connection is closed).
"""

from __future__ import annotations

import contextlib
import math
import socket
import threading
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, TypeAlias

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage

from ._handler import BadRequest, Handler, HTTPServer, RecordedRequest
from ._scripted import ScriptedChatModel, finalize_reply
from ._wire import message_text, offered_tools, request_messages

__all__ = ["OpenAICompatServer", "RecordedRequest", "ReplyFunction"]

ReplyFunction: TypeAlias = Callable[[dict[str, Any]], "str | AIMessage"]
"""A reply computed from the request body (the parsed JSON)."""


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return message_text(message)
    return ""


def _echo(body: dict[str, Any]) -> str:
    return "echo: " + _last_user_text(body)


def _seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"OpenAICompatServer: {name} must be a number of seconds, got {value!r}")
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"OpenAICompatServer: {name} must be a finite number >= 0, got {value}")
    return float(value)


class OpenAICompatServer:
    """OpenAI-compatible chat-completions server on ``127.0.0.1``.

    Args:
        delay: Seconds to wait before answering each chat completion.
        chunk_delay: Seconds to wait before each streamed chunk.
        reply: Function from the request body (parsed JSON) to the reply (a string or an
            ``AIMessage`` with tool calls); defaults to ``"echo: " + <last user message>``.
        chat_model: Answer with this chat model (e.g. a :class:`ScriptedChatModel`), or with
            the one a mapping gives for the request's model name (``"*"``: any other name).
            Not together with ``reply``.
        models: Model ids listed by ``GET /v1/models``.
        host: Interface to bind.
        port: Port to bind; 0 (the default) picks a free one (see :attr:`port`).
    """

    #: The request handler; a subclass may add other providers' wire formats
    #: (the project's tests do: tests/provider_servers.py).
    handler_class: type[Handler] = Handler

    def __init__(
        self,
        *,
        delay: float = 0.0,
        chunk_delay: float = 0.0,
        reply: ReplyFunction | None = None,
        chat_model: BaseChatModel | Mapping[str, BaseChatModel] | None = None,
        models: tuple[str, ...] = ("echo",),
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.delay = _seconds("delay", delay)
        self.chunk_delay = _seconds("chunk_delay", chunk_delay)
        if reply is not None and not callable(reply):
            raise TypeError(f"OpenAICompatServer: reply must be callable, got {reply!r}")
        if reply is not None and chat_model is not None:
            raise ValueError("OpenAICompatServer: give reply= or chat_model=, not both")
        self.reply: ReplyFunction = reply or _echo
        self.chat_model = _check_chat_model(chat_model)
        self.models = models
        if isinstance(port, bool) or not isinstance(port, int):
            raise TypeError(f"OpenAICompatServer: port must be an int, got {port!r}")
        if not 0 <= port <= 65535:
            raise ValueError(
                f"OpenAICompatServer: port must be 0 (any free port) to 65535, got {port}"
            )
        self._host = host
        self._bind_port = port
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._requests: list[RecordedRequest] = []
        self._open: set[socket.socket] = set()
        self._total_connections = 0
        self._disconnects = 0
        self._httpd: HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> OpenAICompatServer:
        """Bind and start serving in a daemon thread (idempotent)."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = HTTPServer((self._host, self._bind_port), self.handler_class)
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

    # ----------------------------------------------------------------- answering

    def _answer(self, body: dict[str, Any]) -> tuple[AIMessage, float]:
        """The reply to one chat completion and the seconds to wait before sending it.

        Raises ``BadRequest`` (HTTP 400) when it cannot be answered as asked.
        """
        latency = 0.0
        try:
            if self.chat_model is None:
                reply = finalize_reply(self.reply(body))
            else:
                model = self._model_for(str(body.get("model") or ""))
                messages = request_messages(body)
                if isinstance(model, ScriptedChatModel):
                    # Its latency is waited by the handler, where a hang-up or a
                    # shutdown interrupts it (a sleep in the model would not notice).
                    reply, latency = model._resolve(messages, streamed=bool(body.get("stream")))
                else:
                    answer = model.invoke(messages)
                    if not isinstance(answer, AIMessage):
                        raise BadRequest(f"the chat model answered a {type(answer).__name__}")
                    reply = finalize_reply(answer)
        except BadRequest:
            raise
        except Exception as exc:  # the client should see why, at once and without retries
            raise BadRequest(f"{type(exc).__name__}: {exc}") from exc
        _check_tools(reply, offered_tools(body))
        return reply, latency

    def _model_for(self, name: str) -> BaseChatModel:
        chosen = self.chat_model
        if isinstance(chosen, BaseChatModel):
            return chosen
        assert chosen is not None
        model = chosen.get(name) or chosen.get("*")
        if model is None:
            raise BadRequest(
                f"no chat model for model name {name!r}; this server serves {sorted(chosen)}"
            )
        return model

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


def _check_chat_model(
    chat_model: object,
) -> BaseChatModel | Mapping[str, BaseChatModel] | None:
    if chat_model is None or isinstance(chat_model, BaseChatModel):
        return chat_model
    if isinstance(chat_model, Mapping):
        bad = {
            k: type(v).__name__
            for k, v in chat_model.items()
            if not isinstance(k, str) or not isinstance(v, BaseChatModel)
        }
        if bad or not chat_model:
            raise TypeError(
                "OpenAICompatServer: chat_model must be a chat model or a non-empty mapping of "
                f"model names (str) to chat models; wrong entries: {bad}"
            )
        return dict(chat_model)
    raise TypeError(
        "OpenAICompatServer: chat_model must be a chat model (e.g. ScriptedChatModel) or a "
        f"mapping of model names to chat models, got {type(chat_model).__name__}"
    )


def _check_tools(reply: AIMessage, offered: list[str] | None) -> None:
    """A real model only calls the tools it was offered: a script that does not is wrong."""
    called = [call["name"] for call in reply.tool_calls]
    unknown = [name for name in called if offered is None or name not in offered]
    if unknown:
        raise BadRequest(
            f"the scripted reply calls tool(s) {unknown} but the request offers "
            f"{offered if offered else 'no tools'}"
        )
