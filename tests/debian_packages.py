"""Debian packages the tests need (prometheus, chromium), installed when missing and possible.

Nothing that needs a tool this machine can install is skipped: where the tool is missing and the
tests run as root on Debian or Ubuntu (CI here), the package is installed with apt-get; anywhere
else the test fails and says how to install it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def ensure(package: str, find: Callable[[], T | None]) -> T:
    """What `find` finds, after installing `package` with apt-get if it found nothing."""
    found = find()
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run([apt, "update", "-qq"], check=True, env=env, timeout=600)
        subprocess.run(
            [apt, "install", "-y", "-qq", "--no-install-recommends", package],
            check=True,
            env=env,
            timeout=900,
        )
        found = find()
    if not found:
        pytest.fail(f"needs Debian's {package}: `sudo apt-get install {package}` (Debian/Ubuntu)")
    return found
