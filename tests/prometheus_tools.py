"""Prometheus and promtool for the tests: Debian's `prometheus` package, installed when missing.

The tests need the real tools (rules checked and unit-tested by promtool, a real server scraping
`postbacks up`); nothing is skipped. Where they are missing and the tests run as root on Debian or
Ubuntu (CI containers), the package is installed with apt-get; anywhere else the test fails and
says how to install it.
"""

from __future__ import annotations

import os
import shutil
import subprocess

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
