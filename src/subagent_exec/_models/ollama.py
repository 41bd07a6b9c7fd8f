"""Binder for langchain-ollama's ``ChatOllama``.

``ChatOllama`` holds one ``ollama.AsyncClient`` (an ``httpx.AsyncClient``
inside) per model instance. Each run gets a copy of the model with a new
client for the same host, headers (credentials from the URL included) and
client options, closed when the run ends.
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel

from ._http import shared_ssl_context
from ._registry import AsyncClose


def bind_ollama(model: BaseChatModel) -> tuple[BaseChatModel, AsyncClose | None]:
    import ollama

    old = getattr(getattr(model, "_async_client", None), "_client", None)
    if old is None:
        return model, None
    options: dict[str, Any] = {
        **(getattr(model, "client_kwargs", None) or {}),
        **(getattr(model, "async_client_kwargs", None) or {}),
    }
    # The old client's headers already hold the URL's credentials and ollama's own.
    options["headers"] = dict(old.headers)
    if "verify" not in options and "transport" not in options:
        options["verify"] = shared_ssl_context()
    client = ollama.AsyncClient(host=str(old.base_url), **options)
    run_model = model.model_copy()
    run_model._async_client = client  # type: ignore[attr-defined]
    return run_model, client.close
