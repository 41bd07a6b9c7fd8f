"""What model calls used: the :class:`Usage` record, made from an AI message's
``usage_metadata``, and what it cost, from a price table.

A price table maps a model name to ``(price per million input tokens, price
per million output tokens)``, in whatever currency the caller uses. Nothing is
looked up over the network: a model missing from the table has an unknown
cost (``None``), never a guessed one.

Model names are matched leniently, because providers report names that carry
more than what users configure: ``"openai:gpt-4o-mini"`` (an
``init_chat_model`` string) and ``"gpt-4o-mini-2024-07-18"`` (a dated
snapshot) both find a ``"gpt-4o-mini"`` entry. Only a provider prefix and a
trailing date or ``-latest`` are ever stripped, never an arbitrary suffix:
``"gpt-4o-mini"`` does not match a ``"gpt-4o"`` entry.

Token counts follow LangChain's convention: ``input_tokens`` includes cached
input (``input_token_details["cache_read"]``), and cost charges all input at
the input price (an upper bound when a provider discounts cache reads).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeAlias

#: Model name -> (price per million input tokens, price per million output tokens).
PriceTable: TypeAlias = Mapping[str, tuple[float, float]]

#: A trailing snapshot date or alias a provider adds to a configured name.
_SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|latest)$")

#: The keys of an ``ai_messages`` record's ``usage_metadata`` that hold counts.
_COUNTS = ("input_tokens", "output_tokens", "total_tokens")


def check_price_table(owner: str, name: str, table: object) -> PriceTable | None:
    """None, or a read-only copy of a valid price table: non-empty string keys,
    each mapped to two finite numbers >= 0."""
    if table is None:
        return None
    what = (
        "a dict of model name -> (input price, output price) per million tokens, "
        "each a finite number >= 0"
    )
    if not isinstance(table, Mapping):
        raise TypeError(f"{owner}.{name} must be {what}, got {table!r}")
    checked: dict[str, tuple[float, float]] = {}
    for model, prices in table.items():
        if not isinstance(model, str):
            raise TypeError(f"{owner}.{name} keys must be model names (strings), got {model!r}")
        if not model.strip():
            raise ValueError(f"{owner}.{name} keys must be non-empty model names, got {model!r}")
        if not isinstance(prices, tuple | list) or len(prices) != 2:
            raise TypeError(f"{owner}.{name}[{model!r}] must be (input price, output price), "
                            f"got {prices!r}")
        pair: list[float] = []
        for price in prices:
            if isinstance(price, bool) or not isinstance(price, int | float):
                raise TypeError(f"{owner}.{name}[{model!r}] must hold numbers, got {prices!r}")
            if not (price >= 0 and math.isfinite(price)):  # NaN fails too
                raise ValueError(
                    f"{owner}.{name}[{model!r}] prices must be finite numbers >= 0, got {prices!r}"
                )
            pair.append(float(price))
        checked[model.strip()] = (pair[0], pair[1])
    return MappingProxyType(checked)


def name_candidates(model_name: str) -> list[str]:
    """The names a model may be listed under, most specific first."""
    name = model_name.strip()
    found = [name]
    if ":" in name:  # "openai:gpt-4o-mini" (init_chat_model)
        found.append(name.split(":", 1)[1])
    for candidate in list(found):
        stripped = _SNAPSHOT.sub("", candidate)
        if stripped != candidate and stripped:
            found.append(stripped)
    return found


def price_of(table: PriceTable | None, model_name: str | None) -> tuple[float, float] | None:
    """The prices of ``model_name`` in ``table`` (see the module docstring), or None."""
    if not table or not model_name:
        return None
    for candidate in name_candidates(model_name):
        prices = table.get(candidate)
        if prices is not None:
            return prices
    return None


@dataclass(frozen=True)
class Usage:
    """What some model calls used. Add records with ``+``.

    ``cost`` is in the price table's currency; it is None as soon as one of
    the calls has no known cost (its model is not in the price table, or it
    reported no usage). ``usage_reported`` is False when some call's model
    reported no usage: those calls count in ``model_calls`` only.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    #: Input tokens served from the provider's cache (included in ``input_tokens``).
    cache_read_tokens: int = 0
    model_calls: int = 0
    #: Model calls whose model reported no usage (no token counts).
    unreported_calls: int = 0
    #: The summed cost of the calls whose cost is known.
    priced_cost: float = 0.0
    #: Model calls whose cost is not known (no price, or no usage reported).
    unpriced_calls: int = 0

    @property
    def cost(self) -> float | None:
        """The total cost, or None when some call's cost is not known."""
        return None if self.unpriced_calls else self.priced_cost

    @property
    def usage_reported(self) -> bool:
        """Whether every call's model reported its token usage."""
        return self.unreported_calls == 0

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            model_calls=self.model_calls + other.model_calls,
            unreported_calls=self.unreported_calls + other.unreported_calls,
            priced_cost=self.priced_cost + other.priced_cost,
            unpriced_calls=self.unpriced_calls + other.unpriced_calls,
        )

    def summary(self) -> str:
        """In words: ``"1500 tokens (1200 in, 300 out) in 3 model calls, cost 0.00036"``."""
        calls = f"{self.model_calls} model call{'s' if self.model_calls != 1 else ''}"
        text = (
            f"{self.total_tokens} tokens ({self.input_tokens} in, {self.output_tokens} out) "
            f"in {calls}"
        )
        if self.unreported_calls:
            text += f" ({self.unreported_calls} reported no usage)"
        cost = self.cost
        return text + (f", cost {cost:.4g}" if cost is not None else ", cost unknown")

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form (events, ``GET /tasks/{id}``, the page)."""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "model_calls": self.model_calls,
            "cost": self.cost,
            "usage_reported": self.usage_reported,
            "unreported_calls": self.unreported_calls,
        }

    def to_record(self) -> dict[str, Any]:
        """``to_dict()`` and what it derives ``cost`` from, so ``from_dict``
        reads it back exactly (what a task store keeps)."""
        return {**self.to_dict(), "priced_cost": self.priced_cost,
                "unpriced_calls": self.unpriced_calls}

    @classmethod
    def stored(cls, data: Mapping[str, Any] | None) -> tuple[Usage, Usage]:
        """A task's own and tree usage from what a store keeps of it: the own
        ``to_record()`` with the subtree's under ``"tree"`` (no usage: none)."""
        if not data:
            return NO_USAGE, NO_USAGE
        return cls.from_dict(data), cls.from_dict(data.get("tree") or data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        """A ``to_record()`` (read back from a task store), or a ``to_dict()``
        (where a cost is unknown, its known part is then lost)."""
        calls = int(data.get("model_calls", 0))
        cost = data.get("cost")
        return cls(
            input_tokens=int(data.get("input_tokens", 0)),
            output_tokens=int(data.get("output_tokens", 0)),
            total_tokens=int(data.get("total_tokens", 0)),
            cache_read_tokens=int(data.get("cache_read_tokens", 0)),
            model_calls=calls,
            unreported_calls=int(data.get("unreported_calls", 0)),
            priced_cost=float(data.get("priced_cost", cost or 0.0)),
            unpriced_calls=int(data.get("unpriced_calls", calls if cost is None else 0)),
        )

    @classmethod
    def of_call(
        cls,
        usage_metadata: Mapping[str, Any] | None,
        *,
        model_name: str | None = None,
        prices: PriceTable | None = None,
    ) -> Usage:
        """One model call, from its AI message's ``usage_metadata`` (None: the
        model reported none) and the price of ``model_name`` in ``prices``."""
        if not isinstance(usage_metadata, Mapping):
            return cls(model_calls=1, unreported_calls=1, unpriced_calls=1)
        input_tokens, output_tokens, total = (_count(usage_metadata.get(k)) for k in _COUNTS)
        if total is None:
            total = (input_tokens or 0) + (output_tokens or 0)
        details = usage_metadata.get("input_token_details")
        cache_read = _count(details.get("cache_read")) if isinstance(details, Mapping) else None
        price = price_of(prices, model_name)
        cost = 0.0
        if price is not None:
            cost = ((input_tokens or 0) * price[0] + (output_tokens or 0) * price[1]) / 1e6
        return cls(
            input_tokens=input_tokens or 0,
            output_tokens=output_tokens or 0,
            total_tokens=total,
            cache_read_tokens=cache_read or 0,
            model_calls=1,
            priced_cost=cost,
            unpriced_calls=0 if price is not None else 1,
        )

    @classmethod
    def of_record(cls, record: Mapping[str, Any], prices: PriceTable | None = None) -> Usage:
        """One model call, from an ``ai_messages`` record (``_run.message_record``):
        its ``usage_metadata`` and the ``model_name`` that answered."""
        model_name = record.get("model_name")
        return cls.of_call(
            record.get("usage_metadata"),
            model_name=model_name if isinstance(model_name, str) else None,
            prices=prices,
        )


#: Nothing used yet.
NO_USAGE = Usage()


def _count(value: object) -> int | None:
    """A token count as reported: an int >= 0 (a float with an integral value
    is accepted); anything else is treated as not reported."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    return None
