"""The outbound half of `postbacks demo`: publishers' endpoints on this machine, and their checks.

The demo configures a postback for each of its publishers (`[publishers.<id>]` in the
sources file it writes before `postbacks up` starts), all pointing at one local
receiver, one path per publisher; one of them answers 503 to each first request, so
retries show. Each approved conversion version must reach its publisher exactly once:
checked in ClickHouse (`outbound_postbacks`) and at the receiver (distinct
Idempotency-Keys, and raw requests).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from commands.local.receiver import Received, Receiver
from ingest.sources import write_starter_sources
from postbacks.settings import Settings

Query = Callable[[Settings, str], tuple[list[str], list[list[Any]]]]

FLAKY = "pub-2"  # answers 503 to the first request of each delivery
_QUERY = "clickid={clickid}&sub1={sub1}&payout={payout}&currency={currency}&event={event_name}&txid={txid}"
_JSON_BODY = '{"click": "{clickid}", "payout": {payout}, "currency": "{currency}", "event": "{event_name}"}'

BY_PUBLISHER_SQL = """
SELECT publisher_id AS publisher,
       uniqExactIf(idempotency_key, outcome = 'delivered') AS delivered,
       uniqExactIf(idempotency_key, outcome = 'dead') AS dead,
       countIf(latency_ms IS NOT NULL) AS requests,
       toUInt32(avgIf(latency_ms, latency_ms IS NOT NULL)) AS avg_latency_ms
FROM outbound_postbacks
GROUP BY publisher
ORDER BY length(publisher), publisher
"""


def answer(request: Received, seen: int) -> int:
    return 503 if request.path == f"/pb/{FLAKY}" and seen == 1 else 200


def start_receiver() -> Receiver:
    return Receiver(answer).start()


def write_sources(path: Path, receiver_url: str, publishers: Sequence[str]) -> str:
    """The demo's sources file: the starter source (a fresh token) and a postback per publisher."""
    token = write_starter_sources(path)
    tables = []
    for i, pid in enumerate(publishers):
        if i == 0:  # one publisher takes a JSON POST, signed
            tables.append(
                f'[publishers.{pid}]\nurl = "{receiver_url}/pb/{pid}"\nmethod = "POST"\n'
                f"content_type = \"application/json\"\nbody = '{_JSON_BODY}'\n"
                'hmac_secret = "demo-secret-0123456789"\n'
            )
        else:
            tables.append(f'[publishers.{pid}]\nurl = "{receiver_url}/pb/{pid}?{_QUERY}"\n')
    with path.open("a", encoding="utf-8") as out:
        out.write("\n# Outbound postbacks to the demo's local receiver (README 'Outbound postbacks').\n")
        out.write("\n".join(tables))
    return token


def wait_for_outbound(
    settings: Settings, expected: Counter[str], receiver: Receiver, timeout_s: float, query: Query
) -> tuple[list[tuple[str, Any, Any]], tuple[list[str], list[list[Any]]]]:
    """(measures, per-publisher table), once every expected delivery is in or `timeout_s` passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        columns, rows = query(settings, BY_PUBLISHER_SQL)
        delivered = {str(r[0]): int(r[1]) for r in rows}
        received = {path.rsplit("/", 1)[-1]: len(keys) for path, keys in receiver.by_path().items()}
        if (delivered == dict(expected) and received == dict(expected)) or time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    per_key = Counter((r.path, r.idempotency_key) for r in list(receiver.received))
    # Requests beyond one per delivery (two for the flaky publisher: its planned 503, then the retry).
    twice = sum(max(0, n - (2 if path == f"/pb/{FLAKY}" else 1)) for (path, _), n in per_key.items())
    total = sum(expected.values())
    differ = sorted(p for p in set(expected) | set(delivered) if expected.get(p, 0) != delivered.get(p, 0))
    checks: list[tuple[str, Any, Any]] = [
        ("outbound delivered", total, sum(delivered.values())),
        ("outbound publishers matching", len(expected), len(expected) - len(differ)),
        ("outbound received (distinct)", total, sum(received.values())),
        ("outbound sent twice", 0, twice),
    ]
    table_columns = [*columns, "expected", "received"]
    table = [[*r, expected.get(str(r[0]), 0), received.get(str(r[0]), 0)] for r in rows]
    return checks, (table_columns, table)
