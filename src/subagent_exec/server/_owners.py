"""Who may see what: the owner a request acts as, and whether a task is theirs."""

from __future__ import annotations

from .._result import SubagentResult


def checked_owner(owner: object) -> str | None:
    if owner is not None and not isinstance(owner, str):
        # A host bug, not a client error: fail loudly in the server log.
        raise TypeError(
            f"the owner dependency must return a str or None, got {type(owner).__name__}"
        )
    return owner


def visible(holder: SubagentResult | None, owner: str | None) -> bool:
    return holder is not None and holder.owner == owner
