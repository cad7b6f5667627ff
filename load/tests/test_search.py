"""The capacity search on synthetic steps: narrowing, what limited it, a saturated load
generator, a noisy step, a stack that holds everything, one that holds nothing; and the
objective's verdict on a run. No network."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from load.core.search import (
    ALL_PASSED,
    STEP_LIMIT,
    CapacitySearch,
    Objective,
    planned_connects,
    planned_messages,
)


def run_search(
    search: CapacitySearch, outcome: Callable[[float, int], Sequence[str]]
) -> list[tuple[float, str, tuple[str, ...]]]:
    """Drive ``search``; ``outcome(value, attempt)`` says what the step broke."""
    tried: dict[float, int] = {}
    for _ in range(100):
        value = search.next_value()
        if value is None:
            break
        tried[value] = tried.get(value, 0) + 1
        search.record(value, outcome(value, tried[value]))
    return [(s.value, s.phase, s.broke) for s in search.steps]


def holds_up_to(limit: float, broke: Sequence[str] = ("latency",)):
    return lambda value, attempt: () if value <= limit else tuple(broke)


def test_ramp_then_confirm_then_narrow_to_the_resolution() -> None:
    search = CapacitySearch(0.5, factor=2, resolution=0.15)
    steps = run_search(search, holds_up_to(3.3))
    assert [(v, p) for v, p, _ in steps] == [
        (0.5, "ramp"), (1.0, "ramp"), (2.0, "ramp"), (4.0, "ramp"), (4.0, "confirm"),
        (2.828427, "narrow"), (3.363586, "narrow"), (3.084422, "narrow"),
    ]  # fmt: skip
    result = search.result()
    assert result.capacity == 3.084422
    assert result.past_capacity == 3.363586
    assert result.limited_by == "latency"
    assert result.past_capacity <= result.capacity * 1.15  # within the resolution


def test_limited_by_is_what_the_lowest_failing_step_broke_first() -> None:
    def outcome(value: float, attempt: int) -> tuple[str, ...]:
        if value <= 2:
            return ()
        return ("loss", "latency") if value < 4 else ("latency", "loss")

    search = CapacitySearch(1.0, factor=2, resolution=0.15)
    run_search(search, outcome)
    result = search.result()
    assert result.capacity is not None and result.past_capacity is not None
    assert 2 <= result.capacity < result.past_capacity < 4
    assert result.limited_by == "loss"  # the narrowed step's, not the ramp's


def test_a_saturated_load_generator_ends_the_search_as_a_lower_bound() -> None:
    def outcome(value: float, attempt: int) -> tuple[str, ...]:
        return ("client",) if value >= 4 else ()

    search = CapacitySearch(1.0, factor=2)
    steps = run_search(search, outcome)
    # confirmed once, then no narrowing: nothing above 4 can be measured
    assert [(v, p) for v, p, _ in steps] == [
        (1.0, "ramp"), (2.0, "ramp"), (4.0, "ramp"), (4.0, "confirm"),
    ]  # fmt: skip
    result = search.result()
    assert (result.capacity, result.limited_by, result.past_capacity) == (2.0, "client", 4.0)


def test_a_passing_hiccup_of_the_load_generator_does_not_end_the_search() -> None:
    def outcome(value: float, attempt: int) -> tuple[str, ...]:
        if value > 3:
            return ("latency",)
        return ("client",) if value == 2.828427 and attempt == 1 else ()

    search = CapacitySearch(1.0, factor=2, resolution=0.15)
    steps = run_search(search, outcome)
    assert (2.828427, "confirm", ()) in steps
    result = search.result()
    assert result.limited_by == "latency"
    assert result.capacity is not None and result.past_capacity is not None
    assert 2.828427 <= result.capacity <= 3 < result.past_capacity


def test_a_noisy_failure_is_confirmed_and_the_ramp_goes_on() -> None:
    def outcome(value: float, attempt: int) -> tuple[str, ...]:
        if value == 2.0 and attempt == 1:
            return ("latency",)  # a neighbour's burst, once
        return () if value <= 6 else ("latency",)

    search = CapacitySearch(1.0, factor=2, resolution=0.15)
    steps = run_search(search, outcome)
    assert [(v, p) for v, p, _ in steps[:4]] == [
        (1.0, "ramp"), (2.0, "ramp"), (2.0, "confirm"), (4.0, "ramp"),
    ]  # fmt: skip
    assert search.steps[1].noisy and not search.steps[2].noisy
    result = search.result()
    assert result.capacity is not None and result.past_capacity is not None
    assert 4 < result.capacity <= 6 < result.past_capacity


def test_a_stack_that_holds_every_step_is_limited_by_max() -> None:
    search = CapacitySearch(1.0, factor=2, ramp_steps=3)
    steps = run_search(search, lambda value, attempt: ())
    assert [v for v, _, _ in steps] == [1.0, 2.0, 4.0]
    result = search.result()
    assert (result.capacity, result.limited_by, result.past_capacity) == (4.0, ALL_PASSED, None)


def test_when_the_first_step_fails_the_search_goes_down() -> None:
    search = CapacitySearch(4.0, factor=2, resolution=0.15)
    steps = run_search(search, holds_up_to(1.5, broke=("errors",)))
    assert [(v, p) for v, p, _ in steps[:4]] == [
        (4.0, "ramp"), (4.0, "confirm"), (2.0, "narrow"), (1.0, "narrow"),
    ]  # fmt: skip
    result = search.result()
    assert result.capacity is not None and result.past_capacity is not None
    assert 1.0 <= result.capacity <= 1.5 < result.past_capacity <= 2.0
    assert result.limited_by == "errors"


def test_a_stack_that_holds_nothing_has_no_capacity() -> None:
    search = CapacitySearch(1.0, factor=2, max_steps=6)
    steps = run_search(search, lambda value, attempt: ("loss",))
    assert len(steps) == 6  # bounded
    result = search.result()
    # Still going down when the steps ran out: the search says it was cut short.
    assert result.capacity is None and result.limited_by == STEP_LIMIT
    assert result.past_capacity == min(value for value, _, _ in steps)


def test_a_stack_that_holds_nothing_stops_at_the_floor() -> None:
    # Not 20 halvings down to rates at which no message is sent (channels-postgres
    # duplicating at every load): the search ends where a step would measure too little.
    search = CapacitySearch(1.0, factor=2, floor=0.1)
    steps = run_search(search, lambda value, attempt: ("duplicates",))
    values = [value for value, _, _ in steps]
    assert values == [1.0, 1.0, 0.5, 0.25, 0.125]  # 0.0625 would be below the floor
    result = search.result()
    assert result.capacity is None and result.limited_by == "duplicates"
    assert result.past_capacity == 0.125


def test_the_floor_does_not_stop_a_search_that_finds_a_passing_step() -> None:
    search = CapacitySearch(1.0, factor=2, resolution=0.15, floor=0.1)
    run_search(search, holds_up_to(0.2))
    result = search.result()
    assert result.capacity is not None and 0.125 <= result.capacity <= 0.2
    assert result.limited_by == "latency"


def test_a_search_cut_short_by_the_step_limit_says_steps() -> None:
    search = CapacitySearch(0.5, factor=2, resolution=0.15, max_steps=6)
    steps = run_search(search, holds_up_to(3.3))
    assert len(steps) == 6
    result = search.result()
    assert (result.capacity, result.past_capacity, result.limited_by) == (2.828427, 4.0, "steps")
    # The same search with room to finish ends on what broke.
    assert run_search(finished := CapacitySearch(0.5, factor=2, resolution=0.15),
                      holds_up_to(3.3))[:6] == steps  # fmt: skip
    assert finished.result().limited_by == "latency"


def test_whole_numbers_when_varying_users() -> None:
    search = CapacitySearch(10, factor=2, resolution=0.1, whole=True)
    steps = run_search(search, holds_up_to(57))
    values = [v for v, _, _ in steps]
    assert all(v == int(v) for v in values)
    assert len(values) == len(set(values)) + 1  # only the confirmation repeats a value
    assert search.result().capacity == 57


def test_results_must_answer_the_value_asked_for() -> None:
    search = CapacitySearch(1.0)
    with pytest.raises(ValueError, match="expected a result"):
        search.record(2.0, ())


def run(p99: float | None, *, lost: int = 0, errors: int = 0, saturated: bool = False,
        timeline: list | None = None, **fields: object) -> dict:  # fmt: skip
    """A run record of 10 users at 5 msg/s for 4 s that offered its shape in full."""
    return {
        "scenario": "fanout",
        "users": 10,
        "rooms": 2,
        "rate_per_user": 5.0,
        "duration_s": 4.0,
        "settle_s": 2.0,
        "drain_s": 2.0,
        "connects": 10,
        "sent": 200,
        "client_saturated": saturated,
        "errors": errors,
        "lost": lost,
        "leaked": 0,
        "duplicated": 0,
        "expected": 1000,
        "latency_ms": {"p99": p99},
        "timeline": timeline or [],
        **fields,
    }


def test_the_objective_names_every_limit_broken_first_in_time_first() -> None:
    objective = Objective(p99_ms=100)
    assert objective.broken(run(99.9)) == []
    assert objective.broken(run(100.1)) == ["latency"]
    assert objective.broken(run(None)) == ["latency"]  # nothing delivered at all
    timeline = [
        {"t_s": 0, "p99_ms": 20, "lost": 0, "errors": 0},
        {"t_s": 1, "p99_ms": 150, "lost": 0, "errors": 0},
        {"t_s": 2, "p99_ms": 900, "lost": 7, "errors": 0},
    ]
    assert objective.broken(run(900, lost=7, timeline=timeline)) == ["latency", "loss"]
    # In the same second, or without a timeline: the most severe first.
    assert objective.broken(run(900, lost=7)) == ["loss", "latency"]
    assert objective.broken(run(50, errors=1, saturated=True)) == ["client", "errors"]
    assert Objective(p99_ms=100, loss=10).broken(run(50, lost=10)) == []


@pytest.mark.parametrize(
    ("fields", "limit"),
    [
        ({"leaked": 1}, "leak"),
        ({"duplicated": 1}, "duplicates"),
        ({"misattributed": 1}, "misattributed"),
        ({"connects": 9}, "not_offered"),  # a user never connected
        ({"sent": 179}, "not_offered"),  # 10 % short of 10 users x 5 msg/s x 4 s
    ],
)
def test_a_wrong_delivery_or_a_shape_not_offered_breaks_the_objective(fields, limit) -> None:
    assert Objective().broken(run(10.0, **fields)) == [limit]


def test_a_shortfall_chance_explains_is_still_offered() -> None:
    assert Objective().broken(run(10.0, sent=180)) == []  # exactly 10 % short
    # A tiny step: 4 users at 0.5 msg/s for 3 s plan 6 messages; 2 are within chance
    # (send intervals vary by ± 50 %), 1 is not.
    tiny: dict[str, Any] = {"users": 4, "connects": 4, "rate_per_user": 0.5, "duration_s": 3.0}
    assert planned_messages(run(1.0, **tiny)) == 6
    assert Objective().broken(run(1.0, sent=2, **tiny)) == []
    assert Objective().broken(run(1.0, sent=1, **tiny)) == ["not_offered"]
    # Nothing sent, nothing expected: however small the plan, that measured nothing.
    scarce: dict[str, Any] = {**tiny, "rate_per_user": 0.1, "expected": 0}
    assert Objective().broken(run(None, sent=1, **scarce)) == []
    assert Objective().broken(run(None, sent=0, **scarce)) == ["not_offered"]


def test_churn_is_offered_when_every_user_opened_the_sessions_the_plan_asks_for() -> None:
    # 10 users over 5 s of sending: a session lasts at most 3 s + 2 s drain + 3 s close,
    # so each user opens at least one; over 20 s at least three.
    short: dict[str, Any] = {"scenario": "churn", "connects": 10, "sent": 50}
    assert planned_connects(run(1.0, **short)) == 10
    assert planned_messages(run(1.0, **short)) is None  # depends on handshakes and closes
    assert Objective().broken(run(1.0, **short)) == []
    assert Objective().broken(run(1.0, **{**short, "connects": 9})) == ["not_offered"]
    long: dict[str, Any] = {"scenario": "churn", "duration_s": 18.0, "connects": 30}
    assert planned_connects(run(1.0, **long)) == 30
    assert Objective().broken(run(1.0, **{**long, "connects": 29})) == ["not_offered"]


def test_the_most_severe_limit_comes_first_without_a_timeline() -> None:
    broken = Objective(p99_ms=100).broken(
        run(900, lost=3, errors=1, leaked=2, duplicated=1, connects=9, saturated=True)
    )
    assert broken == ["client", "not_offered", "leak", "duplicates", "errors", "loss", "latency"]


def test_the_socket_search_breaks_on_a_slow_handshake_or_too_much_memory() -> None:
    # What `capacity --scenario idle --vary users` holds a step to, beside the rest.
    idle: dict[str, Any] = {"scenario": "idle", "rate_per_user": 0.0, "sent": 0, "expected": 0}
    sockets = Objective(connect_p99_ms=1000, max_server_mb=500)
    assert sockets.broken(run(None, connect_ms={"p99": 999.0}, server_rss_mb=499.0, **idle)) == []
    slow = run(None, connect_ms={"p99": 1000.5}, server_rss_mb=100.0, **idle)
    assert sockets.broken(slow) == ["handshake"]
    big = run(None, connect_ms={"p99": 20.0}, server_rss_mb=501.0, **idle)
    assert sockets.broken(big) == ["memory"]
    # No handshake at all is no pass; a socket search that lost users is not offered.
    assert sockets.broken(run(None, connect_ms={"p99": None}, **idle)) == ["handshake"]
    assert sockets.broken(
        run(None, connect_ms={"p99": 5.0}, server_rss_mb=1.0, **{**idle, "connects": 9})
    ) == ["not_offered"]
    # A rate search leaves both alone, and its objective's record is the same as before.
    assert Objective().broken(run(10.0, connect_ms={"p99": 9e9}, server_rss_mb=9e9)) == []
    assert Objective().to_dict() == {"p99_ms": 100.0, "loss": 0, "errors": 0}
    assert sockets.to_dict()["connect_p99_ms"] == 1000 and sockets.to_dict()["max_server_mb"] == 500
    assert Objective(**sockets.to_dict()) == sockets  # what replay rebuilds it from
