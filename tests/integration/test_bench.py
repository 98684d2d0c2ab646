"""`postbacks bench --quick` runs every stage against the real local stack and produces figures.

A smoke test only: the figures of a 1-second run mean nothing, so nothing here asserts a
speed; it asserts that each stage measured something and its baselines in the same run.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

STAGES = ["ingest", "stream", "sink", "e2e", "scale"]


@pytest.mark.timeout(420)
def test_quick_bench_measures_every_stage_and_its_baselines(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "commands.cli",
            "bench",
            "--quick",
            "--json",
            str(out),
            "--workdir",
            str(tmp_path / "w"),
        ],
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    results = {stage["stage"]: stage for stage in json.loads(out.read_text())["stages"]}
    assert list(results) == STAGES
    for name, stage in results.items():
        value = stage["figure"]["value"]
        assert math.isfinite(value) and value > 0, (name, stage)
        for baseline in stage["baselines"]:
            assert math.isfinite(baseline["value"]) and baseline["value"] > 0, (name, baseline)
            assert stage["ratios"][baseline["name"]] > 0
    assert len(results["ingest"]["baselines"]) == 2  # bare handler and raw producer
    ceilings = [f for f in results["ingest"]["extra"] if f["name"].startswith("(c)")]
    assert len(ceilings) == 6 and all(math.isfinite(f["value"]) and f["value"] > 0 for f in ceilings)
    e2e = results["e2e"]
    assert not any("not visible" in t["text"] for t in e2e["targets"]), e2e  # every ack reached ClickHouse
    assert "| stage | figure |" in done.stdout  # the README's table
