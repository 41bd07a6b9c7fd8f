"""``RuntimeOptions``: the validated options of a ``SubagentRuntime``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ._checks import check_int, check_number, check_text
from ._usage import check_price_table


@dataclass(frozen=True)
class RuntimeOptions:
    """Limits and policies of one runtime (see ``SubagentRuntime`` for each)."""

    max_workers: int = 8
    max_pending: int | None = None
    max_depth: int = 3
    retain_max: int = 1000
    retain_ttl_seconds: float | None = None
    cancel_grace_seconds: float = 0.0
    cleanup_timeout_seconds: float = 10.0
    name: str = "subagent"
    #: Model name -> (input, output) price per million tokens (read-only copy).
    price_table: Mapping[str, tuple[float, float]] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        owner = "SubagentRuntime"
        check_int(owner, "max_workers", self.max_workers, minimum=1)
        if self.max_pending is not None:
            check_int(owner, "max_pending", self.max_pending, minimum=0)
        check_int(owner, "max_depth", self.max_depth, minimum=1)
        check_int(owner, "retain_max", self.retain_max, minimum=0)
        if self.retain_ttl_seconds is not None:
            check_number(
                owner, "retain_ttl_seconds", self.retain_ttl_seconds, positive=True, finite=True
            )
        # Finite: an infinite grace would mean a stop never interrupts, an
        # infinite cleanup limit that a stuck finally: holds its worker forever.
        check_number(
            owner, "cancel_grace_seconds", self.cancel_grace_seconds, positive=False, finite=True
        )
        check_number(
            owner,
            "cleanup_timeout_seconds",
            self.cleanup_timeout_seconds,
            positive=True,
            finite=True,
        )
        check_text(owner, "name", self.name)
        object.__setattr__(
            self, "price_table", check_price_table(owner, "price_table", self.price_table)
        )
        for name in ("retain_ttl_seconds", "cancel_grace_seconds", "cleanup_timeout_seconds"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, float(value))
