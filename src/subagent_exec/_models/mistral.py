"""Binder for langchain-mistralai's ``ChatMistralAI``.

``ChatMistralAI`` holds one ``httpx.AsyncClient`` per model instance (its
``async_client`` field). Each run gets a copy of the model with a new client
of the same base URL, headers and timeout, closed when the run ends.
"""

from __future__ import annotations

from typing import Any

import httpx
from langchain_core.language_models import BaseChatModel

from ._http import shared_ssl_context
from ._registry import AsyncClose


def bind_mistral(model: BaseChatModel) -> tuple[BaseChatModel, AsyncClose | None]:
    old = getattr(model, "async_client", None)
    if not isinstance(old, httpx.AsyncClient):
        return model, None
    client = httpx.AsyncClient(
        base_url=old.base_url,
        headers=old.headers,
        timeout=old.timeout,
        verify=_mistral_ssl_context(),
    )
    run_model = model.model_copy()
    object.__setattr__(run_model, "async_client", client)
    return run_model, client.aclose


def _mistral_ssl_context() -> Any:
    """The TLS context langchain-mistralai itself uses (certifi), else ours."""
    from langchain_mistralai import chat_models

    return getattr(chat_models, "global_ssl_context", None) or shared_ssl_context()
