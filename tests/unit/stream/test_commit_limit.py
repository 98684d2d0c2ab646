"""Faust must not commit a source partition past the last record the agent finished."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faust
import pytest
from faust.types import TP

from postbacks.catalog import EMPTY_CATALOG
from postbacks.settings import Settings
from postbacks.topics import Topics
from stream.app import StreamApp
from stream.commit_limit import CommitLimitedConsumer
from stream.continuity import PROCESS

RAW = Topics("t").postbacks_raw


def acked(consumer: Any, tp: TP, *offsets: int) -> None:
    """What the stream's acks leave in Faust's bookkeeping."""
    for offset in offsets:
        consumer._acked[tp].append(offset)
        consumer._acked_index[tp].add(offset)


@pytest.fixture
def stream(tmp_path: Path) -> StreamApp:
    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:9", stream_store="memory", data_dir=tmp_path, topic_prefix="t"
    )
    app = StreamApp(settings, EMPTY_CATALOG, {})
    app.app.finalize()
    return app


def test_faust_alone_commits_past_a_one_record_hole(tmp_path: Path) -> None:
    """The flaw this guards against. If Faust fixes it, this fails and says so."""
    consumer = faust.App("plain", broker="kafka://127.0.0.1:9", datadir=str(tmp_path)).consumer
    tp = TP(RAW, 0)
    consumer._committed_offset[tp] = 5
    acked(consumer, tp, 6)  # offset 5 never reached the agent
    assert consumer._new_offset(tp) == 7
    fresh = TP(RAW, 1)  # no commit yet: no check at all
    acked(consumer, fresh, 4)
    assert consumer._new_offset(fresh) == 5


def test_the_stream_commits_no_further_than_the_agent_finished(stream: StreamApp) -> None:
    consumer = stream.app.consumer
    assert isinstance(consumer, CommitLimitedConsumer)
    tp = TP(RAW, 0)
    consumer._committed_offset[tp] = 5
    assert stream.continuity.admit(RAW, 0, 5, 5, 0.0) == PROCESS
    stream.continuity.done(RAW, 0, 5)
    # Faust's bookkeeping runs ahead of the agent: 6..9 counted as a gap, 8 as acked.
    acked(consumer, tp, 5, 8)
    consumer._gap[tp].addi(6, 10)
    assert consumer._new_offset(tp) == 6
    consumer._committed_offset[tp] = 6
    for offset in range(6, 10):  # the agent gets there; its acks are recorded again; the commit follows
        assert stream.continuity.admit(RAW, 0, offset, None, 0.0) == PROCESS
        stream.continuity.done(RAW, 0, offset)
        acked(consumer, tp, offset)
    commits = []
    while (offset := consumer._new_offset(tp)) is not None:  # one per commit interval
        commits.append(offset)
        consumer._committed_offset[tp] = offset
    assert commits and commits[-1] == 10 and max(commits) == 10


def test_after_a_rebalance_nothing_is_committed_until_the_agent_finishes_a_record(stream: StreamApp) -> None:
    consumer = stream.app.consumer
    tp = TP(RAW, 1)
    consumer._committed_offset[tp] = 3
    stream.continuity.done(RAW, 1, 9)
    stream.continuity.forget()
    acked(consumer, tp, 3, 4)  # acks Faust kept from before the rebalance
    assert consumer._new_offset(tp) is None
    assert stream.continuity.admit(RAW, 1, 3, 3, 0.0) == PROCESS
    stream.continuity.done(RAW, 1, 3)
    acked(consumer, tp, 3, 4)
    assert consumer._new_offset(tp) == 4


def test_topics_that_are_not_sources_are_not_limited(stream: StreamApp) -> None:
    consumer = stream.app.consumer
    tp = TP("t.something-else", 0)
    acked(consumer, tp, 0, 1, 2)
    assert consumer._new_offset(tp) == 3
