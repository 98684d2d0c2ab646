"""A stop that ends: once told to stop, a service exits within SHUTDOWN_TIMEOUT_S, drained or not.

A service asked to stop drains and commits, which needs the broker. With the broker gone for
good, the clients retry that forever, and a stopped `postbacks up` left such processes behind,
orphaned. Past the deadline the process exits anyway, with an error line saying what it gave up.
Nothing guaranteed is lost by that, as nothing is lost by a crash: a 2xx was only ever sent after
the broker's ack; what was not committed is re-read by the next owner of the partitions, where
the sink's plan/insert-token protocol and the outbound worker's recorded delivery states absorb it.

The deadline is a timer thread, not a task: it fires even when the event loop is stuck in a
retry loop or the interpreter is joining threads at exit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

#: The exit status past the deadline: not 0 (the stop did not finish), not a signal's.
EXIT_TIMED_OUT = 3

_armed: threading.Timer | None = None


def arm(timeout_s: float, service: str) -> None:
    """Exit the process `timeout_s` from now unless it has ended by then (the first call counts)."""
    global _armed
    if _armed is not None:
        return
    log.info("stopping", extra={"service": service, "shutdown_timeout_s": timeout_s})

    def expire() -> None:
        log.error(
            "shutdown deadline passed, exiting without finishing the drain "
            "(what is not committed is re-read by the next owner)",
            extra={"service": service, "shutdown_timeout_s": timeout_s},
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stderr.flush()
        os._exit(EXIT_TIMED_OUT)

    _armed = threading.Timer(timeout_s, expire)
    _armed.daemon = True
    _armed.name = "shutdown-deadline"
    _armed.start()


def on_stop_signals(
    loop: asyncio.AbstractEventLoop, stop: Callable[[], None], timeout_s: float, service: str
) -> None:
    """SIGTERM and SIGINT call `stop` and start the deadline."""

    def handler() -> None:
        arm(timeout_s, service)
        stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, handler)


async def close(stopping: Awaitable[None], what: str) -> None:
    """Await a Kafka client's `stop()`, which with the broker gone can fail in ways that do not matter.

    aiokafka's consumer cancels a fetch that is sleeping out a retry and then awaits it, so its
    `stop()` raises CancelledError though nobody cancelled the caller; that turned a finished stop
    into a traceback and exit status 1. A real cancellation of the caller still propagates.
    """
    try:
        await stopping
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        log.warning("kafka client stopped with a request still pending", extra={"client": what})
    except Exception as exc:  # a failed close of a client being dropped is only logged
        log.warning("kafka client stop failed", extra={"client": what, "error": repr(exc)})
