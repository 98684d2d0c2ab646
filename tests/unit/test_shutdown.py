"""postbacks.shutdown.close: a client's stop that raises CancelledError on its own is not a crash."""

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
