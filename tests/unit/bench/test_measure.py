"""The rules that turn a benchmark's samples into its reported figure."""

from __future__ import annotations

import math

import pytest

from bench.measure import Figure, StageResult, at_least, at_most, count_at, percentile, steady_windows


def series(rate_by_second: list[float], start: float = 100.0, step: float = 0.25) -> list[tuple[float, int]]:
    """Cumulative counts sampled every `step` s, moving at rate_by_second[i] during second i."""
    samples, total, t = [(start, 0)], 0.0, start
    for rate in rate_by_second:
        for _ in range(round(1 / step)):
            t += step
            total += rate * step
            samples.append((t, round(total)))
    return samples


def test_warmup_is_skipped_and_windows_are_consecutive() -> None:
    # 2 s idle (start-up), 2 s slow (warm-up), then 1000/s, 2000/s, 3000/s for 4 s each.
    rates = [0, 0, 100, 100] + [1000] * 4 + [2000] * 4 + [3000] * 4
    windows = steady_windows(series(rates), total=10**9, warmup_s=2, window_s=4, windows=3)
    assert windows.rates == pytest.approx((1000, 2000, 3000))
    assert windows.median == pytest.approx(2000)
    assert windows.spread == pytest.approx(1.0)
    assert not windows.drained


def test_a_window_past_the_last_sample_is_not_reported() -> None:
    windows = steady_windows(series([500] * 6), total=10**9, warmup_s=1, window_s=2, windows=3)
    assert windows.rates == pytest.approx((500, 500))  # the third window would end after the data


def test_input_running_out_shortens_the_windows_and_says_so() -> None:
    samples = series([1000] * 10)  # 10,000 in 10 s
    windows = steady_windows(samples, total=6000, warmup_s=0, window_s=10, windows=3)
    assert windows.drained
    assert windows.seconds == pytest.approx(6 / 3, abs=0.3)
    assert windows.rates == pytest.approx((1000, 1000, 1000), rel=0.05)
    assert windows.describe().endswith("(input ran out: windows shortened)")


def test_nothing_moved_gives_no_figure() -> None:
    windows = steady_windows([(0.0, 5), (1.0, 5), (2.0, 5)], total=10, warmup_s=0, window_s=1, windows=2)
    assert windows.rates == ()
    assert math.isnan(windows.median)


def test_count_at_interpolates_between_samples() -> None:
    samples = [(0.0, 0), (1.0, 100), (3.0, 100), (4.0, 300)]
    assert count_at(samples, 0.5) == 50
    assert count_at(samples, 2.0) == 100
    assert count_at(samples, 3.5) == 200
    assert count_at(samples, 9.0) == 300


def test_percentile_is_an_observed_value_by_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7
    assert math.isnan(percentile([], 50))


def test_ratios_and_targets() -> None:
    result = StageResult("x", Figure("f", 300.0, "/s"), [Figure("b", 1000.0, "/s")])
    assert result.ratio(result.baselines[0]) == pytest.approx(0.3)
    assert result.to_json()["ratios"] == {"b": pytest.approx(0.3)}
    assert at_least("ratio", 0.3, 0.3).met is True
    assert at_least("ratio", 0.29, 0.3).met is False
    assert at_most("p99", 2000, 2000).met is False
    assert at_least("ratio", float("nan"), 0.3).met is None


def test_a_quick_input_read_before_any_window_gets_its_whole_reads_rate() -> None:
    """A fast worker can finish a --quick input inside the warm-up, even before the first sample."""
    from bench import consume
    from bench.plan import Plan

    plan = Plan.smoke()  # warm-up 0.3 s, one 1 s window: these inputs end inside the warm-up
    joined_then_read = [(10.0, 0), (10.1, 0), (10.2, 200), (10.3, 300)]
    assert consume.rates(joined_then_read, 300, plan) == (pytest.approx(300 / 0.2),)  # from before any output
    already_moving = [(10.0, 100), (10.1, 200), (10.2, 300)]
    assert consume.rates(already_moving, 300, plan) == (pytest.approx(200 / 0.2),)  # from the first sample
    all_done_at_first_sample = [(10.0, 300), (10.1, 300)]
    assert consume.rates(all_done_at_first_sample, 300, plan) == ()  # the stage falls back to appended_at
