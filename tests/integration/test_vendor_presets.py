"""Every vendor preset's identity table through the real ingest and a real stream worker.

The same rows as the unit test (tests/vendor_cases.py), sent as HTTP requests to a
source per preset configured with nothing but its preset (so `dedup_policy = "auto"`),
and each acknowledged request's outcome read back from the stream's output topics.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from ingest.aliases import PRESETS
from postbacks.settings import Settings
from postbacks.topics import Topics
from schemas import CONVERSION
from tests.helpers import IngestProcess, StreamWorker, read_topic
from tests.integration.stream_scenario import collect
from tests.integration.test_stream import STREAM_ENV
from tests.vendor_cases import CASES, C, R, fill

pytestmark = pytest.mark.integration

TOKEN = "vendor-presets-token-0123456789"


def write_sources(path: Path) -> None:
    lines = ['default_source = "generic"', ""]
    for preset in sorted(PRESETS):
        lines += [
            f"[sources.{preset}]",
            'auth = "token"',
            f'tokens = ["{TOKEN}"]',
            f'preset = "{preset}"',
            "",
        ]
    path.write_text("\n".join(lines), encoding="utf-8")


def test_every_preset_row_through_ingest_and_stream(pipeline_settings: Settings, tmp_path: Path) -> None:
    sources = tmp_path / "vendors.toml"
    write_sources(sources)
    settings = pipeline_settings.with_overrides(sources_file=sources)
    expected: list[tuple[str, str, str]] = []
    labels: dict[str, str] = {}  # request id -> "<preset>/<conversion label>"
    worker = StreamWorker.for_settings(settings, tmp_path, **STREAM_ENV).start()
    try:
        with (
            IngestProcess.start(settings, tmp_path, SOURCES_FILE=str(sources)) as ingest,
            httpx.Client(base_url=ingest.base_url, timeout=30) as http,
        ):

            def send(preset: str, query: str) -> str:
                answer = http.get(f"/postback/{preset}?{query}&token={TOKEN}")
                assert answer.status_code == 200, answer.text
                return str(answer.json()["request_id"])

            def click() -> tuple[str, int]:
                click_s = int(time.time())
                answer = http.get("/click", params={"offer_id": "o1", "publisher_id": "p1", "format": "json"})
                return str(answer.json()["click_id"]), click_s

            for preset, rows in sorted(CASES.items()):
                click_id, click_s = click()
                for query, kind, outcome, label in rows:
                    request_id = send(preset, fill(query, click_id, click_s))
                    expected.append((request_id, kind, outcome))
                    labels[request_id] = f"{preset}/{label}"
            # Seconds after their clicks: a web lead is a conversion, an install is click injection.
            lead, _ = click()
            expected.append((send("generic", f"clickid={lead}&payout=2&status=pending"), C, "pending"))
            injected, _ = click()
            expected.append((send("generic", f"clickid={injected}&event=install"), R, "ctit_too_short"))
        got = collect(settings, expect=len(expected))
        assert got == sorted(expected), worker.log_tail()
        conversions = read_topic(
            settings,
            Topics(settings.topic_prefix).conversions_attributed,
            CONVERSION,
            expect=sum(kind == C for _, kind, _ in expected),
        )
    finally:
        worker.stop()
    by_label: dict[str, set[str]] = {}
    for conversion in conversions:
        if conversion["request_id"] in labels:
            by_label.setdefault(labels[conversion["request_id"]], set()).add(conversion["conversion_id"])
    assert all(len(ids) == 1 for ids in by_label.values()), by_label  # updates are versions of one
    distinct = [next(iter(ids)) for ids in by_label.values()]
    assert len(distinct) == len(set(distinct)), by_label  # different identities never merge
    assert len(by_label) == sum(len({row[3] for row in rows if row[1] == C}) for rows in CASES.values())
