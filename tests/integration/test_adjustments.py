"""Advertiser adjustments through the real ingest, stream worker and sink into ClickHouse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from postbacks.settings import Settings
from postbacks.topics import Topics
from schemas import CONVERSION
from stream.rules.fx import load_rates
from tests.helpers import IngestProcess, SinkProcess, StreamWorker, read_topic
from tests.integration.stream_scenario import collect
from tests.integration.test_stream import STREAM_ENV

pytestmark = pytest.mark.integration

TOKEN = "sender-token-0123456789"
ADMIN = "admin-token-0123456789abcdef"


def test_adjustments_become_versions_once_and_the_aggregates_follow(
    pipeline_settings: Settings, tmp_path: Path
) -> None:
    sources = tmp_path / "sources-admin.toml"
    sources.write_text(
        'default_source = "default"\n[sources.default]\nauth = "token"\n'
        f'tokens = ["{TOKEN}"]\n[admin.tokens]\nalice = "{ADMIN}"\n',
        encoding="utf-8",
    )
    settings = pipeline_settings.with_overrides(sources_file=sources)
    expected: list[tuple[str, str, str]] = []
    worker = StreamWorker.for_settings(settings, tmp_path, **STREAM_ENV).start()
    sink = SinkProcess.for_settings(settings, tmp_path / "sink").start()
    try:
        with (
            IngestProcess.start(settings, tmp_path, SOURCES_FILE=str(sources)) as ingest,
            httpx.Client(base_url=ingest.base_url, timeout=30) as http,
        ):
            click_id = http.get(
                "/click", params={"offer_id": "o1", "publisher_id": "p1", "format": "json"}
            ).json()["click_id"]
            sale = http.get(
                "/postback", params={"clickid": click_id, "txid": "T1", "payout": "2", "token": TOKEN}
            )
            assert sale.status_code == 200, sale.text
            expected.append((sale.json()["request_id"], "conversion", "approved"))
            [conversion] = read_topic(
                settings, Topics(settings.topic_prefix).conversions_attributed, CONVERSION, 1
            )
            cid = conversion["conversion_id"]

            def adjust(
                conversion_id: str, adjustment_id: str, action: str, click: str = click_id, **more: str
            ) -> str:
                answer = http.post(
                    f"/conversions/{conversion_id}/status",
                    json={
                        "adjustment_id": adjustment_id,
                        "click_id": click,
                        "action": action,
                        "reason": "dispute 7",
                        **more,
                    },
                    headers={"authorization": f"Bearer {ADMIN}"},
                )
                assert answer.status_code == 202, answer.text
                return str(answer.json()["request_id"])

            expected.append((adjust(cid, "adj-1", "reject"), "conversion", "rejected"))
            expected.append((adjust(cid, "adj-1", "reject"), "duplicate", "same_key"))  # the admin's retry
            expected.append((adjust(cid, "adj-2", "approve"), "conversion", "approved"))  # back, after review
            expected.append(
                (adjust(cid, "adj-3", "payout", payout="1.5", currency="EUR"), "conversion", "approved")
            )
            expected.append((adjust("f" * 32, "adj-4", "approve"), "rejected", "unknown_conversion"))
            # A click the stream never saw: held for the grace period, then refused, never dropped.
            expected.append(
                (adjust(cid, "adj-5", "approve", click="no-such-click"), "rejected", "unknown_conversion")
            )
        assert collect(settings, expect=len(expected), timeout_s=90) == sorted(expected), worker.log_tail()
        eur = load_rates()["EUR"]
        want_payout = (Decimal("1.5") * eur).quantize(Decimal("0.000001"))
        want_latest = [("approved", Decimal("1.5"), "EUR", want_payout)]
        want_totals = [("approved", 1, want_payout)]  # counted once, at its last payout
        deadline = time.monotonic() + 60
        latest: list[tuple[object, ...]] = []
        totals: list[tuple[object, ...]] = []
        while time.monotonic() < deadline:
            latest = [
                (r[0], Decimal(str(r[1])), r[2], Decimal(str(r[3])))
                for r in sink.query(
                    "SELECT status, payout, payout_currency, payout_usd FROM conversions FINAL "
                    f"WHERE conversion_id = '{cid}'"
                )
            ]
            totals = [
                (r[0], int(r[1]), Decimal(str(r[2])))
                for r in sink.query(
                    "SELECT status, sum(conversions), sum(payout_usd) FROM conversions_hourly "
                    "GROUP BY status HAVING sum(conversions) != 0"
                )
            ]
            if (latest, totals) == (want_latest, want_totals):
                break
            time.sleep(0.5)
        assert (latest, totals) == (want_latest, want_totals)
        audit = sink.query(
            "SELECT version, status, enrichment['adjusted_by'], enrichment['adjustment_reason'] "
            f"FROM conversion_versions WHERE conversion_id = '{cid}' ORDER BY version"
        )
        assert [tuple(r[1:]) for r in audit] == [
            ("approved", "", ""),
            ("rejected", "alice", "dispute 7"),
            ("approved", "alice", "dispute 7"),
            ("approved", "alice", "dispute 7"),
        ]
        # `postbacks adjust`: the click found in ClickHouse, the token in the sources file.
        with IngestProcess.start(settings, tmp_path / "cli", SOURCES_FILE=str(sources)) as ingest:
            env = {
                **os.environ,
                **settings.with_overrides(data_dir=tmp_path / "sink", clickhouse_dsn="").to_env(),
                "SOURCES_FILE": str(sources),
            }
            env.pop("CLICKHOUSE_DSN", None)
            cli = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "commands.cli",
                    "adjust",
                    cid,
                    "reject",
                    "--reason",
                    "fraud review",
                    "--id",
                    "adj-6",
                    "--url",
                    ingest.base_url,
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
        assert cli.returncode == 0, cli.stdout + cli.stderr
        answer = json.loads(cli.stdout)
        assert (answer["http_status"], answer["adjustment_id"]) == (202, "adj-6")
        expected.append((answer["request_id"], "conversion", "rejected"))
        assert collect(settings, expect=len(expected), timeout_s=60) == sorted(expected), worker.log_tail()
    finally:
        sink.stop()
        worker.stop()
