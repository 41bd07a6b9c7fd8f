"""Turning a ``SubagentConfig.model`` into a chat model that belongs to this run's loop.

Why this package exists: several provider packages keep their async HTTP
client across runs (langchain-openai and langchain-anthropic in a process-wide
``lru_cache``, others per model instance). Its connections belong to the
first event loop that used them, so the same model used from another
sub-agent's loop fails with "Event loop is closed" once the first loop is
gone. Every sub-agent here has its own loop, so each run gets its own client:
a *binder* per model class (``_registry.py``; built-ins in one module per
provider family, each importing its provider lazily) makes a copy of the model
holding a client made for this run, closed when the run ends. Users register
binders for other classes with :func:`register_model_binder`. The provider
table is in docs/models.md.

A model whose async HTTP client the user supplied cannot be re-created by us
(we cannot clone an arbitrary client). As a shared instance it is refused at
once with the one-line fix: build it in a factory.
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel

from .._config import ModelSpec, model_to_build
from .._errors import ModelBindingError
from ._loop_errors import explain_loop_binding_error
from ._registry import AsyncClose, ModelBinder, bind_for_run, find_binder, register_model_binder

__all__ = [
    "AsyncClose",
    "ModelBinder",
    "ModelSpec",
    "check_shareable",
    "explain_loop_binding_error",
    "find_binder",
    "register_model_binder",
    "resolve_model",
]


def resolve_model(
    spec: ModelSpec | None, parent_model: ModelSpec | None, *, subagent: str
) -> tuple[BaseChatModel, AsyncClose]:
    """Build the chat model for one run. Call it inside the sub-agent's loop.

    Returns the model and an async ``close`` for the per-run resources.
    """
    spec = model_to_build(subagent, spec, parent_model)
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
    return bind_for_run(model)


def check_shareable(spec: object, *, subagent: str) -> None:
    """Refuse, at configuration time, a model instance that cannot be shared
    between loops: one that carries a user-made async HTTP client."""
    if not isinstance(spec, BaseChatModel):
        return
    has_own = getattr(spec, "http_async_client", None) is not None and not getattr(
        spec, "openai_proxy", None
    )
    if has_own:
        name = type(spec).__name__
        raise ModelBindingError(
            f"The chat model of sub-agent {subagent!r} carries its own http_async_client, "
            "which is bound to one event loop and cannot be shared by sub-agents that each "
            "run on their own loop. Fix: pass a factory so each run builds its own client, "
            f"e.g. model=lambda: {name}(..., http_async_client=httpx.AsyncClient())"
        )
