"""A run as a value: the options are defined once, Locust's side rebuilds the very plan
the CLI made, and the shape's arithmetic is what a replaying client would offer. No
network, no Locust import."""

from __future__ import annotations

import argparse
from dataclasses import replace

import pytest

from load.core.plan import OPTIONS, Shape, add_options, build_plan, plan_from_options


def locust_like_parser() -> argparse.ArgumentParser:
    """What Locust's parser holds of ours: its own -u/-r/--host/--processes, our options."""
    parser = argparse.ArgumentParser()
    parser.add_argument("-u", dest="num_users", type=int)
    parser.add_argument("-r", dest="spawn_rate", type=float)
    parser.add_argument("--host")
    parser.add_argument("--processes", type=int)

    class NoWebUI:  # Locust's add_argument takes include_in_web_ui; argparse does not
        def __init__(self, inner: argparse.ArgumentParser) -> None:
            self.inner = inner

        def add_argument(self, *args, include_in_web_ui: bool = True, **kwargs):
            return self.inner.add_argument(*args, **kwargs)

    add_options(NoWebUI(parser), for_locust=True)
    return parser


@pytest.mark.parametrize(
    "plan",
    [
        build_plan("fanout", Shape(100, 10, 1.25), ["ws://127.0.0.1:8000"]),
        build_plan(
            "isolation",
            Shape(24, 12, 2.0),
            ["ws://a:1", "ws://[::1]:2"],
            settle_s=1.5,
            duration_s=3.25,
            drain_s=0.5,
            message_bytes=1000,
            processes=2,
        ),
        build_plan("churn", Shape(10, 2, 0.1), ["ws://a:1"], drain_s=0),
        build_plan("idle", Shape(30, 1, 0.0), ["ws://a:1"], duration_s=8),
    ],
    ids=["fanout", "isolation", "churn", "idle"],
)
def test_locust_rebuilds_the_plan_the_cli_made(plan) -> None:
    options = locust_like_parser().parse_args(plan.locust_args())
    rebuilt = plan_from_options(options, users=options.num_users)
    # The process count is Locust's own --processes, which the runner adds itself.
    assert replace(rebuilt, processes=plan.processes) == plan


def test_web_ui_strings_are_parsed_like_the_command_line() -> None:
    # Locust's web UI hands custom option values over as strings.
    options = argparse.Namespace(
        scenario="fanout", rooms="4", rate="2.5", duration="3", settle="", drain="1",
        connect="", message_bytes="", run_id="", targets="ws://h:1", processes=None,
    )  # fmt: skip
    plan = plan_from_options(options, users=20)
    assert plan.shape == Shape(20, 4, 2.5)
    assert (plan.duration_s, plan.settle_s, plan.drain_s, plan.message_bytes) == (3.0, 0, 1.0, 0)
    options.rate = "fast"
    with pytest.raises(ValueError, match="'fast' is not a number"):
        plan_from_options(options, users=20)


def test_every_option_has_one_definition_for_both_parsers() -> None:
    flags = [option.flag for option in OPTIONS]
    assert len(flags) == len(set(flags))
    cli = argparse.ArgumentParser()
    add_options(cli, for_locust=False)
    defaults = vars(cli.parse_args([]))
    for option in OPTIONS:
        if option.cli:
            assert defaults[option.dest] == option.default


def test_the_shape_says_what_a_replaying_client_offers() -> None:
    shape = Shape(users=100, rooms=10, rate=0.5)
    assert shape.room_sizes() == [10] * 10
    assert shape.messages_per_s == 50
    assert shape.deliveries_per_s == 500  # every member, the sender included
    uneven = Shape(users=7, rooms=3, rate=1.0)
    assert uneven.room_sizes() == [3, 2, 2]
    assert uneven.deliveries_per_s == 9 + 4 + 4


def test_plans_refuse_shapes_that_cannot_run() -> None:
    with pytest.raises(ValueError, match="rooms would be empty"):
        build_plan("fanout", Shape(3, 5, 1.0), ["ws://h:1"])
    with pytest.raises(ValueError, match="--rate must be more than 0"):
        build_plan("fanout", Shape(3, 1, 0.0), ["ws://h:1"])
    assert build_plan("idle", Shape(3, 1, 5.0), ["ws://h:1"]).rate == 0.0
