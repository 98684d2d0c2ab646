"""Empty fetches pause like a long poll; fetches that bring records are never delayed."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka.consumer.fetcher import Fetcher

from postbacks import fetch


def test_only_empty_fetches_pause() -> None:
    assert fetch.pause_after(got_records=False, pause_s=0.1) == 0.1
    assert fetch.pause_after(got_records=True, pause_s=0.1) == 0.0


async def test_wrapper_keeps_the_answer_and_pauses_only_when_empty() -> None:
    answers = iter([True, False])

    async def proc_fetch(self: Any, assignment: Any, node_id: int, request: Any) -> bool:
        return next(answers)

    wrapped = fetch.with_empty_fetch_pause(proc_fetch, 0.05)
    started = time.perf_counter()
    assert await wrapped(object(), None, 0, None) is True
    assert time.perf_counter() - started < 0.04
    started = time.perf_counter()
    assert await wrapped(object(), None, 0, None) is False
    assert time.perf_counter() - started >= 0.05


def test_install_is_idempotent_and_restorable() -> None:
    original = Fetcher._proc_fetch_request
    try:
        assert fetch.install(0.01)
        patched = Fetcher._proc_fetch_request
        assert patched is not original
        assert fetch.install(0.01)
        assert Fetcher._proc_fetch_request is patched  # not wrapped twice
    finally:
        Fetcher._proc_fetch_request = original


async def test_a_cancelled_pause_ends_quietly_as_aiokafka_close_expects() -> None:
    """aiokafka's Fetcher.close() cancels its fetch tasks and awaits them: they must not raise."""

    async def empty(self: Any, *args: Any) -> bool:
        return False

    task = asyncio.create_task(fetch.with_empty_fetch_pause(empty, 10.0)(object()))
    await asyncio.sleep(0.01)
    task.cancel()
    assert await task is False
