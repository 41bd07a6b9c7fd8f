"""Scripted, input-routed fake chat model for demos, tests and benchmarks.

langchain-core's own fake chat models are a poor fit for agent tests:

* none of them implements ``bind_tools``, so ``langchain.agents.create_agent`` rejects them;
* ``GenericFakeChatModel`` consumes one iterator shared by every caller, so agents running in
  parallel receive each other's replies;
* their ``_agenerate`` runs the sync path in a worker thread, so asyncio cancellation cannot
  interrupt a "slow" reply.

:class:`ScriptedChatModel` fixes all three. A reply is chosen from the *input* only: the task
(text of the first human message) selects a script entry by substring, and the turn number
(how many AI messages the input already holds) selects the reply inside that entry. The same
model instance can therefore serve any number of concurrent agents, threads and event loops.

Example::

    from langchain.agents import create_agent
    from subagent_exec.testing import ScriptedChatModel, tool_call

    model = ScriptedChatModel(
        script={"weather": [tool_call("get_weather", {"city": "Paris"}), "It is sunny."]},
        latency=0.01,
    )
    agent = create_agent(model, tools=[get_weather])
    await agent.ainvoke({"messages": [("user", "What's the weather in Paris?")]})
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolCall,
    ToolCallChunk,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from pydantic import ConfigDict, Field, PrivateAttr, SkipValidation, field_validator

__all__ = [
    "Reply",
    "ReplyFn",
    "ScriptedCall",
    "ScriptedChatModel",
    "tool_call",
    "tool_calls",
]

ReplyFn: TypeAlias = Callable[[list[BaseMessage]], str | AIMessage]
"""A reply computed from the full list of input messages."""

Reply: TypeAlias = str | AIMessage | ReplyFn
"""One scripted reply: plain text, a ready AI message, or a function of the input messages."""

_WORD_RE = re.compile(r"(?<=\s)(?=\S)")


@dataclass(frozen=True, slots=True)
class ScriptedCall:
    """One call of a :class:`ScriptedChatModel`, as recorded in :attr:`ScriptedChatModel.calls`.

    Attributes:
        messages: ``(type, text)`` of every input message, in order (``type`` is e.g.
            ``"system"``, ``"human"``, ``"ai"``, ``"tool"``).
        task: Text of the first human message, or ``None`` if there was none.
        turn: Number of AI messages in the input (the index used inside the script entry).
        key: The script key that matched, or ``None`` (router, default, or no match).
        streamed: Whether the call went through the streaming path.
        timestamp: Wall-clock time (``time.time()``) when the call started.
        monotonic: ``time.monotonic()`` when the call started (for measuring overlap).
        thread_name: Name of the thread that made the call.
    """

    messages: tuple[tuple[str, str], ...]
    task: str | None
    turn: int
    key: str | None
    streamed: bool
    timestamp: float
    monotonic: float
    thread_name: str

    @property
    def texts(self) -> tuple[str, ...]:
        """Texts of the input messages, in order."""
        return tuple(text for _, text in self.messages)


def _new_message_id() -> str:
    return f"scripted-{uuid.uuid4().hex}"


def _new_tool_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def tool_call(name: str, args: dict[str, Any], id: str | None = None) -> AIMessage:
    """Build an AI message (empty content) that calls one tool.

    If ``id`` is ``None`` the tool call keeps ``id=None`` here and :class:`ScriptedChatModel`
    gives it a fresh unique id every time it returns this reply, so one script can serve
    several concurrent conversations without tool-call id collisions.
    """
    return tool_calls((name, args), ids=[id])


def tool_calls(
    *calls: tuple[str, dict[str, Any]],
    ids: Sequence[str | None] | None = None,
) -> AIMessage:
    """Build an AI message (empty content) that calls several tools in parallel.

    ``ids`` optionally gives one id per call; missing/``None`` ids are filled with fresh
    unique ids by :class:`ScriptedChatModel` each time the reply is returned.
    """
    if not calls:
        msg = "tool_calls() needs at least one (name, args) pair"
        raise ValueError(msg)
    id_list: list[str | None] = list(ids) if ids is not None else []
    if len(id_list) > len(calls):
        msg = f"got {len(id_list)} ids for {len(calls)} tool calls"
        raise ValueError(msg)
    id_list += [None] * (len(calls) - len(id_list))
    return AIMessage(
        content="",
        tool_calls=[
            ToolCall(name=name, args=dict(args), id=call_id, type="tool_call")
            for (name, args), call_id in zip(calls, id_list, strict=True)
        ],
    )


def _is_reply(value: object) -> bool:
    return isinstance(value, str | AIMessage) or callable(value)


def _as_replies(value: Any) -> list[Reply]:
    """A script entry as a list of replies (a single reply becomes a one-element list)."""
    return [value] if _is_reply(value) else list(value)


def _first_human_text(messages: Sequence[BaseMessage]) -> str | None:
    for message in messages:
        if isinstance(message, HumanMessage):
            return str(message.text)
    return None


def _turn_index(messages: Sequence[BaseMessage]) -> int:
    return sum(1 for message in messages if isinstance(message, AIMessage))


def finalize_reply(reply: str | AIMessage) -> AIMessage:
    """Return a private copy of ``reply`` with a unique message id and tool-call ids."""
    if isinstance(reply, str):
        return AIMessage(content=reply, id=_new_message_id())
    if not isinstance(reply, AIMessage):
        msg = f"a scripted reply must be a str or AIMessage, got {type(reply).__name__}"
        raise TypeError(msg)
    message = reply.model_copy(deep=True)
    if isinstance(message, AIMessageChunk):
        message = AIMessage(
            content=message.content,
            additional_kwargs=message.additional_kwargs,
            response_metadata=message.response_metadata,
            tool_calls=message.tool_calls,
            invalid_tool_calls=message.invalid_tool_calls,
            usage_metadata=message.usage_metadata,
            name=message.name,
            id=message.id,
        )
    if message.id is None:
        message.id = _new_message_id()
    if any(tc.get("id") is None for tc in message.tool_calls):
        message.tool_calls = [
            ToolCall(
                name=tc["name"],
                args=tc["args"],
                id=tc.get("id") or _new_tool_call_id(),
                type="tool_call",
            )
            for tc in message.tool_calls
        ]
    return message


def _split_words(text: str) -> list[str]:
    """Split ``text`` into word chunks that concatenate back to ``text`` exactly."""
    parts = [part for part in _WORD_RE.split(text) if part]
    return parts or [""]


def _to_chunks(message: AIMessage) -> list[AIMessageChunk]:
    """Split a finished reply into streaming chunks (word by word, tool calls last)."""
    content = message.content
    # Text streams word by word; structured content blocks go out as one chunk.
    pieces: list[str | list[str | dict[str, Any]]] = (
        list(_split_words(content)) if isinstance(content, str) else [content]
    )
    last = len(pieces) - 1
    chunks: list[AIMessageChunk] = []
    for index, piece in enumerate(pieces):
        if index < last:
            chunks.append(AIMessageChunk(content=piece, id=message.id))
            continue
        tc_chunks = [
            ToolCallChunk(
                name=tc["name"],
                args=json.dumps(tc["args"]),
                id=tc["id"],
                index=i,
                type="tool_call_chunk",
            )
            for i, tc in enumerate(message.tool_calls)
        ]
        chunks.append(
            AIMessageChunk(
                content=piece,
                id=message.id,
                tool_call_chunks=tc_chunks,
                additional_kwargs=message.additional_kwargs,
                response_metadata=message.response_metadata,
                usage_metadata=message.usage_metadata,
                name=message.name,
                chunk_position="last",
            )
        )
    return chunks


class ScriptedChatModel(BaseChatModel):
    """A fake chat model whose replies are routed by the input, never by shared state.

    Resolution order for every call:

    1. ``script``: the first key (insertion order) that is a substring of the text of the
       first human message selects a reply sequence; the reply index is the number of AI
       messages already in the input. Past the end of the sequence the last reply repeats.
    2. ``router``: called with the input messages when no script key matched.
    3. ``default``: returned when nothing else matched.
    4. Otherwise a :class:`ValueError` naming the first human message is raised.

    Replies may be ``str``, :class:`AIMessage` (copied on every use) or a callable of the input
    messages returning either. Every returned message gets a unique ``id`` unless the scripted
    message had one, and tool calls without an id get a fresh one per reply.

    ``latency`` (or ``latency_by_key[key]`` for a matched script key) is really awaited on the
    async path (``asyncio.sleep``, so cancellation interrupts it at once) and slept on the sync
    path. Streaming yields the reply word by word with the latency spread across the chunks and
    the tool calls as ``tool_call_chunks`` in the final chunk.

    ``bind_tools`` returns the model itself (tools are ignored), so
    ``langchain.agents.create_agent`` accepts it.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    # Replies are checked by ``_check_script`` (pydantic would try to coerce callables into
    # AIMessage and copy messages), so the field itself skips pydantic validation.
    script: SkipValidation[Mapping[str, Reply | Sequence[Reply]]] = Field(default_factory=dict)
    """Task substring -> replies by turn (turn = number of AI messages in the input).

    A single reply (not in a sequence) stands for a one-element sequence."""

    router: ReplyFn | None = None
    """Full-control reply function, used when no ``script`` key matches."""

    default: str | None = None
    """Reply used when neither ``script`` nor ``router`` applies."""

    latency: float = Field(default=0.0, ge=0.0)
    """Seconds each reply takes (spread across chunks when streaming)."""

    latency_by_key: Mapping[str, float] = Field(default_factory=dict)
    """Per-script-key latency overriding ``latency``."""

    model_name: str = "scripted-fake"
    """Reported model name."""

    _calls: list[ScriptedCall] = PrivateAttr(default_factory=list)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @field_validator("script", mode="before")
    @classmethod
    def _check_script(cls, value: Any) -> dict[str, list[Reply]]:
        """Validate the script; accept ``{"key": reply}`` as shorthand for ``{"key": [reply]}``."""
        if not isinstance(value, Mapping):
            msg = f"script must be a mapping of str to replies, got {type(value).__name__}"
            raise ValueError(msg)
        checked: dict[str, list[Reply]] = {}
        for key, replies in value.items():
            if not isinstance(key, str):
                msg = f"script keys must be str, got {key!r}"
                raise ValueError(msg)
            if not _is_reply(replies) and not isinstance(replies, Iterable):
                msg = f"script entry {key!r}: expected a reply or a sequence of replies"
                raise ValueError(msg)
            items = _as_replies(replies)
            if not items:
                msg = f"script entry {key!r} has no replies"
                raise ValueError(msg)
            for item in items:
                if not _is_reply(item):
                    msg = (
                        f"script entry {key!r}: a reply must be a str, an AIMessage or a "
                        f"callable, got {type(item).__name__}"
                    )
                    raise ValueError(msg)
            checked[key] = items
        return checked

    # ------------------------------------------------------------------ introspection

    @property
    def _llm_type(self) -> str:
        return "scripted-fake"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "latency": self.latency}

    @property
    def calls(self) -> list[ScriptedCall]:
        """A snapshot of every call made so far (thread-safe)."""
        with self._lock:
            return list(self._calls)

    @property
    def call_count(self) -> int:
        """Number of calls made so far (thread-safe)."""
        with self._lock:
            return len(self._calls)

    def __getstate__(self) -> dict[Any, Any]:
        # A lock cannot be pickled; a copy sent to another process (the Ray
        # backend) starts with its own lock and an empty call log.
        state = dict(super().__getstate__())
        private = dict(state.get("__pydantic_private__") or {})
        private.pop("_lock", None)
        private["_calls"] = []
        state["__pydantic_private__"] = private
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._lock = threading.Lock()

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> ScriptedChatModel:
        # The script is never mutated (replies are copied on use), so a copy
        # may share it; it gets its own lock and call log.
        clone = self.model_copy()
        clone._lock = threading.Lock()
        clone._calls = []
        return clone

    def reset_calls(self) -> None:
        """Forget the recorded calls."""
        with self._lock:
            self._calls.clear()

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Return the model itself: the script decides which tools get called."""
        del tools, tool_choice, kwargs
        return self

    # ------------------------------------------------------------------ routing

    def _resolve(self, messages: list[BaseMessage], *, streamed: bool) -> tuple[AIMessage, float]:
        """Pick the reply for ``messages``, record the call, return (reply, latency)."""
        task = _first_human_text(messages)
        turn = _turn_index(messages)
        key: str | None = None
        if task is not None:
            key = next((k for k in self.script if k in task), None)
        self._record(messages, task=task, turn=turn, key=key, streamed=streamed)

        raw: Reply
        if key is not None:
            replies = _as_replies(self.script[key])
            raw = replies[min(turn, len(replies) - 1)]
        elif self.router is not None:
            raw = self.router
        elif self.default is not None:
            raw = self.default
        else:
            msg = (
                f"ScriptedChatModel has no reply for task {task!r} (turn {turn}): "
                f"no script key matched (keys: {list(self.script)}), no router and no default"
            )
            raise ValueError(msg)

        reply = raw(list(messages)) if callable(raw) else raw
        latency = self.latency_by_key.get(key, self.latency) if key is not None else self.latency
        return finalize_reply(reply), latency

    def _record(
        self,
        messages: list[BaseMessage],
        *,
        task: str | None,
        turn: int,
        key: str | None,
        streamed: bool,
    ) -> None:
        record = ScriptedCall(
            messages=tuple((m.type, str(m.text)) for m in messages),
            task=task,
            turn=turn,
            key=key,
            streamed=streamed,
            timestamp=time.time(),
            monotonic=time.monotonic(),
            thread_name=threading.current_thread().name,
        )
        with self._lock:
            self._calls.append(record)

    # ------------------------------------------------------------------ generation

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        message, latency = self._resolve(messages, streamed=False)
        if latency > 0:
            time.sleep(latency)
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        message, latency = self._resolve(messages, streamed=False)
        await asyncio.sleep(latency)  # always a cancellation point, even at latency 0
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        message, latency = self._resolve(messages, streamed=True)
        chunks = _to_chunks(message)
        pause = latency / len(chunks)
        for chunk in chunks:
            if pause > 0:
                time.sleep(pause)
            generation = ChatGenerationChunk(message=chunk)
            if run_manager is not None and isinstance(chunk.content, str):
                run_manager.on_llm_new_token(chunk.content, chunk=generation)
            yield generation

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        message, latency = self._resolve(messages, streamed=True)
        chunks = _to_chunks(message)
        pause = latency / len(chunks)
        for chunk in chunks:
            await asyncio.sleep(pause)
            generation = ChatGenerationChunk(message=chunk)
            if run_manager is not None and isinstance(chunk.content, str):
                await run_manager.on_llm_new_token(chunk.content, chunk=generation)
            yield generation
