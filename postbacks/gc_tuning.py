"""The cyclic garbage collector's young-generation threshold, for services that allocate per record.

Why. CPython runs a young collection every 700 net allocations of container objects (dicts,
lists, objects). A stream worker allocates several per record (the decoded postback, the
conversion record, its output's objects) and keeps many alive across batches (the decoded
click states), so at 700 the collector ran every few records and traversed whatever was
alive then: each batch's records were scanned several times before they were freed, and
every survivor went on to the older generations, whose full collections traverse the whole
heap. Almost none of it is cyclic garbage; reference counting frees it.

So a service raises the threshold once at start: young collections become rare and the
records of a batch are freed by reference counting before any collection sees them. What
the service built at start (modules, the app, its configuration) is moved out of the
collector's reach first (`gc.freeze`), so no full collection traverses it again. The
collector still runs: a cycle is still found, only later. `PYTHON_GC_THRESHOLD=700` gives
Python's default back; 0 leaves the collector exactly as Python set it.

The stream worker and the sink call this (measured back to back: docs/benchmarks.md,
"Python's garbage collector"). The ingest does not: in two pairs it measured no better with
it (its objects live for one request, inside granian's worker).
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def tune(young_threshold: int) -> None:
    """Freeze what exists now, then collect the young generation every `young_threshold` allocations."""
    if young_threshold <= 0:
        return
    gc.collect()  # what startup left as garbage is freed, not frozen
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young_threshold, older, oldest)
    log.info(
        "garbage collector tuned",
        extra={"young_threshold": young_threshold, "frozen_objects": gc.get_freeze_count()},
    )
