"""Standby changelog records written a fetch at a time, exactly as Faust's recovery would write them."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP
from rocksdict import Options, Rdict

from stream.standby_apply import StandbyApplier

TOPIC = "g-click-state-changelog"
TP0 = TP(TOPIC, 0)


class Store:
    """The two things of Faust's RocksDB store the applier uses, over a real RocksDB."""

    def __init__(self, path: Path) -> None:
        self.db = Rdict(str(path), Options(raw_mode=True))
        self.persisted: dict[TP, int] = {}

    def _db_for_partition(self, partition: int) -> Rdict:
        return self.db

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        self.persisted[tp] = offset


class Table:
    def __init__(self, store: Any) -> None:
        self.data = store
        self._on_changelog_event = None
        self.applied: list[list[Any]] = []

    def apply_changelog_batch(self, events: list[Any]) -> None:  # as Faust's: each event's message
        self.applied.append(list(events))
        for event in events:
            message = event.message
            if message.value is None:
                self.data.db.delete(message.key)
            else:
                self.data.db[message.key] = message.value
            self.data.set_persisted_offset(message.tp, message.offset)


def record(offset: int, key: bytes, value: bytes | None) -> Any:
    return SimpleNamespace(offset=offset, key=key, value=value)


def event(offset: int, key: bytes, value: bytes | None) -> Any:
    return SimpleNamespace(message=SimpleNamespace(tp=TP0, offset=offset, key=key, value=value))


@pytest.fixture
def setup(tmp_path: Path) -> Any:
    store = Store(tmp_path / "db")
    table = Table(store)
    recovery = SimpleNamespace(
        in_recovery=False,
        standby_tps={TP0},
        tp_to_table={TP0: table},
        standby_offsets={TP0: 4},
        buffers=defaultdict(list),
    )
    app = SimpleNamespace(tables=SimpleNamespace(recovery=recovery))
    yield StandbyApplier(app), recovery, table
    store.db.close()


def test_a_fetch_is_written_in_one_batch_from_past_the_standby_offset(setup: Any) -> None:
    applier, recovery, table = setup
    table.data.db[b"gone"] = b"old"
    fetch = [record(3, b"a", b"old"), record(5, b"a", b"1"), record(6, b"gone", None), record(7, b"b", b"2")]
    assert applier.apply(TP0, fetch, delivered=4)
    db = table.data.db
    assert db.get(b"a") == b"1" and db.get(b"b") == b"2" and db.get(b"gone") is None
    assert table.data.persisted[TP0] == 7  # where a promotion to active reads the changelog from
    assert recovery.standby_offsets[TP0] == 7


def test_faust_buffered_records_land_before_newer_ones(setup: Any) -> None:
    applier, recovery, table = setup
    older = event(4, b"a", b"older")
    recovery.buffers[table] = [older]  # seen by Faust, not yet applied
    assert applier.apply(TP0, [record(5, b"a", b"newer")], delivered=4)
    assert table.applied == [[older]]  # applied first, then the fetch over it
    assert recovery.buffers[table] == []
    assert table.data.db.get(b"a") == b"newer"


@pytest.mark.parametrize(
    "change",
    [
        "in_recovery",  # Faust reads the changelogs itself then
        "not_standby",  # an active partition's changelog
        "faust_behind",  # records handed to Faust not yet seen by it: they must land first
        "memory_store",
        "changelog_hook",
    ],
)
def test_otherwise_records_go_faust_s_own_way(setup: Any, change: str) -> None:
    applier, recovery, table = setup
    delivered = 4
    if change == "in_recovery":
        recovery.in_recovery = True
    elif change == "not_standby":
        recovery.standby_tps = set()
    elif change == "faust_behind":
        delivered = 6
    elif change == "memory_store":
        table.data = SimpleNamespace(data={})
    else:
        table._on_changelog_event = lambda event: None
    assert not applier.apply(TP0, [record(7, b"a", b"1")], delivered=delivered)
    assert recovery.standby_offsets[TP0] == 4
    if change != "memory_store":
        assert table.data.db.get(b"a") is None
