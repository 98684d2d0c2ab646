"""Batch plans, tokens and the identity filter of the sink writer (pure parts)."""

from __future__ import annotations

import time

from sinks.tables import SPECS
from sinks.writer import (
    MAX_GROUP,
    Batch,
    form_groups,
    group_token,
    new_rows,
    parse_group,
    parse_plan,
    poll_timeout_ms,
)

CONVERSIONS = next(s for s in SPECS if s.name == "conversion_versions")


def test_plan_and_token_name_exactly_the_offsets() -> None:
    batch = Batch(3)
    for offset in (7, 8, 9):
        batch.add(offset, b"", 1)
    assert (batch.plan, batch.token("clicks")) == ("batch:7-9", "clicks:3:7-9")
    assert parse_plan(batch.plan) == (7, 9)
    assert parse_plan("") is None and parse_plan("something else") is None


def test_a_group_plan_names_every_batch_and_its_token_is_the_group_s() -> None:
    batch = Batch(3, group=((3, 7, 9), (0, 2, 2)))
    for offset in (7, 8, 9):
        batch.add(offset, b"", 1)
    assert batch.plan == "batch:7-9;with:0:2-2,3:7-9"
    assert batch.token("clicks") == "clicks:0:2-2,3:7-9" == group_token("clicks", [(3, 7, 9), (0, 2, 2)])
    assert parse_plan(batch.plan) == (7, 9)
    assert parse_group(batch.plan) == ((0, 2, 2), (3, 7, 9))
    assert parse_group("batch:7-9") == () and parse_group("batch:7-9;with:") == ()
    replay = Batch(3, planned=(7, 9), group=parse_group(batch.plan))
    assert replay.token("clicks") == batch.token("clicks") and replay.plan == batch.plan


def test_a_re_formed_batch_keeps_its_planned_range_and_token() -> None:
    replay = Batch(3, planned=(7, 9))
    replay.add(7, b"", 1)
    replay.add(9, b"", 1)  # offset 8 did not decode: the range, and so the token, stay as planned
    assert replay.token("clicks") == "clicks:3:7-9"
    assert not replay.complete(8) and replay.complete(9)
    assert not replay.due(1, 0.0)  # only completion flushes it


def test_due_by_rows_or_age() -> None:
    batch = Batch(0)
    assert not batch.due(2, 60)
    batch.add(1, b"", 1)
    assert not batch.due(2, 60)
    batch.add(2, b"", 1)
    assert batch.due(2, 60)
    old = Batch(0)
    old.add(1, b"", 1)
    old.started = time.time() - 5
    assert old.due(1000, 1.0)


def test_identity_filter_drops_versions_stored_elsewhere_but_not_its_own() -> None:
    v1, v2, other = (
        {"conversion_id": "a", "version": 1},
        {"conversion_id": "a", "version": 2},
        {"conversion_id": "b", "version": 1},
    )
    batch = list(zip((10, 11, 12, 13), (v1, v2, v2, other), strict=True))  # v2 re-emitted
    # ("a", 1) is stored at an earlier offset: a stream replay; ("b", 1) at offset 13: this batch's own,
    # stored by an insert a crash interrupted, so it is inserted again with the same token.
    stored = [("a", 1, 0, 4), ("b", 1, 0, 13)]
    kept = [
        (r["conversion_id"], r["version"], offset) for offset, r in new_rows(CONVERSIONS, 0, batch, stored)
    ]
    assert kept == [("a", 2, 11), ("b", 1, 13)]


def test_column_values_are_the_records_column_by_column() -> None:
    records = [
        (5, {"click_id": "a", "campaign_id": None, "sub1": None}),
        (9, {"click_id": "b", "offer_id": "o"}),
    ]
    clicks = next(spec for spec in SPECS if spec.name == "clicks")
    columns = dict(zip(clicks.insert_columns, clicks.column_values(2, records), strict=True))
    assert columns["click_id"] == ["a", "b"]
    assert columns["offer_id"] == ["", "o"]  # a plain String column: absent is ""
    assert columns["campaign_id"] == ["", ""]
    assert columns["sub1"] == [None, None]  # Nullable: absent stays None
    assert (columns["kafka_partition"], columns["kafka_offset"]) == ([2, 2], [5, 9])
    for spec in SPECS:
        values = spec.column_values(2, records)
        assert len(values) == len(spec.insert_columns)
        assert all(len(column) == len(records) for column in values)


def test_a_fetch_waits_no_longer_than_the_oldest_batch_has_left() -> None:
    now = time.time()
    assert poll_timeout_ms([], 0.25, now) == 200  # nothing in hand: the idle poll
    young, old, replay = Batch(0), Batch(1), Batch(2, planned=(1, 9))
    young.add(1, b"", 1)
    old.add(1, b"", 1)
    replay.add(1, b"", 1)
    young.started, old.started, replay.started = now - 0.1, now - 0.2, now - 10
    assert poll_timeout_ms([young], 0.25, now) == 150
    assert poll_timeout_ms([young, old, replay], 0.25, now) == 50  # a re-formed batch waits for completion
    old.started = now - 1
    assert poll_timeout_ms([young, old], 0.25, now) == 0  # overdue: take what is buffered, flush


def test_the_age_counts_from_when_the_first_record_was_written() -> None:
    now = time.time()
    fetched_during_a_flush = Batch(0)
    fetched_during_a_flush.add(1, b"", 1, written_at=now - 0.3)  # waited while another batch was inserted
    assert fetched_during_a_flush.due(1000, 0.25)
    skewed = Batch(0)
    skewed.add(1, b"", 1, written_at=now + 3600)  # a producer clock ahead of ours: counted from now
    assert skewed.started <= time.time() and not skewed.due(1000, 0.25)


def test_small_batches_share_an_insert_and_full_ones_keep_their_own() -> None:
    def batch(partition: int, rows: int) -> Batch:
        b = Batch(partition)
        for offset in range(rows):
            b.add(offset, b"", 1)
        return b

    small = [batch(p, 10) for p in range(6)]
    assert [[b.partition for b in g] for g in form_groups(small, 50_000)] == [[0, 1, 2, 3, 4, 5]]
    assert [[b.partition for b in g] for g in form_groups(small, 25)] == [[0, 1], [2, 3], [4, 5]]
    full = [batch(0, 30), batch(1, 5), batch(2, 30)]
    assert [[b.partition for b in g] for g in form_groups(full, 30)] == [[0], [1], [2]]
    many = [batch(p, 1) for p in range(MAX_GROUP + 1)]
    assert [len(g) for g in form_groups(many, 50_000)] == [MAX_GROUP, 1]
