"""The end-to-end latency distribution as a PNG: a histogram and the cumulative share, p50/p99 marked.

Numbers say where the percentiles are; the plot shows the shape behind them (a batch-age
plateau, a tail from a stalled flush), which is what a change to the batching moves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.measure import percentile


def latency_plot(
    latencies_ms: Sequence[float],
    out: Path,
    title: str,
    stages: Mapping[str, Sequence[float]] | None = None,
) -> None:
    """Write the histogram and CDF of `latencies_ms` to `out` (needs the bench extra: matplotlib).

    `stages` (name → latencies of that stage alone) are drawn as further CDFs: which stage the
    end-to-end shape comes from.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    values = sorted(latencies_ms)
    fig, (hist, cdf) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    hist.hist(values, bins=60, color="#4878a8")
    hist.set_xlabel("ack → visible in ClickHouse (ms)")
    hist.set_ylabel("postbacks")
    n = len(values)
    cdf.plot(values, [(i + 1) / n for i in range(n)], color="#4878a8", label="ack → visible")
    for (name, stage), color in zip((stages or {}).items(), ("#55a868", "#dd8452", "#8172b3"), strict=False):
        ordered = sorted(stage)
        if ordered:
            cdf.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], color=color, label=name)
    cdf.set_xlabel("ack → visible in ClickHouse (ms)")
    cdf.set_ylabel("share of postbacks")
    cdf.grid(alpha=0.3)
    for q, style in ((50, "--"), (99, ":")):
        at = percentile(values, q)
        for axis in (hist, cdf):
            axis.axvline(at, color="#c44e52", linestyle=style, label=f"p{q} {at:,.0f} ms")
    hist.legend()
    cdf.legend(fontsize="small")
    fig.suptitle(title)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
