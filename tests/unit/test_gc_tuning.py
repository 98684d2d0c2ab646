"""postbacks/gc_tuning.py: the young threshold is raised and startup's objects frozen, or nothing at 0."""

from __future__ import annotations

import gc
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


def test_a_cycle_is_still_collected_after_tuning(collector: None) -> None:
    gc_tuning.tune(50_000)

    class Node:
        other: object

    a, b = Node(), Node()
    a.other, b.other = b, a
    ids = {id(a), id(b)}
    del a, b
    gc.collect()
    assert not any(id(obj) in ids and isinstance(obj, Node) for obj in gc.get_objects())


def test_the_setting_comes_from_the_environment_and_refuses_a_negative_value() -> None:
    assert Settings.from_env({"PYTHON_GC_THRESHOLD": "20000"}).python_gc_threshold == 20_000
    with pytest.raises(SettingsError):
        Settings.from_env({"PYTHON_GC_THRESHOLD": "-1"})
