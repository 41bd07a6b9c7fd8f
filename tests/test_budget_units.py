"""Budgets as data: ``Budget`` validation, price tables, ``Usage`` records made
from ``usage_metadata``, and the meter (charges, warnings, overruns, the
entry check, the ``max_seconds`` clock), without any runtime."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from subagent_exec import Budget, BudgetExceeded, UnpricedModelError, Usage
from subagent_exec._budget import BudgetWarning, Overrun, figure
from subagent_exec._meter import COMPACT_AFTER, BudgetClock, BudgetMeter
from subagent_exec._usage import check_price_table, name_candidates, price_of

# -- Budget ------------------------------------------------------------------------------


def test_budget_keeps_its_limits_and_is_frozen() -> None:
    budget = Budget(max_tokens=1000, max_model_calls=5, max_cost=0.5, max_seconds=30)
    assert (budget.max_tokens, budget.max_model_calls, budget.max_cost, budget.max_seconds) == (
        1000, 5, 0.5, 30.0,
    )
    assert budget.warn_at == 0.8
    with pytest.raises(AttributeError):
        budget.max_tokens = 5  # type: ignore[misc]
    assert Budget(max_tokens=10, warn_at=None).warn_at is None
    assert budget.to_dict() == {
        "max_tokens": 1000, "max_model_calls": 5, "max_cost": 0.5, "max_seconds": 30.0,
        "warn_at": 0.8,
    }


def test_equal_budgets_hash_alike() -> None:
    assert hash(Budget(max_tokens=10)) == hash(Budget(max_tokens=10))
    assert Budget(max_tokens=10) == Budget(max_tokens=10)
    assert Budget(max_tokens=10) != Budget(max_tokens=11)


@pytest.mark.parametrize(
    ("kwargs", "error", "names"),
    [
        ({}, ValueError, "at least one limit"),
        ({"max_tokens": 0}, ValueError, "Budget.max_tokens"),
        ({"max_tokens": -5}, ValueError, "Budget.max_tokens"),
        ({"max_tokens": 1.5}, TypeError, "Budget.max_tokens"),
        ({"max_tokens": True}, TypeError, "Budget.max_tokens"),
        ({"max_tokens": "100"}, TypeError, "Budget.max_tokens"),
        ({"max_model_calls": 0}, ValueError, "Budget.max_model_calls"),
        ({"max_model_calls": 2.0}, TypeError, "Budget.max_model_calls"),
        ({"max_cost": 0}, ValueError, "Budget.max_cost"),
        ({"max_cost": -1.0}, ValueError, "Budget.max_cost"),
        ({"max_cost": math.nan}, ValueError, "Budget.max_cost"),
        ({"max_cost": math.inf}, ValueError, "Budget.max_cost"),
        ({"max_cost": "1"}, TypeError, "Budget.max_cost"),
        ({"max_seconds": 0}, ValueError, "Budget.max_seconds"),
        ({"max_seconds": math.inf}, ValueError, "Budget.max_seconds"),
        ({"max_tokens": 10, "warn_at": 0}, ValueError, "Budget.warn_at"),
        ({"max_tokens": 10, "warn_at": 1}, ValueError, "Budget.warn_at"),
        ({"max_tokens": 10, "warn_at": 1.5}, ValueError, "Budget.warn_at"),
        ({"max_tokens": 10, "warn_at": math.nan}, ValueError, "Budget.warn_at"),
        ({"max_tokens": 10, "warn_at": "0.5"}, TypeError, "Budget.warn_at"),
        ({"max_tokens": 10, "warn_at": True}, TypeError, "Budget.warn_at"),
        ({"max_tokens": 10, "price_table": [("m", (1, 2))]}, TypeError, "Budget.price_table"),
    ],
)
def test_bad_budgets_are_refused_naming_the_argument(
    kwargs: dict[str, Any], error: type[Exception], names: str
) -> None:
    with pytest.raises(error, match=names):
        Budget(**kwargs)


def test_budget_limit_by_name() -> None:
    budget = Budget(max_cost=2.0)
    assert budget.limit("max_cost") == 2.0
    assert budget.limit("max_tokens") is None
    with pytest.raises(ValueError, match="max_tokens"):
        budget.limit("tokens")


def test_budget_prices_override_the_runtime_table_entry_by_entry() -> None:
    budget = Budget(max_cost=1.0, price_table={"a": (1, 2)})
    assert dict(budget.prices({"a": (9, 9), "b": (3, 4)}) or {}) == {
        "a": (1.0, 2.0), "b": (3, 4),
    }
    assert dict(budget.prices(None) or {}) == {"a": (1.0, 2.0)}
    assert Budget(max_cost=1.0).prices({"b": (3, 4)}) == {"b": (3, 4)}


# -- price tables ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ("gpt", TypeError),
        ({1: (1, 2)}, TypeError),
        ({" ": (1, 2)}, ValueError),
        ({"m": 1.0}, TypeError),
        ({"m": (1.0,)}, TypeError),
        ({"m": (1.0, 2.0, 3.0)}, TypeError),
        ({"m": (1.0, "2")}, TypeError),
        ({"m": (1.0, True)}, TypeError),
        ({"m": (-1.0, 2.0)}, ValueError),
        ({"m": (1.0, math.nan)}, ValueError),
        ({"m": (1.0, math.inf)}, ValueError),
    ],
)
def test_bad_price_tables_are_refused(table: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"SubagentRuntime\.price_table"):
        check_price_table("SubagentRuntime", "price_table", table)


def test_a_price_table_is_copied_read_only() -> None:
    given_table = {"m": [1, 2]}
    checked = check_price_table("Budget", "price_table", given_table)
    assert checked == {"m": (1.0, 2.0)}
    given_table["m"] = [5, 5]
    assert checked is not None and checked["m"] == (1.0, 2.0)
    with pytest.raises(TypeError):
        checked["x"] = (1.0, 1.0)  # type: ignore[index]


@pytest.mark.parametrize(
    ("reported", "found"),
    [
        ("gpt-4o-mini", (0.15, 0.6)),
        ("openai:gpt-4o-mini", (0.15, 0.6)),
        ("gpt-4o-mini-2024-07-18", (0.15, 0.6)),
        ("openai:gpt-4o-mini-2024-07-18", (0.15, 0.6)),
        ("claude-3-5-haiku-20241022", (0.8, 4.0)),
        ("claude-3-5-haiku-latest", (0.8, 4.0)),
        ("gpt-4o", (2.5, 10.0)),
        ("gpt-4o-2024-08-06", (2.5, 10.0)),
        # Never an arbitrary suffix: a mini model is not priced as its big brother.
        ("gpt-4o-mini-tts", None),
        ("gpt-4", None),
        ("o3", None),
        ("", None),
        (None, None),
    ],
)
def test_prices_are_found_by_name_snapshot_and_provider_prefix(
    reported: str | None, found: tuple[float, float] | None
) -> None:
    table = check_price_table(
        "t", "price_table",
        {"gpt-4o-mini": (0.15, 0.6), "gpt-4o": (2.5, 10), "claude-3-5-haiku": (0.8, 4)},
    )
    assert price_of(table, reported) == found


def test_the_most_specific_name_wins() -> None:
    table = {"gpt-4o-mini-2024-07-18": (1.0, 1.0), "gpt-4o-mini": (2.0, 2.0)}
    assert price_of(table, "gpt-4o-mini-2024-07-18") == (1.0, 1.0)
    assert name_candidates("openai:gpt-4o-2024-08-06") == [
        "openai:gpt-4o-2024-08-06", "gpt-4o-2024-08-06", "openai:gpt-4o", "gpt-4o",
    ]


# -- Usage -----------------------------------------------------------------------------------


def test_usage_of_a_call_that_reports_usage() -> None:
    metadata = {
        "input_tokens": 1200, "output_tokens": 300, "total_tokens": 1500,
        "input_token_details": {"cache_read": 1000},
    }
    usage = Usage.of_call(metadata, model_name="gpt-4o-mini", prices={"gpt-4o-mini": (0.15, 0.6)})
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (1200, 300, 1500)
    assert usage.cache_read_tokens == 1000
    assert usage.model_calls == 1
    assert usage.usage_reported
    assert usage.cost == pytest.approx((1200 * 0.15 + 300 * 0.6) / 1e6)
    assert usage.to_dict() == {
        "input_tokens": 1200, "output_tokens": 300, "total_tokens": 1500,
        "cache_read_tokens": 1000, "model_calls": 1, "cost": usage.cost,
        "usage_reported": True, "unreported_calls": 0,
    }


def test_a_call_without_usage_counts_as_a_call_and_says_so() -> None:
    usage = Usage.of_call(None, model_name="m", prices={"m": (1, 1)})
    assert (usage.model_calls, usage.total_tokens, usage.input_tokens) == (1, 0, 0)
    assert not usage.usage_reported
    assert usage.cost is None  # its tokens, hence its cost, are not known
    assert usage.to_dict()["usage_reported"] is False


def test_a_call_of_an_unpriced_model_has_an_unknown_cost() -> None:
    metadata = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
    assert Usage.of_call(metadata, model_name="m", prices=None).cost is None
    assert Usage.of_call(metadata, model_name="m", prices={"other": (1, 1)}).cost is None
    assert Usage.of_call(metadata, model_name=None, prices={"m": (1, 1)}).cost is None
    assert Usage.of_call(metadata, model_name="m", prices={"m": (1, 1)}).cost == pytest.approx(
        15 / 1e6
    )


def test_malformed_counts_are_treated_as_not_reported() -> None:
    usage = Usage.of_call(
        {"input_tokens": "12", "output_tokens": -3, "total_tokens": None,
         "input_token_details": {"cache_read": True}}
    )
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (0, 0, 0)
    assert usage.cache_read_tokens == 0
    # A missing total is the sum of what was reported; integral floats count.
    usage = Usage.of_call({"input_tokens": 7.0, "output_tokens": 3})
    assert usage.total_tokens == 10


def test_usage_of_a_record_uses_its_model_name() -> None:
    record = {"usage_metadata": {"input_tokens": 1_000_000, "output_tokens": 0,
                                 "total_tokens": 1_000_000}, "model_name": "m-20240101"}
    assert Usage.of_record(record, {"m": (2.0, 8.0)}).cost == pytest.approx(2.0)
    assert Usage.of_record({"usage_metadata": None}).model_calls == 1


counts = st.integers(min_value=0, max_value=10**7)
metadata_st = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {"input_tokens": counts, "output_tokens": counts},
        optional={"input_token_details": st.fixed_dictionaries({"cache_read": counts})},
    ),
)


@given(calls=st.lists(st.tuples(metadata_st, st.sampled_from(["a", "b", "x"])), max_size=30))
def test_usage_sums_are_field_wise_and_cost_is_unknown_iff_one_call_is(
    calls: list[tuple[dict[str, Any] | None, str]],
) -> None:
    prices = {"a": (1.0, 2.0), "b": (0.5, 0.25)}
    records = [Usage.of_call(m, model_name=name, prices=prices) for m, name in calls]
    total = sum(records, Usage())
    assert total.model_calls == len(calls)
    assert total.input_tokens == sum(m["input_tokens"] for m, _ in calls if m)
    assert total.total_tokens == sum(m["input_tokens"] + m["output_tokens"] for m, _ in calls if m)
    assert total.unreported_calls == sum(1 for m, _ in calls if m is None)
    assert total.usage_reported == all(m is not None for m, _ in calls)
    unknown = any(m is None or name == "x" for m, name in calls)
    assert (total.cost is None) == unknown
    if not unknown:
        expected = sum(
            (m["input_tokens"] * prices[n][0] + m["output_tokens"] * prices[n][1]) / 1e6
            for m, n in calls if m
        )
        assert total.cost == pytest.approx(expected)


@given(st.lists(metadata_st, min_size=3, max_size=3))
def test_adding_usage_is_associative_and_commutative(metas: list[Any]) -> None:
    a, b, c = (Usage.of_call(m, model_name="a", prices={"a": (1, 1)}) for m in metas)
    left, right = (a + b) + c, a + (b + c)
    assert left.model_calls == right.model_calls and left.total_tokens == right.total_tokens
    assert left.priced_cost == pytest.approx(right.priced_cost)
    assert (a + b) == (b + a) or (a + b).priced_cost == pytest.approx((b + a).priced_cost)


@given(calls=st.lists(st.tuples(metadata_st, st.sampled_from(["a", "x"])), max_size=10))
def test_a_stored_usage_reads_back_exactly(calls: list[tuple[dict[str, Any] | None, str]]) -> None:
    total = sum((Usage.of_call(m, model_name=n, prices={"a": (1.0, 2.0)}) for m, n in calls),
                Usage())
    assert Usage.from_dict(total.to_record()) == total
    # A to_dict() (events, HTTP) reads back too; an unknown cost stays unknown.
    again = Usage.from_dict(total.to_dict())
    assert again.total_tokens == total.total_tokens and again.model_calls == total.model_calls
    assert (again.cost is None) == (total.cost is None)


def test_adding_something_else_is_refused() -> None:
    with pytest.raises(TypeError):
        Usage() + 5  # type: ignore[operator]


# -- what a spent budget says -----------------------------------------------------------------


def test_an_overrun_reads_limit_used_allowed_and_whose_budget() -> None:
    overrun = Overrun("max_tokens", 1234, 1000, "lead run run-1")
    assert overrun.figures == "max_tokens 1234/1000"
    assert overrun.error == "BudgetExceeded: max_tokens 1234/1000 (budget of lead run run-1)"
    assert str(BudgetExceeded(overrun.message)) == overrun.message
    assert Overrun("max_cost", 0.0123456, 0.01, "x").figures == "max_cost 0.01235/0.01"
    assert figure(3.0) == "3" and figure(2.5) == "2.5"


def test_a_warning_note_names_the_limit_in_words() -> None:
    note = BudgetWarning("max_tokens", 800, 1000, 0.8, "task t").note
    assert note == "You have used 80% of your token budget: finish with what you have."
    assert "model-call budget" in BudgetWarning("max_model_calls", 4, 5, 0.8, "t").note
    assert "time budget" in BudgetWarning("max_seconds", 8, 10, 0.8, "t").note
    assert "cost budget" in BudgetWarning("max_cost", 1, 1, 0.5, "t").to_dict()["note"]


# -- the meter --------------------------------------------------------------------------------


def _tokens(n: int) -> Usage:
    return Usage.of_call({"input_tokens": n, "output_tokens": 0, "total_tokens": n})


def test_a_charge_that_passes_a_limit_spends_the_budget_once() -> None:
    meter = BudgetMeter(Budget(max_tokens=100, warn_at=None), label="task t")
    assert meter.charge(_tokens(60)).overrun is None
    charged = meter.charge(_tokens(50))
    assert charged.overrun == Overrun("max_tokens", 110, 100, "task t")
    assert charged.usage.total_tokens == 110
    assert meter.spent == charged.overrun
    later = meter.charge(_tokens(10))
    assert later.overrun is None  # reported once; the meter still counts
    assert later.usage.total_tokens == 120
    assert meter.refuse() == charged.overrun  # the first overrun stays the reason


def test_landing_exactly_on_a_limit_is_not_an_overrun_but_refuses_the_next_call() -> None:
    meter = BudgetMeter(Budget(max_model_calls=2, warn_at=None), label="lead run r")
    assert meter.refuse() is None
    assert meter.charge(_tokens(1)).overrun is None
    assert meter.refuse() is None
    assert meter.charge(_tokens(1)).overrun is None  # the 2nd call of 2: fine
    assert meter.spent is None
    assert meter.exhausted() == Overrun("max_model_calls", 2, 2, "lead run r")
    assert meter.spent is None  # exhausted() spends nothing
    refused = meter.refuse()  # a 3rd call is asked for: now it is spent
    assert refused == Overrun("max_model_calls", 2, 2, "lead run r")
    assert meter.spent == refused


def test_cost_limits_count_priced_calls() -> None:
    meter = BudgetMeter(
        Budget(max_cost=1.0, warn_at=None), label="t", prices={"m": (1_000_000.0, 0.0)}
    )
    one_dollar = Usage.of_call({"input_tokens": 1, "output_tokens": 0}, model_name="m",
                               prices=meter.prices)
    assert meter.charge(one_dollar).overrun is None
    assert meter.charge(one_dollar).overrun == Overrun("max_cost", 2.0, 1.0, "t")


def test_check_model_refuses_unpriced_models_only_for_cost_budgets() -> None:
    meter = BudgetMeter(Budget(max_cost=1.0), label="task t", prices={"gpt-4o-mini": (1, 1)})
    meter.check_model("gpt-4o-mini-2024-07-18")
    meter.check_model("openai:gpt-4o-mini")
    with pytest.raises(UnpricedModelError, match=r"'gpt-4o': it has no price") as err:
        meter.check_model("gpt-4o")
    assert isinstance(err.value, ValueError)
    assert "budget of task t" in str(err.value)
    BudgetMeter(Budget(max_tokens=5), label="t").check_model("anything")  # no max_cost


def test_a_call_of_an_unpriced_model_spends_a_cost_budget() -> None:
    meter = BudgetMeter(Budget(max_cost=1.0), label="task t", prices={"m": (1, 1)})
    assert meter.refuse_model("m") is None
    assert meter.spent is None
    overrun = meter.refuse_model("other")
    assert overrun is not None and meter.spent is overrun
    assert overrun.error.startswith("UnpricedModelError: max_cost=1 cannot count calls of model "
                                    "'other'")
    assert overrun.error.endswith("(budget of task t)")
    assert meter.refuse_model(None) is overrun  # the first reason stays
    nameless = BudgetMeter(Budget(max_cost=1.0), label="t", prices={"m": (1, 1)})
    spent = nameless.refuse_model(None)
    assert spent is not None and "did not say its name" in spent.message
    assert BudgetMeter(Budget(max_tokens=3), label="t").refuse_model("x") is None


def test_warnings_come_once_per_limit() -> None:
    meter = BudgetMeter(Budget(max_tokens=100, max_model_calls=10, warn_at=0.5), label="t")
    assert meter.charge(_tokens(40)).warnings == ()
    first = meter.charge(_tokens(10)).warnings
    assert [w.limit for w in first] == ["max_tokens"]
    assert first[0].used == 50 and first[0].allowed == 100
    assert meter.charge(_tokens(10)).warnings == ()
    assert meter.charge(_tokens(1)).warnings == ()  # the 4th call of 10
    assert [w.limit for w in meter.charge(_tokens(1)).warnings] == ["max_model_calls"]
    assert meter.charge(_tokens(1)).warnings == ()


def test_no_warning_without_warn_at() -> None:
    meter = BudgetMeter(Budget(max_tokens=10, warn_at=None), label="t")
    assert meter.charge(_tokens(9)).warnings == ()


@settings(max_examples=200)
@given(
    charges=st.lists(st.integers(min_value=0, max_value=60), max_size=25),
    limit=st.integers(min_value=1, max_value=500),
    warn_at=st.one_of(st.none(), st.floats(min_value=0.01, max_value=0.99)),
)
def test_a_meter_reports_each_crossing_exactly_once(
    charges: list[int], limit: int, warn_at: float | None
) -> None:
    meter = BudgetMeter(Budget(max_tokens=limit, warn_at=warn_at), label="t")
    results = [meter.charge(_tokens(n)) for n in charges]
    used = sum(charges)
    overruns = [r.overrun for r in results if r.overrun is not None]
    warnings = [w for r in results for w in r.warnings]
    assert len(overruns) == (1 if used > limit else 0)
    if overruns:  # the charge that first passed the limit reports it
        running, first = 0, None
        for index, n in enumerate(charges):
            running += n
            if running > limit:
                first = index
                break
        assert results[first].overrun is overruns[0]  # type: ignore[index]
    expected_warning = warn_at is not None and used >= warn_at * limit
    assert len(warnings) == (1 if expected_warning else 0)
    assert meter.usage.total_tokens == used
    assert (meter.refuse() is not None) == (used >= limit)


def test_charges_from_many_threads_add_up_and_spend_once() -> None:
    meter = BudgetMeter(Budget(max_tokens=5_000, warn_at=0.5), label="t")
    overruns: list[Overrun] = []
    warnings: list[BudgetWarning] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def work() -> None:
        start.wait()
        for _ in range(1000):
            charged = meter.charge(_tokens(1))
            with lock:
                warnings.extend(charged.warnings)
                if charged.overrun is not None:
                    overruns.append(charged.overrun)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert meter.usage.total_tokens == 8000
    assert meter.usage.model_calls == 8000
    assert len(overruns) == 1 and overruns[0].used == 5001
    assert len(warnings) == 1 and warnings[0].used == 2500


def test_remaining_is_what_is_left_of_each_limit() -> None:
    clock = [100.0]
    meter = BudgetMeter(
        Budget(max_tokens=100, max_seconds=10), label="t", now=lambda: clock[0]
    )
    meter.charge(_tokens(30))
    clock[0] += 4
    assert meter.remaining() == {
        "max_tokens": 70, "max_model_calls": None, "max_cost": None, "max_seconds": 6.0,
    }
    meter.charge(_tokens(500))
    clock[0] += 40
    assert meter.remaining()["max_tokens"] == 0 and meter.remaining()["max_seconds"] == 0


def test_a_passed_deadline_refuses_the_next_call() -> None:
    clock = [0.0]
    meter = BudgetMeter(Budget(max_seconds=5), label="t", now=lambda: clock[0])
    assert meter.refuse() is None
    clock[0] = 5.5
    refused = meter.refuse()
    assert refused is not None and refused.limit == "max_seconds"
    assert refused.figures == "max_seconds 5.5/5"


# -- the clock ------------------------------------------------------------------------------


def test_the_clock_calls_in_time_order_and_skips_cancelled_calls() -> None:
    clock = BudgetClock()
    seen: list[str] = []
    done = threading.Event()
    now = time.monotonic()
    clock.call_at(now + 0.06, lambda: seen.append("c"))
    clock.call_at(now + 0.02, lambda: seen.append("a"))
    cancel = clock.call_at(now + 0.04, lambda: seen.append("cancelled"))
    clock.call_at(now + 0.03, lambda: seen.append("b"))
    clock.call_at(now + 0.08, done.set)
    cancel()
    assert done.wait(5)
    assert seen == ["a", "b", "c"]
    clock.close(5)
    with pytest.raises(RuntimeError, match="closed"):
        clock.call_at(now, lambda: None)


def test_the_clock_survives_a_failing_callback(caplog: pytest.LogCaptureFixture) -> None:
    clock = BudgetClock()
    done = threading.Event()

    def fail() -> None:
        raise RuntimeError("boom")

    clock.call_at(0, fail)
    clock.call_at(0, done.set)
    assert done.wait(5)
    clock.close(5)
    assert "budget clock callback failed" in caplog.text


def test_the_clock_drops_cancelled_calls_instead_of_keeping_them_until_their_time() -> None:
    clock = BudgetClock()
    far = time.monotonic() + 3600
    cancels = [clock.call_at(far, lambda: None) for _ in range(4 * COMPACT_AFTER)]
    for cancel in cancels:
        cancel()
    assert clock.scheduled <= COMPACT_AFTER + 1
    clock.close(5)


def test_a_meter_on_the_clock_warns_then_reports_its_deadline() -> None:
    clock = BudgetClock()
    heard: list[tuple[str, str]] = []
    done = threading.Event()

    def on_time(meter: BudgetMeter, what: BudgetWarning | Overrun) -> None:
        heard.append((type(what).__name__, what.limit))
        if isinstance(what, Overrun):
            done.set()

    meter = BudgetMeter(Budget(max_seconds=0.2, warn_at=0.5), label="t")
    meter.start(clock, on_time)
    assert done.wait(5)
    assert heard == [("BudgetWarning", "max_seconds"), ("Overrun", "max_seconds")]
    assert meter.spent is not None and meter.spent.used >= 0.2
    assert meter.elapsed() >= 0.2
    clock.close(5)


def test_a_spent_or_closed_meter_hears_nothing_from_the_clock() -> None:
    clock = BudgetClock()
    heard: list[object] = []
    spent = BudgetMeter(Budget(max_seconds=0.05, max_tokens=1, warn_at=0.5), label="a")
    spent.charge(_tokens(5))  # spent by tokens before its time runs out
    spent.start(clock, lambda m, what: heard.append(what))
    closed = BudgetMeter(Budget(max_seconds=0.05), label="b")
    closed.start(clock, lambda m, what: heard.append(what))
    closed.close()
    late = BudgetMeter(Budget(max_seconds=0.05), label="c")
    late.close()
    late.start(clock, lambda m, what: heard.append(what))  # closed first: nothing scheduled
    done = threading.Event()
    clock.call_at(time.monotonic() + 0.2, done.set)
    assert done.wait(5)
    assert heard == []
    assert spent.spent is not None and spent.spent.limit == "max_tokens"
    clock.close(5)


def test_a_meter_needs_a_budget() -> None:
    with pytest.raises(TypeError, match=r"BudgetMeter\.budget"):
        BudgetMeter({"max_tokens": 5}, label="t")  # type: ignore[arg-type]
