"""`postbacks demo` on a fresh data dir: a small day through the whole stack, every measure PASS."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.integration


@pytest.mark.timeout(300)
def test_demo_passes_every_measure(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"KAFKA_BOOTSTRAP_SERVERS", "TOPIC_PREFIX"}}
    env.update(POSTBACKS_DATA_DIR=str(tmp_path), STREAM_SESSION_TIMEOUT_S="6")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "commands.cli",
            "demo",
            "--clicks",
            "400",
            "--rate",
            "400",
            "--seed",
            "5",
            "--timeout",
            "90",
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "all measures PASS" in result.stdout
    assert result.stdout.count("PASS  ") >= 10 and "FAIL  " not in result.stdout
