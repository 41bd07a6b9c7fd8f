"""Sub-agent output, live, in the lead's stream (opt-in).

With ``make_task_tool(..., stream_subagent_output=True)`` (or the same option
of ``SubagentMiddleware``), every token a sub-agent's chat model produces
reaches the lead's stream consumer as a ``task_output`` custom event, tagged
with ``task_id``, ``tool_call_id`` and ``subagent_type``, while it is being
produced: a UI can render each sub-agent live.

How: :class:`OutputRelay` is one more callback handler of the child's run.
It looks like a streaming handler to LangChain (it has the two
``tap_output_*`` methods of its streaming-handler protocol), so chat models
take their streaming path and report each chunk through ``on_llm_new_token``;
the relay hands each chunk to the calling side. Off by default: when off, no
handler is added and a model is not made to stream.

Not on the Ray backend: callbacks stay on the driver (docs/ray.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import ChatGenerationChunk, GenerationChunk

T = TypeVar("T")


class OutputRelay(BaseCallbackHandler):
    """Hands every token of a sub-agent's chat models to ``forward`` (called
    on the sub-agent's thread, in order)."""

    run_inline = True  # in call order, from the thread that produced the token

    def __init__(self, forward: Callable[[dict[str, Any]], None]) -> None:
        self._forward = forward

    def on_llm_new_token(
        self,
        token: str | list[str | dict[str, Any]],
        *,
        chunk: GenerationChunk | ChatGenerationChunk | None = None,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        output: dict[str, Any] = {"delta": _text(token), "model_run_id": str(run_id)}
        if isinstance(chunk, ChatGenerationChunk):
            message = chunk.message
            output["message_id"] = message.id
            tool_call_chunks = getattr(message, "tool_call_chunks", None)
            if tool_call_chunks:
                output["tool_call_chunks"] = [dict(c) for c in tool_call_chunks]
        self._forward(output)

    # LangChain's streaming-handler protocol: its presence makes models stream.
    def tap_output_aiter(self, run_id: UUID, output: AsyncIterator[T]) -> AsyncIterator[T]:
        return output

    def tap_output_iter(self, run_id: UUID, output: Iterator[T]) -> Iterator[T]:
        return output


def _text(token: str | list[str | dict[str, Any]]) -> str:
    """A token's text: a string, or the text blocks of a list of content blocks."""
    if isinstance(token, str):
        return token
    parts = []
    for block in token:
        if isinstance(block, str):
            parts.append(block)
        elif block.get("type") in (None, "text", "output_text") and isinstance(
            block.get("text"), str
        ):
            parts.append(block["text"])
    return "".join(parts)
