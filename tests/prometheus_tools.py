"""Prometheus and promtool for the tests: Debian's `prometheus` package, installed when missing.

The tests need the real tools (rules checked and unit-tested by promtool, a real server scraping
`postbacks up`); nothing is skipped. Where they are missing and the tests run as root on Debian or
Ubuntu (CI containers), the package is installed with apt-get; anywhere else the test fails and
says how to install it.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from tests.debian_packages import ensure

PACKAGE = "prometheus"


def ensure_prometheus() -> tuple[str, str]:
    """(prometheus, promtool) binaries, installing Debian's package if needed and possible."""

    def find() -> tuple[str, str] | None:
        prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
        return (prometheus, promtool) if prometheus and promtool else None

    return ensure(PACKAGE, find)


REPO = Path(__file__).resolve().parents[1]
METRICS_MODULES = (
    "ingest/metrics.py",
    "sinks/metrics.py",
    "outbound/metrics.py",
    "stream/metrics.py",
    "postbacks/metrics.py",
)
# What Prometheus adds to a metric's name: counters' _total, histograms' series.
SUFFIXES = re.compile(r"_(total|bucket|sum|count|created)$")


def exported_metrics() -> set[str]:
    """Every `postbacks_*` metric name the services define, without Prometheus' suffixes."""
    names: set[str] = set()
    for path in METRICS_MODULES:
        names |= set(re.findall(r'"(postbacks_[a-z_]+)"', (REPO / path).read_text()))
    return {SUFFIXES.sub("", n) for n in names}


def metric_names(expression: str) -> set[str]:
    """The `postbacks_*` metrics an expression names, without Prometheus' suffixes."""
    return {SUFFIXES.sub("", n) for n in re.findall(r"\b(postbacks_[a-z_]+)", expression)}
