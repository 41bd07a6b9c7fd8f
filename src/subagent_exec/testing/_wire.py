"""The OpenAI chat-completions wire format, both ways, for the fake server.

Requests come in as OpenAI JSON (``messages`` with ``system`` / ``developer`` /
``user`` / ``assistant`` / ``tool`` roles, assistant ``tool_calls`` with JSON
``arguments``); :func:`request_messages` turns them into LangChain messages so
that a :class:`~subagent_exec.testing.ScriptedChatModel` can route on them
exactly as it does in-process. Replies go out as OpenAI JSON:
:func:`completion_message` for a non-streamed reply, :func:`stream_deltas` for
the ``delta`` objects of a streamed one (text word by word, then each tool
call: id and name first, arguments after, as OpenAI sends them).
"""

from __future__ import annotations

import json
import re
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolCall,
    ToolMessage,
)

__all__ = [
    "completion_message",
    "finish_reason",
    "message_text",
    "offered_tools",
    "reply_text",
    "request_messages",
    "split_words",
    "stream_deltas",
]

_WORD_RE = re.compile(r"(?<=\s)(?=\S)")


def message_text(message: dict[str, Any]) -> str:
    """The text of one OpenAI message (a string, or the text parts of a list)."""
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


def split_words(text: str) -> list[str]:
    """Word chunks that concatenate back to ``text`` exactly (at least one)."""
    return [part for part in _WORD_RE.split(text) if part] or [""]


def _tool_call(raw: Any) -> ToolCall:
    function = raw.get("function") if isinstance(raw, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise ValueError(f"an assistant tool call needs function.name, got {raw!r}")
    arguments = function.get("arguments") or "{}"
    try:
        args = json.loads(arguments) if isinstance(arguments, str) else dict(arguments)
    except ValueError as exc:
        raise ValueError(f"tool call arguments are not JSON: {arguments!r}") from exc
    if not isinstance(args, dict):
        raise ValueError(f"tool call arguments must be a JSON object, got {arguments!r}")
    return ToolCall(name=function["name"], args=args, id=raw.get("id"), type="tool_call")


def request_messages(body: dict[str, Any]) -> list[BaseMessage]:
    """The request's ``messages`` as LangChain messages.

    Raises ``ValueError`` (the server answers 400) for a role it does not know.
    """
    converted: list[BaseMessage] = []
    for raw in body.get("messages") or []:
        if not isinstance(raw, dict):
            raise ValueError(f"each message must be a JSON object, got {raw!r}")
        role, text = raw.get("role"), message_text(raw)
        if role in ("system", "developer"):
            converted.append(SystemMessage(content=text))
        elif role == "user":
            converted.append(HumanMessage(content=text))
        elif role == "assistant":
            calls = [_tool_call(c) for c in raw.get("tool_calls") or []]
            converted.append(AIMessage(content=text, tool_calls=calls))
        elif role == "tool":
            converted.append(ToolMessage(content=text, tool_call_id=str(raw.get("tool_call_id"))))
        else:
            raise ValueError(
                f"unknown message role {role!r}; known: system, developer, user, assistant, tool"
            )
    return converted


def offered_tools(body: dict[str, Any]) -> list[str] | None:
    """Names of the function tools the request offers (``None``: no ``tools`` key)."""
    tools = body.get("tools")
    if tools is None:
        return None
    names: list[str] = []
    for tool in tools if isinstance(tools, list) else []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            names.append(function["name"])
    return names


def reply_text(message: AIMessage) -> str:
    """The reply's text (structured content blocks: their text parts)."""
    return str(message.text)


def finish_reason(message: AIMessage) -> str:
    return "tool_calls" if message.tool_calls else "stop"


def _wire_tool_call(call: ToolCall) -> dict[str, Any]:
    return {
        "id": call["id"],
        "type": "function",
        "function": {"name": call["name"], "arguments": json.dumps(call["args"])},
    }


def completion_message(message: AIMessage) -> dict[str, Any]:
    """The ``choices[0].message`` of a non-streamed completion.

    As OpenAI does: ``content`` is ``null`` when the reply only calls tools,
    and there is no ``tool_calls`` key when it calls none.
    """
    text = reply_text(message)
    wire: dict[str, Any] = {
        "role": "assistant",
        "content": text if text or not message.tool_calls else None,
        "refusal": None,
    }
    if message.tool_calls:
        wire["tool_calls"] = [_wire_tool_call(call) for call in message.tool_calls]
    return wire


def stream_deltas(message: AIMessage) -> list[dict[str, Any]]:
    """The ``delta`` objects of a streamed reply, after the opening role delta.

    Text goes word by word; then, per tool call, one delta with its index, id,
    type and name (empty arguments) and one with its arguments.
    """
    deltas: list[dict[str, Any]] = []
    text = reply_text(message)
    if text or not message.tool_calls:
        deltas.extend({"content": word} for word in split_words(text))
    for index, call in enumerate(message.tool_calls):
        deltas.append(
            {
                "tool_calls": [
                    {
                        "index": index,
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": call["name"], "arguments": ""},
                    }
                ]
            }
        )
        deltas.append(
            {"tool_calls": [{"index": index, "function": {"arguments": json.dumps(call["args"])}}]}
        )
    return deltas
