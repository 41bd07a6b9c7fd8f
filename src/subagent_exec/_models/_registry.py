"""Which binder gives a chat model of a given class its per-run HTTP client.

A *binder* is called once per run, inside the sub-agent's own event loop, with
the model built for this run (the shared instance itself, a factory's result,
or the model ``init_chat_model`` made from a string). It returns the model to
use for this run and an async ``close`` (or None) that the run awaits on the
same loop when it ends, also when it is cancelled.

Binders registered with :func:`register_model_binder` win over the built-in
ones; the most specific class in the model's MRO wins. Built-in binders are
named by class path and imported only when a model of that family is bound,
so no provider package is ever imported by subagent-exec itself.
"""

from __future__ import annotations

import importlib
import inspect
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

from langchain_core.language_models import BaseChatModel

AsyncClose: TypeAlias = Callable[[], Awaitable[None]]
#: ``binder(model) -> (model_for_this_run, async close or None)``.
ModelBinder: TypeAlias = Callable[[BaseChatModel], "tuple[BaseChatModel, AsyncClose | None]"]

#: Provider class path -> "module:function" of its built-in binder (docs/models.md).
BUILTIN_BINDERS: dict[str, str] = {
    "langchain_openai.chat_models.base.BaseChatOpenAI": "openai:bind_openai",
    "langchain_anthropic.chat_models.ChatAnthropic": "anthropic:bind_anthropic",
    "langchain_groq.chat_models.ChatGroq": "groq:bind_groq",
    "langchain_mistralai.chat_models.ChatMistralAI": "mistral:bind_mistral",
    "langchain_ollama.chat_models.ChatOllama": "ollama:bind_ollama",
    "langchain_google_genai.chat_models.ChatGoogleGenerativeAI": "google:bind_google",
}

_lock = threading.Lock()
_registered: dict[type[BaseChatModel], ModelBinder] = {}


async def nothing_to_close() -> None:
    return None


def register_model_binder(model_class: type[BaseChatModel], binder: ModelBinder | None) -> None:
    """Use ``binder`` for every chat model of ``model_class`` (and its subclasses)
    that a sub-agent runs; ``binder=None`` removes a registration.

    The binder is called inside the sub-agent's own event loop, once per run,
    with the model built for this run. It returns ``(model, close)``: the model
    the run uses (typically a ``model.model_copy()`` holding an async client
    made for this run) and an async callable that closes what it made, or None.
    ``close`` is awaited on the same loop when the run ends, also when it is
    cancelled, shielded and bounded in time.

    A registration wins over the built-in binder of the same class, and the
    most specific class of a model wins (see docs/models.md).
    """
    if not (inspect.isclass(model_class) and issubclass(model_class, BaseChatModel)):
        raise TypeError(
            "register_model_binder: model_class must be a chat model class (a subclass of "
            f"langchain_core BaseChatModel), got {model_class!r}"
        )
    if binder is not None and not callable(binder):
        raise TypeError(
            "register_model_binder: binder must be a callable taking the model and returning "
            f"(model, async close or None), or None to remove; got {type(binder).__name__}"
        )
    with _lock:
        if binder is None:
            _registered.pop(model_class, None)
        else:
            _registered[model_class] = binder


def find_binder(model_class: type[Any]) -> tuple[ModelBinder, type[Any]] | None:
    """The binder for ``model_class`` and the class it was found for, or None."""
    for cls in inspect.getmro(model_class):
        binder = _registered.get(cls)
        if binder is not None:
            return binder, cls
        target = BUILTIN_BINDERS.get(f"{cls.__module__}.{cls.__qualname__}")
        if target is not None:
            module_name, function = target.split(":")
            module = importlib.import_module(f"{__package__}.{module_name}")
            builtin: ModelBinder = getattr(module, function)
            return builtin, cls
    return None


def bind_for_run(model: BaseChatModel) -> tuple[BaseChatModel, AsyncClose]:
    """Apply the binder of ``model``'s class, if any; call inside the run's loop."""
    found = find_binder(type(model))
    if found is None:
        return model, nothing_to_close
    binder, _ = found
    result = binder(model)
    name = getattr(binder, "__qualname__", repr(binder))
    if not (isinstance(result, tuple) and len(result) == 2):
        raise TypeError(
            f"model binder {name} must return (model, async close or None), "
            f"got {type(result).__name__}"
        )
    run_model, close = result
    if not isinstance(run_model, BaseChatModel):
        raise TypeError(
            f"model binder {name} returned {type(run_model).__name__} as the model, "
            "not a chat model"
        )
    if close is None:
        return run_model, nothing_to_close
    if not callable(close):
        raise TypeError(
            f"model binder {name} returned {type(close).__name__} as close; it must be an "
            "async callable taking no arguments, or None"
        )
    return run_model, close
