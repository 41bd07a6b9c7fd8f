"""Argument checks and the listing filter shared by the stores."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import EllipsisType
from typing import Any

from .._checks import check_int, check_number, check_optional_text
from .._status import status_filter


def check_retention(owner: str, max_tasks: object, max_age_days: object) -> None:
    """``max_tasks``: an int >= 0 or None; ``max_age_days``: a finite number > 0 or None."""
    if max_tasks is not None:
        check_int(owner, "max_tasks", max_tasks, minimum=0)
    if max_age_days is not None:
        check_number(owner, "max_age_days", max_age_days, positive=True, finite=True)


def statuses_wanted(statuses: Iterable[Any] | str | None) -> frozenset[str] | None:
    """The status values asked for (None: any), checked like ``list_tasks``."""
    wanted = status_filter(statuses)
    return None if wanted is None else frozenset(s.value for s in wanted)


class Query:
    """The filters of one ``list_tasks`` call, checked, and applied to a record."""

    def __init__(
        self,
        owner_name: str,
        *,
        parent_id: object,
        statuses: Any,
        owner: object,
        root: object,
        thread_id: object,
    ) -> None:
        check_optional_text(owner_name, "parent_id", parent_id)
        check_optional_text(owner_name, "thread_id", thread_id)
        if owner is not ... and owner is not None and not isinstance(owner, str):
            raise TypeError(f"{owner_name}.owner must be a string, None or ... (any owner), "
                            f"got {owner!r}")
        if root is not None and not isinstance(root, bool):
            raise TypeError(f"{owner_name}.root must be True, False or None, got {root!r}")
        self.parent_id: str | None = parent_id  # type: ignore[assignment]
        self.statuses = statuses_wanted(statuses)
        self.owner: str | EllipsisType | None = owner
        self.root: bool | None = root
        self.thread_id: str | None = thread_id  # type: ignore[assignment]

    def matches(self, record: Mapping[str, Any]) -> bool:
        parent = record.get("parent_id")
        return not (
            (self.parent_id is not None and parent != self.parent_id)
            or (self.statuses is not None and record.get("status") not in self.statuses)
            or (self.owner is not ... and record.get("owner") != self.owner)
            or (self.root is not None and (parent is None) != self.root)
            or (self.thread_id is not None and record.get("thread_id") != self.thread_id)
        )
