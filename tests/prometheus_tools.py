"""Prometheus and promtool for the tests: Debian's `prometheus` package, installed when missing.

The tests need the real tools (rules checked and unit-tested by promtool, a real server scraping
`postbacks up`); nothing is skipped. Where they are missing and the tests run as root on Debian or
Ubuntu (CI containers), the package is installed with apt-get; anywhere else the test fails and
says how to install it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

PACKAGE = "prometheus"


def ensure_prometheus() -> tuple[str, str]:
    """(prometheus, promtool) binaries, installing Debian's package if needed and possible."""
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if prometheus and promtool:
        return prometheus, promtool
    apt = shutil.which("apt-get")
    if apt and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run([apt, "update", "-qq"], check=True, env=env, timeout=600)
        subprocess.run(
            [apt, "install", "-y", "-qq", "--no-install-recommends", PACKAGE],
            check=True,
            env=env,
            timeout=900,
        )
        prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if not (prometheus and promtool):
        pytest.fail(f"needs Prometheus and promtool: `sudo apt-get install {PACKAGE}` (Debian/Ubuntu)")
    return prometheus, promtool


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
