"""postbacks/gc_tuning.py: the young threshold is raised and startup's objects frozen, or nothing at 0."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from postbacks import gc_tuning
from postbacks.settings import Settings, SettingsError


@pytest.fixture
def collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_tune_raises_the_young_threshold_and_freezes_what_exists(collector: None) -> None:
    older = gc.get_threshold()[1:]
    kept = {"built": ["at start"]}  # a container alive now: frozen with the rest
    gc_tuning.tune(50_000)
    assert gc.get_threshold() == (50_000, *older)
    assert gc.get_freeze_count() > 0
    assert not any(kept is obj for obj in gc.get_objects())  # out of every generation the collector scans
    made_after = {"built": ["later"]}
    assert any(made_after is obj for obj in gc.get_objects())  # later objects are still tracked


def test_zero_leaves_the_collector_as_python_set_it(collector: None) -> None:
    before = gc.get_threshold()
    frozen = gc.get_freeze_count()
    gc_tuning.tune(0)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen


def test_the_collector_still_runs_on_its_own_after_tuning(collector: None) -> None:
    """No explicit gc.collect(): allocations past the threshold must collect a dropped cycle."""
    gc_tuning.tune(1_000)
    assert gc.isenabled()

    class Node:
        other: object

    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    kept: list[list[int]] = [[] for _ in range(50_000)]  # young and older collections
    assert gone() is None
    assert len(kept) == 50_000


def test_the_setting_comes_from_the_environment_and_refuses_a_negative_value() -> None:
    assert Settings.from_env({"PYTHON_GC_THRESHOLD": "20000"}).python_gc_threshold == 20_000
    with pytest.raises(SettingsError):
        Settings.from_env({"PYTHON_GC_THRESHOLD": "-1"})
