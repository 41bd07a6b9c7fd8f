"""Binder for langchain-anthropic's ``ChatAnthropic`` (and subclasses such as
langchain-aws's ``ChatAnthropicBedrock``).

``ChatAnthropic._async_client`` is a ``cached_property`` whose HTTP client
comes from a process-wide ``@lru_cache`` (``_get_default_async_httpx_client``),
and ``ChatAnthropic`` takes no ``http_async_client``: a factory alone does not
help. Each run gets a copy of the model holding the original client's
``copy()`` with a fresh HTTP client, closed when the run ends. A subclass that
builds its own SDK client per instance simply builds a new one on the copy.
"""

from __future__ import annotations

import inspect
from typing import Any

from langchain_core.language_models import BaseChatModel

from ._http import shared_ssl_context
from ._registry import AsyncClose


def bind_anthropic(model: BaseChatModel) -> tuple[BaseChatModel, AsyncClose | None]:
    import anthropic
    from langchain_anthropic import ChatAnthropic

    run_model = model.model_copy()
    # model_copy copies the instance dict, cached_property values included.
    run_model.__dict__.pop("_async_client", None)
    own_builder = inspect.getattr_static(type(model), "_async_client", None)
    if own_builder is ChatAnthropic.__dict__.get("_async_client"):
        # The base class's builder uses the process-wide cached HTTP client.
        base: Any = model._async_client  # type: ignore[attr-defined]
        options: dict[str, Any] = {"verify": shared_ssl_context()}
        proxy = getattr(model, "anthropic_proxy", None)
        if proxy:
            options["proxy"] = proxy
        client: Any = base.copy(http_client=anthropic.DefaultAsyncHttpxClient(**options))
    else:
        # A subclass's own builder makes an SDK client (and its HTTP client) per instance.
        client = getattr(run_model, "_async_client")  # noqa: B009
    run_model.__dict__["_async_client"] = client
    return run_model, client.close
