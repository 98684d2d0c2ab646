"""Where the sink's share of the end-to-end latency goes, from the sink's own histograms.

The sink observes each batch's stages (sinks/metrics.py: delivered, batched, plan, done) and
each ClickHouse call's wait for the engine's thread and its run. Scraped before and after the
load, the difference covers the load alone; mean = sum / count, p99 = the histogram bucket
holding it (an upper bound).
"""

from __future__ import annotations

import math
import urllib.request
from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families

Key = tuple[str, tuple[tuple[str, str], ...]]  # (sample name, labels without `le`)
Scrape = dict[Key, dict[str, float]]  # key -> {"sum", "count", le...}

STAGES = "postbacks_sink_stage_seconds"
ENGINE = "postbacks_sink_engine_seconds"


def scrape(url: str, timeout_s: float = 5.0) -> Scrape:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return parse(response.read().decode())


def parse(text: str) -> Scrape:
    out: Scrape = {}
    for family in text_string_to_metric_families(text):
        if family.name not in (STAGES, ENGINE):
            continue
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
            entry = out.setdefault((family.name, labels), {})
            if sample.name.endswith("_bucket"):
                entry[sample.labels["le"]] = sample.value
            elif sample.name.endswith("_sum"):
                entry["sum"] = sample.value
            elif sample.name.endswith("_count"):
                entry["count"] = sample.value
    return out


def difference(after: Scrape, before: Scrape) -> Scrape:
    return {
        key: {k: v - before.get(key, {}).get(k, 0.0) for k, v in entry.items()}
        for key, entry in after.items()
    }


def _p99(entry: Mapping[str, float]) -> float:
    count = entry.get("count", 0.0)
    bounds = sorted((float(k), v) for k, v in entry.items() if k not in ("sum", "count"))
    for bound, cumulative in bounds:
        if cumulative >= 0.99 * count:
            return bound
    return math.inf


def _line(name: str, entry: Mapping[str, float]) -> str:
    count = entry.get("count", 0.0)
    mean = entry.get("sum", 0.0) / count * 1000 if count else float("nan")
    p99 = _p99(entry) * 1000
    return f"{name} mean {mean:,.0f} ms, p99 ≤ {p99:,.0f} ms ({count:,.0f})"


def summary(scrape: Scrape, table: str) -> list[str]:
    """One line for `table`'s batch stages, one for every ClickHouse call's wait and run."""
    stages = [
        _line(labels["stage"], entry)
        for (name, key), entry in sorted(scrape.items())
        if name == STAGES and (labels := dict(key))["table"] == table and entry.get("count")
    ]
    order = {"delivered": 0, "batched": 1, "plan": 2, "done": 3}
    stages.sort(key=lambda line: order.get(line.split(" ", 1)[0], 9))
    engine = [
        _line(f"{labels['call']} {labels['phase']}", entry)
        for (name, key), entry in sorted(scrape.items())
        if name == ENGINE and (labels := dict(key)) and entry.get("count")
    ]
    return [f"sink stages of {table} batches: " + "; ".join(stages), "engine calls: " + "; ".join(engine)]
