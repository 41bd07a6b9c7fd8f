"""Turning "Event loop is closed" inside a model call into a clear ModelBindingError.

A provider client whose connections belong to another event loop fails with
``RuntimeError: Event loop is closed`` (the other loop has ended) or "...
attached to a different loop" / "... bound to a different event loop" (it is
still running), often wrapped as the cause of the provider's own "Connection
error". That says nothing about the fix. :func:`explain_loop_binding_error`
recognises it and names the model class and the fix instead. It is a pure
function of the exception: the model class is found in the traceback (the
``self`` of the chat model's own frames).
"""

from __future__ import annotations

from collections.abc import Iterator

from langchain_core.language_models import BaseChatModel

from .._errors import ModelBindingError
from ._registry import find_binder

#: Texts of the RuntimeErrors asyncio raises for an object of another loop.
LOOP_BINDING_TEXTS = (
    "Event loop is closed",
    "attached to a different loop",
    "bound to a different event loop",
)
DOC_SECTION = "docs/models.md ('Real models on many loops' in the README)"
_MAX_CHAIN = 32


def explain_loop_binding_error(exc: BaseException) -> ModelBindingError | None:
    """A :class:`ModelBindingError` explaining ``exc`` if it (or an exception in its
    ``__cause__`` / ``__context__`` chain) comes from a client bound to another
    event loop; None for anything else."""
    if isinstance(exc, ModelBindingError):
        return None
    chain = list(_chain(exc))
    bound = next((e for e in chain if any(text in str(e) for text in LOOP_BINDING_TEXTS)), None)
    if bound is None:
        return None
    model_class = _model_class(chain)
    name = model_class.__name__ if model_class is not None else "the chat model"
    seen = f"{type(bound).__name__}: {bound}"
    if exc is not bound:
        seen = f"{type(exc).__name__}: {exc}, caused by {seen}"
    if model_class is not None and find_binder(model_class) is not None:
        fix = (
            f"A binder is registered for {name}, yet this call reused a client of another "
            "loop: a model factory that returns one shared instance, or a model carrying "
            "a client made outside this run, defeats it. Build the model (and any client "
            f"it holds) inside the factory. See {DOC_SECTION}."
        )
    else:
        target = name if model_class is not None else "YourChatModel"
        fix = (
            "Fix: give each run its own client with "
            f"subagent_exec.register_model_binder({target}, binder), where binder(model) "
            "returns (a copy of the model holding a new async client, an async close), or "
            f"build the model and its client in a factory. See {DOC_SECTION}."
        )
    message = (
        f"{name} made a call with an HTTP client bound to another event loop ({seen}). "
        "Each sub-agent runs on its own event loop, so a client cached across runs "
        f"cannot be used by the next run. {fix}"
    )
    error = ModelBindingError(message)
    error.__cause__ = exc
    return error


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending and len(seen) < _MAX_CHAIN:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)


def _model_class(chain: list[BaseException]) -> type[BaseChatModel] | None:
    """The class of the chat model whose frames the failure went through."""
    for exc in chain:
        tb = exc.__traceback__
        while tb is not None:
            candidate = tb.tb_frame.f_locals.get("self")
            if isinstance(candidate, BaseChatModel):
                return type(candidate)
            tb = tb.tb_next
    return None
