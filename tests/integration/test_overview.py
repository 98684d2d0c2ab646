"""The live overview page in a real browser (headless Chromium from Debian's package) on `postbacks up`:
after a synthetic day's traffic (the demo's generator, its outbound receiver) the page loads with no
console error, and its numbers equal `postbacks report`'s, for the minute range and the hour range.

UPDATE_SCREENSHOT=1 also writes docs/overview.png (the README's picture) from this run.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from commands import demo, demo_outbound
from commands.cli import _query
from postbacks.settings import Settings
from stream.rules.fx import load_rates
from tests.chromium_tools import Page, chromium
from tests.helpers import REPO
from tests.integration.conftest import UpStack, running_up

CLICKS = 300
SEED = 18


def report(stack: UpStack, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "commands.cli", "report", "--by", "", *args],
        env=stack.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def report_numbers(stack: UpStack, *args: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`postbacks report`'s totals (its JSON) and its refusals table, as a user reads them."""
    (totals,) = json.loads(report(stack, "--format", "json", *args))
    table = report(stack, *args).strip().split("\n\n")[-1].splitlines()
    assert table[0].split() == ["kind", "stage", "reason", "postbacks"], table
    refusals = [
        {"kind": kind, "stage": stage, "reason": reason, "postbacks": int(n)}
        for kind, stage, reason, n in (line.split() for line in table[2:])
    ]
    return totals, refusals


def assert_same(page: dict[str, Any], totals: dict[str, Any], refusals: list[dict[str, Any]]) -> None:
    t = page["totals"]
    assert (t["clicks"], t["conversions"], t["pending"], t["reversed"]) == (
        totals["clicks"],
        totals["conversions"],
        totals["pending"],
        totals["reversed"],
    )
    assert Decimal(t["revenue_usd"]) == Decimal(totals["revenue_usd"])
    assert Decimal(t["payout_usd"]) == Decimal(totals["payout_usd"])
    assert round(t["cr"], 6) == totals["cr"]
    assert page["refusals"] == refusals


async def show(page: Page, choose: str, refreshes: int) -> dict[str, Any]:
    await page.evaluate(choose)
    numbers = await page.wait_for(
        f"window.overview && window.overview.refreshes >= {refreshes} && window.overview.numbers",
        timeout_s=60,
    )
    assert numbers, await page.evaluate("document.body.innerText")
    result: dict[str, Any] = numbers
    return result


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """`postbacks up` with the demo's publishers and receiver, after a synthetic day, drained."""
    tmp = tmp_path_factory.mktemp("overview")
    receiver = demo_outbound.start_receiver()
    sources = tmp / "sources.toml"
    token = demo_outbound.write_sources(sources, receiver.url, demo.PUBLISHERS)
    try:
        with running_up(tmp, {"SOURCES_FILE": str(sources), "UNKNOWN_CLICK_GRACE_S": "5"}) as stack:
            settings = Settings.from_env(stack.env)
            # Only the traffic: the demo's vendor, adjustment and view-through scripts need its vendor
            # sources and its admin calls after the traffic (test_demo.py plays those).
            rates = load_rates(settings.fx_rates_file)
            scripts, expected = demo.plan_day(CLICKS, rates, SEED, features=False)
            total = sum(len(s.postbacks) + (s.click is not None) for s in scripts)
            asyncio.run(demo.play(stack.ingest, token, scripts, 300.0, demo.Progress(total)))
            checks = demo._wait_for_totals(settings, expected, 180, _query)
            outbound, _ = demo_outbound.wait_for_outbound(settings, expected.outbound, receiver, 180, _query)
            failed = [c for c in checks + outbound if c[1] != c[2]]
            assert not failed, failed
            yield stack, settings, expected
    finally:
        receiver.stop()


def test_the_page_shows_what_report_says(day: Any, tmp_path: Path) -> None:
    stack, settings, expected = day
    found = re.search(r"^\s+overview\s+(\S+)", stack.banner, re.MULTILINE)
    assert found, stack.banner
    url = found.group(1)
    assert url.startswith(f"{stack.url}/overview/#user=")
    totals, refusals = report_numbers(stack)
    assert totals["clicks"] == expected.clicks and refusals  # the day did reach the report
    delivered = _query(settings, "SELECT count() FROM outbound_postbacks WHERE outcome = 'delivered'")[1][0][
        0
    ]
    assert delivered == sum(expected.outbound.values())

    async def browse() -> tuple[dict[str, Any], dict[str, Any], list[str], str, str, bytes]:
        async with chromium() as page:
            await page.call("Page.navigate", url=url)
            minutes = await show(page, "1", 1)
            address = await page.evaluate("location.href")
            kpi = await page.evaluate("document.getElementById('kpi-clicks').innerText")
            shot = await page.screenshot()
            hours = await show(page, "document.querySelector('[data-range=\"24h\"]').click()", 2)
            assert hours["range"] == "24h", hours["range"]
            return minutes, hours, page.errors, address, kpi, shot

    minutes, hours, errors, address, kpi, shot = asyncio.run(browse())
    (tmp_path / "overview.png").write_bytes(shot)
    if os.environ.get("UPDATE_SCREENSHOT") == "1":
        (REPO / "docs" / "overview.png").write_bytes(shot)
    assert errors == []
    assert "password" not in address  # taken from the address bar once read
    assert kpi.splitlines()[0] == f"{totals['clicks']:,}"
    # All of the day is within the last 3 hours: the minute range equals the whole report.
    assert minutes["unit"] == "minute"
    assert_same(minutes, totals, refusals)
    assert minutes["totals"]["outbound"].get("delivered") == delivered
    assert minutes["totals"]["delivery_rate"] == 1.0  # the flaky publisher's 503s are retried, none dead
    # The hour range starts on an hour: `postbacks report --since` that hour says the same.
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:00:00", hours["since"]), hours["since"]
    since_totals, since_refusals = report_numbers(stack, "--since", hours["since"].replace(" ", "T"))
    assert_same(hours, since_totals, since_refusals)
    assert hours["totals"]["outbound"] == minutes["totals"]["outbound"]
    # Health: every service answers, and each stage's consumer groups report their lag (drained: 0).
    health = minutes["health"]
    assert [(s["name"], s["up"]) for s in health["services"]] == [
        ("ingest", True),
        ("stream", True),
        ("sink", True),
        ("outbound", True),
    ]
    groups = {g["group"]: g["records"] for g in health["lag"]}
    assert any("outbound" in g for g in groups) and any("sink" in g for g in groups), groups
    assert len(groups) >= 3, groups


def test_the_page_refreshes_by_itself(day: Any) -> None:
    """One more click shows on an open page at its next refresh, with no reload and no error."""
    stack, _, _ = day
    found = re.search(r"^\s+overview\s+(\S+)", stack.banner, re.MULTILINE)
    assert found, stack.banner

    async def watch() -> tuple[int, Any, list[str]]:
        async with chromium() as page:
            await page.call("Page.navigate", url=found.group(1))
            before = (await show(page, "1", 1))["totals"]["clicks"]
            async with httpx.AsyncClient() as client:
                click = await client.get(
                    f"{stack.ingest}/click", params={"offer_id": "o1", "publisher_id": "p1", "format": "json"}
                )
                assert click.status_code == 200, click.text
            later = await page.wait_for(
                f"window.overview.numbers.totals.clicks === {before + 1} && window.overview.refreshes",
                timeout_s=60,
            )
            return before, later, page.errors

    before, refreshes, errors = asyncio.run(watch())
    assert refreshes >= 2, f"clicks stayed at {before}"
    assert errors == []
