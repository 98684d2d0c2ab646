"""postbacks.shutdown: a stop tripping on its own cancelled request ends; a stream stop has the deadline."""

from __future__ import annotations

import asyncio

import pytest

from postbacks import shutdown


async def _stop_cancelling_its_own_fetch() -> None:
    """What aiokafka's consumer.stop() does with a fetch sleeping out a retry: cancel it, await it."""
    fetch = asyncio.create_task(asyncio.sleep(10))
    await asyncio.sleep(0)
    fetch.cancel()
    await fetch


def test_a_stop_that_trips_on_its_own_cancelled_request_is_finished() -> None:
    asyncio.run(shutdown.close(_stop_cancelling_its_own_fetch(), "consumer"))  # no CancelledError


def test_a_real_cancellation_of_the_caller_still_propagates() -> None:
    async def main() -> None:
        task = asyncio.create_task(shutdown.close(asyncio.sleep(10), "consumer"))
        await asyncio.sleep(0)
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())


def test_a_stream_worker_stopping_for_any_reason_has_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Faust stops the worker on a crash too, not only on a signal; that stop commits and can hang."""
    import faust

    from stream.worker import _Worker

    armed: list[tuple[float, str]] = []
    stopped: list[bool] = []

    async def faust_stop(self: object) -> None:
        stopped.append(True)

    monkeypatch.setattr(shutdown, "arm", lambda timeout_s, service: armed.append((timeout_s, service)))
    monkeypatch.setattr(faust.Worker, "stop", faust_stop)
    worker = _Worker.__new__(_Worker)
    worker.shutdown_timeout_s = 7.5
    asyncio.run(worker.stop())
    assert armed == [(7.5, "stream")] and stopped == [True]
