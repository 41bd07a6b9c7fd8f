"""Binder for langchain-groq's ``ChatGroq``.

``ChatGroq`` builds one ``AsyncGroq`` client per model instance, so a shared
instance carries one set of connections across every sub-agent loop. Each run
gets a copy of the model whose client is the original's ``copy()`` with a
fresh HTTP client, closed when the run ends. As for OpenAI, a user-made
``http_async_client`` is trusted from a factory and refused on a shared
instance.
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel

from ._http import shared_ssl_context
from ._registry import AsyncClose


def bind_groq(model: BaseChatModel) -> tuple[BaseChatModel, AsyncClose | None]:
    resource = getattr(model, "async_client", None)
    root = getattr(resource, "_client", None)  # the AsyncGroq behind chat.completions
    if root is None or getattr(model, "http_async_client", None) is not None:
        return model, None
    import groq

    client: Any = groq.DefaultAsyncHttpxClient(verify=shared_ssl_context())
    run_root = root.copy(http_client=client)
    run_model = model.model_copy()
    object.__setattr__(run_model, "async_client", run_root.chat.completions)
    return run_model, run_root.close
