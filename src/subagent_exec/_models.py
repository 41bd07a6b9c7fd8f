"""Turning a ``SubagentConfig.model`` into a chat model that belongs to this loop.

Why this module exists: langchain-openai caches one ``httpx.AsyncClient`` per
(base_url, timeout) for the whole process. Its connections belong to the
first event loop that used them, so the same model used from another
sub-agent's loop fails with "Event loop is closed" once the first loop is
gone. Every sub-agent here has its own loop, so each run gets its own HTTP
client: we copy the model and give the copy a fresh async client, which is
closed when the run ends. See README.md, "Real models on many loops".

A model whose async HTTP client the user supplied cannot be re-created by us
(we cannot clone an arbitrary ``httpx.AsyncClient``). As a shared instance it
is refused at once with the one-line fix: build it in a factory.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.language_models import BaseChatModel

from ._config import ModelSpec, model_to_build
from ._errors import ModelBindingError

__all__ = ["ModelSpec", "bind_to_running_loop", "check_shareable", "resolve_model"]

AsyncClose = Callable[[], Awaitable[None]]


async def _nothing_to_close() -> None:
    return None


def resolve_model(
    spec: ModelSpec | None, parent_model: ModelSpec | None, *, subagent: str
) -> tuple[BaseChatModel, AsyncClose]:
    """Build the chat model for one run. Call it inside the sub-agent's loop.

    Returns the model and an async ``close`` for the per-run resources.
    """
    spec = model_to_build(subagent, spec, parent_model)
    shared_instance = isinstance(spec, BaseChatModel)
    if isinstance(spec, str):
        from langchain.chat_models import init_chat_model

        model: Any = init_chat_model(spec)
    elif isinstance(spec, BaseChatModel):
        model = spec
    else:
        model = spec()
        if not isinstance(model, BaseChatModel):
            raise ValueError(
                f"SubagentConfig.model factory of {subagent!r} returned "
                f"{type(model).__name__}, not a chat model"
            )
    return bind_to_running_loop(model, shared_instance=shared_instance, subagent=subagent)


def bind_to_running_loop(
    model: BaseChatModel, *, shared_instance: bool, subagent: str
) -> tuple[BaseChatModel, AsyncClose]:
    """Give an OpenAI-family model a per-run async HTTP client; others pass through."""
    root = getattr(model, "root_async_client", None)
    if root is None or not hasattr(root, "copy") or not hasattr(model, "http_async_client"):
        return model, _nothing_to_close
    import httpx
    import openai

    proxy = getattr(model, "openai_proxy", None)
    if _has_own_async_client(model):
        if shared_instance:
            check_shareable(model, subagent=subagent)
        # Built by the user's factory inside this run: it already belongs here.
        return model, _nothing_to_close
    client: Any = httpx.AsyncClient(proxy=proxy) if proxy else openai.DefaultAsyncHttpxClient()
    run_root = root.copy(http_client=client)
    run_model = model.model_copy()
    # The copy shares every setting with the original and differs only in the
    # client objects, which pydantic fields of langchain-openai hold as Any.
    object.__setattr__(run_model, "root_async_client", run_root)
    object.__setattr__(run_model, "async_client", run_root.chat.completions)

    async def close() -> None:
        await client.aclose()

    return run_model, close


def _has_own_async_client(model: Any) -> bool:
    return (
        getattr(model, "http_async_client", None) is not None
        and not getattr(model, "openai_proxy", None)
    )


def check_shareable(spec: object, *, subagent: str) -> None:
    """Refuse, at configuration time, a model instance that cannot be shared
    between loops: one that carries a user-made async HTTP client."""
    if isinstance(spec, BaseChatModel) and _has_own_async_client(spec):
        raise ModelBindingError(
            f"The chat model of sub-agent {subagent!r} carries its own http_async_client, "
            "which is bound to one event loop and cannot be shared by sub-agents that each "
            "run on their own loop. Fix: pass a factory so each run builds its own client, "
            "e.g. model=lambda: ChatOpenAI(..., http_async_client=httpx.AsyncClient())"
        )
