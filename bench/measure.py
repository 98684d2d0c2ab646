"""Pure arithmetic of the benchmarks: steady-state windows, percentiles, results and their ratios.

Kept apart from the processes the stages drive so the rules that turn samples into a
reported figure (what counts as warm-up, which windows are whole, which median) are
unit-tested without a broker.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

Sample = tuple[float, int]  # (monotonic seconds, cumulative count)


@dataclass(frozen=True, slots=True)
class Windows:
    """Rates of consecutive windows of steady state, cut from one series of samples."""

    rates: tuple[float, ...]
    seconds: float  # length of each window
    drained: bool  # the input ran out before every window was whole (windows were shortened)

    @property
    def median(self) -> float:
        return statistics.median(self.rates) if self.rates else float("nan")

    @property
    def spread(self) -> float:
        """(max - min) / median: how much the windows disagree, as a share of the figure."""
        if len(self.rates) < 2 or not self.median:
            return 0.0
        return (max(self.rates) - min(self.rates)) / self.median

    def describe(self) -> str:
        text = f"{len(self.rates)} windows of {self.seconds:.1f} s, spread {self.spread:.0%}"
        return text + (" (input ran out: windows shortened)" if self.drained else "")


def count_at(samples: Sequence[Sample], t: float) -> float:
    """The count at time t, interpolated between the samples around it."""
    if not samples:
        return 0.0
    if t <= samples[0][0]:
        return float(samples[0][1])
    for (t0, c0), (t1, c1) in itertools.pairwise(samples):
        if t0 <= t <= t1:
            return c0 + (c1 - c0) * ((t - t0) / (t1 - t0) if t1 > t0 else 1.0)
    return float(samples[-1][1])


def steady_windows(
    samples: Sequence[Sample], total: int, warmup_s: float, window_s: float, windows: int
) -> Windows:
    """Cut `windows` windows of `window_s` after warm-up from a series of cumulative counts.

    Warm-up starts at the first sample that moved (start-up, joins and recovery are
    not steady state) and lasts `warmup_s`. If the input ran out (`total` reached)
    before the last window closed, the steady span up to that moment is split into
    `windows` equal shorter windows instead, and `drained` says so.
    """
    moving = next((i for i in range(1, len(samples)) if samples[i][1] > samples[0][1]), None)
    if moving is None:
        return Windows((), window_s, drained=False)
    start = samples[moving - 1][0] + warmup_s
    done_at = next((t for t, c in samples if c >= total), None)
    end = start + window_s * windows
    drained = done_at is not None and done_at < end
    if drained:
        assert done_at is not None
        window_s = max(0.0, (done_at - start) / windows)
        if window_s <= 0:
            return Windows((), 0.0, drained=True)
    rates = []
    for i in range(windows):
        a, b = start + i * window_s, start + (i + 1) * window_s
        if b > samples[-1][0] + 1e-9:
            break
        rates.append((count_at(samples, b) - count_at(samples, a)) / window_s)
    return Windows(tuple(rates), window_s, drained)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest rank: a value that was observed, never interpolated."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(slots=True)
class Figure:
    name: str
    value: float
    unit: str
    runs: tuple[float, ...] = ()  # the repeats or windows the value is the median of

    @classmethod
    def median_of(cls, name: str, runs: Sequence[float], unit: str) -> Figure:
        return cls(name, statistics.median(runs) if runs else float("nan"), unit, tuple(runs))


@dataclass(slots=True)
class Target:
    """A goal from the benchmark issue: a ratio to a baseline, or an absolute bound on a figure."""

    text: str
    met: bool | None  # None: nothing to compare (a figure is missing)


@dataclass(slots=True)
class StageResult:
    stage: str
    figure: Figure
    baselines: list[Figure] = field(default_factory=list)
    extra: list[Figure] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def ratio(self, baseline: Figure) -> float:
        return self.figure.value / baseline.value if baseline.value else float("nan")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratios"] = {b.name: self.ratio(b) for b in self.baselines}
        return data


def at_least(label: str, value: float, bound: float) -> Target:
    met = None if math.isnan(value) else value >= bound
    return Target(f"{label} >= {bound:g}", met)


def at_most(label: str, value: float, bound: float) -> Target:
    met = None if math.isnan(value) else value < bound
    return Target(f"{label} < {bound:g}", met)
