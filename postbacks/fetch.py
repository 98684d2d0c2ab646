"""Empty fetches wait a little before the next one, as a long-polling broker would make them.

An aiokafka consumer sends its next Fetch request as soon as the previous answer is
handled. Apache Kafka holds a Fetch that finds nothing for up to `fetch.max.wait.ms`
(Faust asks for 1.5 s), so a consumer on idle partitions sends a couple of requests a
second. A broker that answers empty fetches at once (the embedded broker does: README
"Local stack") turns the same consumer into a busy loop: in a stream worker, Faust's
consumer thread and the fx.rates reader then spend most of a core sending empty
requests and take the GIL from the agent.

`install` makes a fetch that brought no record keep its node's slot for
`EMPTY_FETCH_PAUSE_S` more before aiokafka may send the next one to that node. On
Apache Kafka an empty answer has already waited `fetch.max.wait.ms`, so the pause only
adds at most that much latency to the first record after an idle spell; a fetch that
brings any record is never delayed, so a busy stream is not slowed. Records are never
skipped or reordered: the pause happens after the answer was fully handled, and
positions are untouched. Every service process installs it (postbacks/cli.py): the
stream worker, the sink's writers and the outbound worker all hold consumers that sit
on idle partitions most of the day.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from aiokafka.consumer.fetcher import Fetcher

log = logging.getLogger(__name__)

#: How long an empty fetch keeps its node busy: well under Kafka's own long poll.
EMPTY_FETCH_PAUSE_S = 0.1

_MARK = "_postbacks_empty_fetch_pause"

ProcFetch = Callable[..., Coroutine[Any, Any, bool]]


def pause_after(got_records: bool, pause_s: float) -> float:
    """Seconds to wait before the node may be fetched from again."""
    return 0.0 if got_records else pause_s


def with_empty_fetch_pause(proc_fetch: ProcFetch, pause_s: float) -> ProcFetch:
    """Wrap aiokafka's per-node fetch coroutine (it returns True when it buffered records)."""

    @functools.wraps(proc_fetch)
    async def proc_fetch_with_pause(self: Any, *args: Any, **kwargs: Any) -> bool:
        got_records = await proc_fetch(self, *args, **kwargs)
        delay = pause_after(got_records, pause_s)
        if delay:
            try:
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                # Cancelled by a rebalance or close(), which then awaits this task: like
                # aiokafka's own fetch, end quietly, the answer no longer matters.
                return False
        return got_records

    setattr(proc_fetch_with_pause, _MARK, True)
    return proc_fetch_with_pause


def install(pause_s: float = EMPTY_FETCH_PAUSE_S) -> bool:
    """Patch aiokafka's Fetcher in this process (idempotent); False if its internals changed."""
    current = getattr(Fetcher, "_proc_fetch_request", None)
    if current is None or not asyncio.iscoroutinefunction(current):
        log.warning("aiokafka Fetcher changed: empty fetches are not paused")
        return False
    if not getattr(current, _MARK, False):
        Fetcher._proc_fetch_request = with_empty_fetch_pause(current, pause_s)
    return True
