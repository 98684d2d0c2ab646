"""SIGKILL of the stream worker, the sink and the ingest service at seeded random moments.

Each test kills one kind of component seven times while traffic flows (and, for the last
kills, while the pipeline drains), restarting it each time, then checks record by record
that nothing acknowledged was lost and nothing was counted twice (see driver.py).
Replay a failure with FAULT_SEED=<the printed seed>.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from postbacks.groups import stream_client, stream_group
from postbacks.settings import Settings
from postbacks.topics import Topics
from tests.faults.driver import Traffic, inject, pipeline, wait_until_exact
from tests.helpers import StreamWorker, group_assignments
from tests.integration.test_stream import STREAM_ENV

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


def test_a_stream_worker_killed_beside_another_hands_its_partitions_over_exactly(
    pipeline_settings: Settings, tmp_path: Path
) -> None:
    """Two workers share the group; one is SIGKILLed under traffic, twice. Its partitions move to
    the survivor (with their tables, from the changelogs) and back when it returns."""
    seed = int(os.environ.get("FAULT_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    print(f"FAULT_SEED={seed}")
    raw = Topics(pipeline_settings.topic_prefix).postbacks_raw
    group = stream_group(pipeline_settings.topic_prefix)
    survivor, victim = stream_client("worker-0"), stream_client("worker-1")
    owners: list[dict[str, set[int]]] = []

    def owned() -> dict[str, set[int]]:
        return {
            client: {p for t, p in tps if t == raw}
            for client, tps in group_assignments(pipeline_settings, group).items()
        }

    def settle(want: Callable[[dict[str, set[int]]], bool], timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not want(now := owned()):
            assert time.monotonic() < deadline, f"FAULT_SEED={seed}: the group did not settle: {now}"
            time.sleep(0.5)
        owners.append(now)

    def shared(now: dict[str, set[int]]) -> bool:
        return bool(now.get(survivor)) and bool(now.get(victim))

    def taken_over(now: dict[str, set[int]]) -> bool:
        return now.get(survivor) == {0, 1, 2} and victim not in now

    with pipeline(pipeline_settings, tmp_path) as running:
        second = StreamWorker.for_settings(pipeline_settings, tmp_path, name="worker-1", **STREAM_ENV)
        second.start()
        try:
            settle(shared)
            traffic = Traffic(running.ingest.base_url, running.ingest.token, clicks=400, rate=50, seed=seed)
            traffic.start()
            for _ in range(2):
                time.sleep(rng.uniform(0.5, 3.0))
                second.kill()  # SIGKILL: the group moves its partitions when its session times out
                settle(taken_over)
                time.sleep(rng.uniform(0.5, 2.0))
                second.start()
                settle(shared)
            traffic.wait()
            result = wait_until_exact(running, traffic)
        finally:
            second.stop()
    print(f"owners after each move: {owners}\nfigures: {result.figures}")
    assert not result.problems, "\n".join([f"FAULT_SEED={seed}", *result.problems, second.log_tail()])
