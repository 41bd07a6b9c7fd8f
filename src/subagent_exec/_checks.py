"""Argument checks, with one rule everywhere: a wrong type raises ``TypeError``,
a wrong value raises ``ValueError``, and both name the argument (``owner.name``)
and say what is allowed."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any


def check_int(owner: str, name: str, value: object, *, minimum: int) -> int:
    """An ``int`` (not a bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}.{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{owner}.{name} must be an int >= {minimum}, got {value!r}")
    return value


def check_number(
    owner: str, name: str, value: object, *, positive: bool, finite: bool = False
) -> float:
    """A real number (int or float, not a bool, never NaN), ``> 0`` with
    ``positive`` else ``>= 0``; with ``finite``, infinity is refused too."""
    bound = "> 0" if positive else ">= 0"
    what = f"a finite number {bound}" if finite else f"a number {bound}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{owner}.{name} must be {what}, got {value!r}")
    number = float(value)
    in_range = number > 0 if positive else number >= 0  # NaN fails both
    if not in_range or (finite and math.isinf(number)):
        raise ValueError(f"{owner}.{name} must be {what}, got {value!r}")
    return number


def check_text(owner: str, name: str, value: object) -> str:
    """A string with something other than whitespace in it."""
    if not isinstance(value, str):
        raise TypeError(f"{owner}.{name} must be a non-empty string, got {value!r}")
    if not value.strip():
        raise ValueError(f"{owner}.{name} must be a non-empty string, got {value!r}")
    return value


def check_callable(owner: str, name: str, value: object) -> Callable[..., Any]:
    if not callable(value):
        raise TypeError(f"{owner}.{name} must be callable, got {value!r}")
    return value


def check_task_id(owner: str, name: str, value: object) -> str:
    """A task id to look up: any string (an unknown one is simply not found)."""
    if not isinstance(value, str):
        raise TypeError(f"{owner}.{name} must be a task id (a string), got {value!r}")
    return value


def check_optional_text(owner: str, name: str, value: object) -> str | None:
    """None, or a string with something other than whitespace in it."""
    if value is None:
        return None
    return check_text(owner, name, value)
