"""Binder for the langchain-openai family (``BaseChatOpenAI`` and its subclasses:
``ChatOpenAI``, ``AzureChatOpenAI``, ``ChatDeepSeek``, ``ChatXAI``, ...).

``ChatOpenAI`` takes its async HTTP client from a process-wide ``lru_cache``
(one per base URL and timeout); Azure, DeepSeek and xAI make one per model
instance. Either way the connections belong to the loop that opened them. Each
run gets a copy of the model whose ``AsyncOpenAI`` client is the original's
``copy()`` with a fresh HTTP client, closed when the run ends.

A client the user made (``http_async_client=``) cannot be re-created: a
factory that makes one is trusted (it runs inside the run's loop), a shared
instance that carries one is refused at configuration time (``check_shareable``).
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel

from ._http import shared_ssl_context
from ._registry import AsyncClose


def has_own_async_client(model: Any) -> bool:
    """The model carries an async HTTP client the user made (not one built for a proxy)."""
    return getattr(model, "http_async_client", None) is not None and not getattr(
        model, "openai_proxy", None
    )


def bind_openai(model: BaseChatModel) -> tuple[BaseChatModel, AsyncClose | None]:
    root = getattr(model, "root_async_client", None)
    if root is None or not hasattr(root, "copy") or has_own_async_client(model):
        return model, None
    import openai

    proxy = getattr(model, "openai_proxy", None)
    options: dict[str, Any] = {"verify": shared_ssl_context()}
    if proxy:
        options["proxy"] = proxy
    client: Any = openai.DefaultAsyncHttpxClient(**options)
    run_root = root.copy(http_client=client)
    run_model = model.model_copy()
    # The copy shares every setting with the original and differs only in the
    # client objects, which langchain-openai's pydantic fields hold as Any.
    object.__setattr__(run_model, "root_async_client", run_root)
    object.__setattr__(run_model, "async_client", run_root.chat.completions)
    return run_model, run_root.close
