"""The demo's generator: seeded, covering every kind of traffic, with totals that add up."""

from __future__ import annotations

from decimal import Decimal

from commands.demo import plan_day, usd
from stream.rules.fx import load_rates

RATES = load_rates()


def test_same_seed_same_day_and_expectations() -> None:
    first, expected_first = plan_day(2000, RATES, seed=3)
    second, expected_second = plan_day(2000, RATES, seed=3)
    assert first == second and expected_first == expected_second
    assert plan_day(2000, RATES, seed=4)[1] != expected_first


def test_every_kind_of_traffic_is_there() -> None:
    scripts, expected = plan_day(5000, RATES, seed=11)
    assert expected.clicks == 5000 == sum(s.click is not None for s in scripts)
    assert expected.conversions > 0 and expected.pending > 0 and expected.reversed > 0
    assert expected.duplicates > 0 and expected.revenue_usd > 0 and expected.payout_usd > 0
    assert set(expected.rejected) == {"ctit_too_short", "unknown_click", "bad_number", "unknown_currency"}
    # Several conversions per click, view-through, adjustments: 50 of each feature in 5000 clicks.
    assert (expected.upsells, expected.goals, expected.view_through, expected.adjusted) == (100, 100, 50, 150)
    assert sum(s.impression is not None for s in scripts) == 50
    assert {r.source for s in scripts for r in s.postbacks} == {None, "keitaro", "affise"}
    assert {s.adjustment.action for s in scripts if s.adjustment} == {"approve", "reject", "payout"}
    statuses = [r.params.get("status") for s in scripts for r in s.postbacks]
    assert {"pending", "approved", "rejected"} <= set(statuses)
    # Times are relative to each click, resolved when it is sent.
    assert all(
        r.params["install_time"].startswith("+")
        for s in scripts
        for r in s.postbacks
        if "install_time" in r.params
    )


def test_usd_matches_the_stream_rounding() -> None:
    assert usd(Decimal("4.99"), "EUR", RATES) == Decimal("5.389200")
    assert usd(Decimal("1.50"), "USD", RATES) == Decimal("1.500000")
