"""`postbacks up` on a fresh data dir: starts everything, attributes a postback, survives a crashed
worker, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from ingest.auth import TokenAuth
from ingest.sources import load_sources
from postbacks.settings import Settings
from schemas import CONVERSION, POSTBACK_RAW
from tests.helpers import REPO, read_topic
from tests.integration.conftest import running_up

pytestmark = pytest.mark.integration


def children_of(pid: int) -> list[str]:
    return subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()


def test_up_runs_the_stack_and_ctrl_c_stops_all_of_it(tmp_path: Path) -> None:
    with running_up(tmp_path, {"STREAM_SESSION_TIMEOUT_S": "6"}) as stack:
        up, out, env, banner = stack.process, stack.out, stack.env, stack.banner
        assert stack.ingest.startswith("http://127.0.0.1:"), banner
        bootstrap = re.search(r"^\s+kafka\s+(\S+)", banner, re.MULTILINE).group(1)  # type: ignore[union-attr]
        assert re.search(r"Apache Kafka 4\.\d+\.\d+ \(KRaft, 1 node", banner), banner  # the version runs
        source = load_sources(tmp_path / "data" / "sources.toml").get(None)
        assert source is not None and isinstance(source.auth, TokenAuth)
        token = source.auth.tokens[0]
        assert token in banner  # the printed curl example works as printed
        base = stack.ingest
        kafka = Settings(kafka_bootstrap_servers=bootstrap)

        def convert(txid: str) -> str:
            click_id: str = httpx.get(
                f"{base}/click", params={"offer_id": "o1", "publisher_id": "p1", "format": "json"}
            ).json()["click_id"]
            response = httpx.get(
                f"{base}/postback",
                params={
                    "clickid": click_id,
                    "event_name": "purchase",
                    "txid": txid,
                    "payout": "1.5",
                    "currency": "EUR",
                    "token": token,
                },
            )
            assert response.status_code == 200, response.text
            return click_id

        first = convert("T1")
        [record] = read_topic(kafka, "postbacks.raw", POSTBACK_RAW, expect=1)
        assert record["click_id"] == first
        [conversion] = read_topic(kafka, "conversions.attributed", CONVERSION, expect=1, timeout_s=60)
        assert (conversion["click_id"], conversion["status"]) == (first, "approved")
        children = children_of(up.pid)
        assert len(children) == 5, children  # broker, ingest, stream, sink, outbound

        # A crashed stream worker is restarted by the supervisor and carries on.
        streams = subprocess.run(["pgrep", "-f", "commands.cli stream"], capture_output=True, text=True)
        [stream_pid] = [pid for pid in streams.stdout.split() if pid in children]
        os.kill(int(stream_pid), signal.SIGKILL)
        second = convert("T2")
        # A replay after the crash may re-emit the first conversion: identical, so counted once downstream.
        deadline = time.monotonic() + 60
        distinct: dict[tuple[str, int], str] = {}
        while set(distinct.values()) != {first, second} and time.monotonic() < deadline:
            for c in read_topic(kafka, "conversions.attributed", CONVERSION, expect=99, timeout_s=1):
                distinct[(c["conversion_id"], c["version"])] = c["click_id"]
        assert sorted(distinct.values()) == sorted([first, second]), out.read_text()
        assert "stream exited" in out.read_text()

        # The analysts' report, from another process, through the running sink's engine.
        deadline = time.monotonic() + 30
        report: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            cli = subprocess.run(
                [sys.executable, "-m", "commands.cli", "report", "--by", "offer", "--format", "json"],
                env=env,
                cwd=REPO,
                capture_output=True,
                text=True,
                check=True,
            )
            report = json.loads(cli.stdout)
            if report and report[0]["conversions"] == 2:
                break
            time.sleep(0.5)
        assert [(r["offer"], r["clicks"], r["conversions"]) for r in report] == [("o1", 2, 2)], report
        # Payout 1.5 EUR per conversion at the shipped 1.08 USD/EUR; no revenue was reported.
        assert (Decimal(report[0]["payout_usd"]), Decimal(report[0]["revenue_usd"])) == (Decimal("3.24"), 0)

        children = children_of(up.pid)
        up.send_signal(signal.SIGINT)
        assert up.wait(45) == 0
        assert "stopped." in out.read_text()
        time.sleep(0.5)
        for pid in children:  # nothing left behind
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
