"""View-through attribution through the real ingest, stream worker and sink into ClickHouse.

An impression, then a postback from the same device quoting a click nobody issued: held for the
grace period, routed to view-through by the clock, attributed to the impression, in ClickHouse
with attribution_type = view. A postback from a device with no impression is refused as before,
and a click inside its window beats the device's impression.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from postbacks.settings import Settings
from tests.helpers import IngestProcess, SinkProcess, StreamWorker
from tests.integration.stream_scenario import collect
from tests.integration.test_stream import STREAM_ENV

pytestmark = pytest.mark.integration

TOKEN = "sender-token-0123456789"
GAID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
OTHER = "9b2c1d3e-0000-4000-8000-00000000abcd"


def test_an_impression_converts_a_postback_without_a_known_click(
    pipeline_settings: Settings, tmp_path: Path
) -> None:
    sources = tmp_path / "sources-view.toml"  # IngestProcess writes its own sources.toml
    sources.write_text(
        f'default_source = "default"\n[sources.default]\nauth = "token"\ntokens = ["{TOKEN}"]\n',
        encoding="utf-8",
    )
    settings = pipeline_settings.with_overrides(sources_file=sources)
    worker = StreamWorker.for_settings(settings, tmp_path, **STREAM_ENV).start()
    sink = SinkProcess.for_settings(settings, tmp_path / "sink").start()
    expected: list[tuple[str, str, str]] = []
    try:
        with (
            IngestProcess.start(settings, tmp_path, SOURCES_FILE=str(sources)) as ingest,
            httpx.Client(base_url=ingest.base_url, timeout=30) as http,
        ):
            seen = http.get(
                "/impression",
                params={"offer_id": "o1", "publisher_id": "p7", "campaign_id": "cmp", "gaid": GAID},
            )
            assert seen.status_code == 200, seen.text
            impression_id = seen.json()["impression_id"]
            refused = http.get("/impression", params={"offer_id": "o1", "publisher_id": "p7"})
            assert (refused.status_code, refused.json()["reason"]) == (400, "missing_device_id")
            expected.append((refused.json()["request_id"], "rejected", "missing_device_id"))  # kept
            time.sleep(0.5)  # the impression is in its log before the postbacks are received

            def postback(**params: str) -> str:
                answer = http.get("/postback", params={"token": TOKEN, **params})
                assert answer.status_code == 200, answer.text
                return str(answer.json()["request_id"])

            # No click "adv-123" was ever issued: the device's impression attributes it.
            expected.append(
                (postback(clickid="adv-123", txid="T1", payout="3", gaid=GAID), "conversion", "approved")
            )
            # Another device, no impression: refused as without view-through.
            expected.append((postback(clickid="adv-456", txid="T2", gaid=OTHER), "rejected", "unknown_click"))
            # A click inside its window beats the impression of the same device.
            click_id = http.get(
                "/click", params={"offer_id": "o1", "publisher_id": "p1", "format": "json"}
            ).json()["click_id"]
            expected.append(
                (postback(clickid=click_id, txid="T3", payout="1", gaid=GAID), "conversion", "approved")
            )
        assert collect(settings, expect=len(expected), timeout_s=90) == sorted(expected), worker.log_tail()
        want = [("adv-123", "view", impression_id, "p7"), (click_id, "click", None, "p1")]
        rows: list[tuple[object, ...]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and rows != sorted(want):
            rows = sorted(
                tuple(r)
                for r in sink.query(
                    "SELECT click_id, attribution_type, impression_id, publisher_id FROM conversions FINAL"
                )
            )
            time.sleep(0.5)
        assert rows == sorted(want)
        totals = sink.query(
            "SELECT attribution_type, sum(conversions), sum(payout_usd) FROM conversions_hourly "
            "GROUP BY attribution_type ORDER BY attribution_type"
        )
        assert [(r[0], int(r[1]), float(r[2])) for r in totals] == [("click", 1, 1.0), ("view", 1, 3.0)]
        kept = sink.query("SELECT reason FROM rejected_postbacks WHERE path = '/impression'")
        assert [r[0] for r in kept] == ["missing_device_id"]
    finally:
        sink.stop()
        worker.stop()
