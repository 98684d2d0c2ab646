"""SIGKILL of the stream worker, the sink and the ingest service at seeded random moments.

Each test kills one kind of component seven times while traffic flows (and, for the last
kills, while the pipeline drains), restarting it each time, then checks record by record
that nothing acknowledged was lost and nothing was counted twice (see driver.py).
Replay a failure with FAULT_SEED=<the printed seed>.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from postbacks.settings import Settings
from tests.faults.driver import Traffic, inject, pipeline, wait_until_exact

# Seven restarts of a component take their time on a loaded 2-core machine: the budget is explicit,
# and wait_until_exact gives up before it, so a failure reports what is missing rather than a timeout.
pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.timeout(300)]

TRIALS = 7


@pytest.mark.parametrize("component", ["stream", "sink", "ingest"])
def test_sigkill_at_random_moments_loses_and_doubles_nothing(
    component: str, pipeline_settings: Settings, tmp_path: Path
) -> None:
    seed = int(os.environ.get("FAULT_SEED") or random.randrange(1 << 30))
    print(f"FAULT_SEED={seed}")
    with pipeline(pipeline_settings, tmp_path) as running:
        traffic = Traffic(running.ingest.base_url, running.ingest.token, clicks=500, rate=50, seed=seed)
        traffic.start()
        trials = inject(running, traffic, (component,), TRIALS, seed)
        traffic.wait()
        result = wait_until_exact(running, traffic)
    print(f"trials: {[(t.component, t.at_s) for t in trials]}\nfigures: {result.figures}")
    assert len(trials) == TRIALS
    assert not result.problems, "\n".join(
        [f"FAULT_SEED={seed}", *result.problems, "sink warnings:", *warnings(running.sink.log_path)]
    )


def warnings(log: Path, last: int = 30) -> list[str]:
    lines = log.read_text(errors="replace").splitlines()
    return [line[:300] for line in lines if line.startswith(("warning", "error"))][-last:]
