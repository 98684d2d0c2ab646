"""`postbacks demo`: a synthetic day through the real pipeline, checked against its own expectations.

The generator (pure, seeded) writes one script per click: the click, then what its
advertiser sends: installs, status updates and reversals, purchases in several
currencies, sender retries, click-injection installs, Keitaro upsells (a second `tid`
on one click), Affise goals (another goal on one click), and conversions an admin then
approves, rejects or re-prices through the admin API. Impressions whose device later
converts without a click (view-through), unknown clicks and malformed requests come on
their own. It also computes what the report must say. The runner
starts a fresh local stack, plays the scripts through the HTTP ingest (each click's
requests in order, many clicks at once, at a chosen rate), waits for the pipeline to
drain, prints the report and PASS/FAIL per measure.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import httpx

from commands import demo_outbound
from postbacks.settings import Settings

Q = Decimal("0.000001")
CURRENCIES = ("USD", "EUR", "GBP")
PUBLISHERS = [f"pub-{i}" for i in range(25)]


@dataclass(frozen=True, slots=True)
class Request:
    """One postback; `None` click id means: the one this script's click got; `source`: /postback/<it>."""

    params: dict[str, str]
    click_id: str | None = None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class Adjustment:
    """An admin's change to the script's conversion (README "Advertiser adjustments"), sent once the
    conversion is in ClickHouse (its id is the stream's)."""

    action: str  # approve | reject | payout
    payout: str | None = None


@dataclass(slots=True)
class Script:
    click: dict[str, str] | None  # click parameters, or None for requests that need no click
    postbacks: list[Request] = field(default_factory=list)
    impression: dict[str, str] | None = None  # sent first (view-through), instead of a click
    adjustment: Adjustment | None = None
    click_id: str | None = None  # what the ingest issued, once played


@dataclass(slots=True)
class Expected:
    clicks: int = 0
    conversions: int = 0  # approved, at their latest status
    pending: int = 0
    reversed: int = 0
    revenue_usd: Decimal = Decimal(0)
    payout_usd: Decimal = Decimal(0)
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    # Approved conversion versions per publisher: each is passed on once (README "Outbound postbacks").
    outbound: Counter[str] = field(default_factory=Counter)
    upsells: int = 0  # approved Keitaro conversions: two tids per click
    goals: int = 0  # approved Affise conversions: two goals per click
    view_through: int = 0  # approved conversions attributed to an impression
    adjusted: int = 0  # conversion versions made by an admin


#: The demo's vendor sources besides the starter one, by preset (same token).
VENDOR_SOURCES = ("keitaro", "affise")


def usd(amount: Decimal, currency: str, rates: Mapping[str, Decimal]) -> Decimal:
    rate = Decimal(1) if currency == "USD" else rates[currency]
    return (amount * rate).quantize(Q, rounding=ROUND_HALF_EVEN)


def plan_day(
    clicks: int, rates: Mapping[str, Decimal], seed: int, features: bool = True
) -> tuple[list[Script], Expected]:
    """The day's traffic and the totals it must produce (mirrors the stream's documented rules).

    `features`: also the vendor upsells and goals, the adjusted installs and the view-through
    scripts, which need the demo's vendor sources and its admin API calls after the traffic
    (`run`); a caller that only plays the traffic (the fault tests) leaves them out.
    """
    rng = random.Random(seed)
    expected = Expected()
    scripts: list[Script] = []
    campaigns = [f"cmp-{i}" for i in range(8)]
    offers = [f"offer-{i}" for i in range(5)]
    feature_sets = max(1, clicks // 100) if features else 0  # each: an upsell, goals, 3 adjusted installs
    for n in range(max(0, clicks - 5 * feature_sets)):
        click = {
            "offer_id": rng.choice(offers),
            "publisher_id": rng.choice(PUBLISHERS),
            "campaign_id": rng.choice(campaigns),
            "sub1": f"s{rng.randrange(100)}",
            "format": "json",
        }
        script = Script(click)
        expected.clicks += 1
        roll = rng.random()
        # Times are "+seconds after this script's click", resolved when sent (ingest stamps the click).
        install_after = rng.randrange(30, 7200)  # CTIT well above the 10 s minimum
        payout, currency = Decimal(rng.choice(("1.50", "2.00", "0.75"))), rng.choice(CURRENCIES)
        install = {
            "event_name": "install",
            "install_time": f"+{install_after}",
            "payout": str(payout),
            "currency": currency,
        }
        if roll < 0.010:  # click injection: the install claims to come 2 s after the click
            fraud = {**install, "install_time": "+2"}
            script.postbacks += [Request(fraud), Request(fraud)]  # ...and the sender retries it
            expected.rejected["ctit_too_short"] += 1
            expected.duplicates += 1
        elif roll < 0.100:  # an install
            status = "pending" if rng.random() < 0.2 else "approved"
            script.postbacks.append(Request({**install, "status": status}))
            final = status
            if rng.random() < 0.05:
                script.postbacks.append(Request({**install, "status": status}))  # a sender retry
                expected.duplicates += 1
            if status == "pending" and rng.random() < 0.6:
                script.postbacks.append(Request({**install, "status": "approved"}))  # a status update
                final = "approved"
            if final == "approved" and rng.random() < 0.04:
                script.postbacks.append(Request({**install, "status": "rejected"}))  # a chargeback
                final = "rejected"
            if final in {"approved", "rejected"}:  # an approved version was emitted on the way
                expected.outbound[click["publisher_id"]] += 1
            if final == "approved":
                expected.conversions += 1
                expected.payout_usd += usd(payout, currency, rates)
            elif final == "pending":
                expected.pending += 1
            else:
                expected.reversed += 1
            for t in range(rng.choice((0, 0, 1, 2))):  # in-app purchases
                revenue, cur = Decimal(rng.choice(("4.99", "9.99", "0.99"))), rng.choice(CURRENCIES)
                script.postbacks.append(
                    Request(
                        {
                            "event_name": "purchase",
                            "transaction_id": f"T{n}-{t}",
                            "event_time": f"+{install_after + 600 * (t + 1)}",
                            "revenue": str(revenue),
                            "currency": cur,
                        }
                    )
                )
                expected.conversions += 1
                expected.revenue_usd += usd(revenue, cur, rates)
                expected.outbound[click["publisher_id"]] += 1
        scripts.append(script)
    for i in range(feature_sets):
        scripts += _vendor_scripts(rng, offers, campaigns, expected, i)
        scripts += _adjusted_scripts(rng, offers, campaigns, expected, i)
        scripts.append(_view_through_script(rng, offers, campaigns, expected, seed, i))
    strays = max(1, clicks // 100)
    for i in range(strays):  # postbacks for clicks we never saw, and broken requests
        scripts.append(Script(None, [Request({"payout": "1"}, click_id=f"ghost-{seed}-{i}")]))
        expected.rejected["unknown_click"] += 1
        scripts.append(Script(None, [Request({"payout": "lots"}, click_id=f"bad-{i}")]))
        expected.rejected["bad_number"] += 1
        scripts.append(Script(None, [Request({"payout": "1", "currency": "ZZZ"}, click_id=f"bad-cur-{i}")]))
        expected.rejected["unknown_currency"] += 1
    rng.shuffle(scripts)
    return scripts, expected


def _click(rng: random.Random, offers: list[str], campaigns: list[str]) -> dict[str, str]:
    return {
        "offer_id": rng.choice(offers),
        "publisher_id": rng.choice(PUBLISHERS),
        "campaign_id": rng.choice(campaigns),
        "format": "json",
    }


def _approved(expected: Expected, publisher: str, payout: str = "0", revenue: str = "0") -> None:
    """One approved conversion version in USD (what the demo's vendor and admin scripts send)."""
    expected.conversions += 1
    expected.payout_usd += Decimal(payout)
    expected.revenue_usd += Decimal(revenue)
    expected.outbound[publisher] += 1


def _vendor_scripts(
    rng: random.Random, offers: list[str], campaigns: list[str], expected: Expected, i: int
) -> list[Script]:
    """Several conversions on one click, as the vendors' defaults identify them (README "Vendor macros")."""
    upsell = Script(_click(rng, offers, campaigns))
    upsell.postbacks += [
        Request({"status": "sale", "payout": "2", "tid": f"K{i}-1"}, source="keitaro"),
        Request({"status": "sale", "payout": "3", "tid": f"K{i}-2"}, source="keitaro"),  # the upsell
        Request({"status": "sale", "payout": "3", "tid": f"K{i}-2"}, source="keitaro"),  # its retry
    ]
    goals = Script(_click(rng, offers, campaigns))
    goals.postbacks += [
        Request({"goal": "1", "action_id": f"A{i}-1", "sum": "4", "status": "1"}, source="affise"),
        Request({"goal": "2", "action_id": f"A{i}-2", "sum": "9", "status": "1"}, source="affise"),
    ]
    for script in (upsell, goals):
        assert script.click is not None
        expected.clicks += 1
    _approved(expected, upsell.click["publisher_id"], payout="2")  # type: ignore[index]
    _approved(expected, upsell.click["publisher_id"], payout="3")  # type: ignore[index]
    expected.duplicates += 1
    expected.upsells += 2
    _approved(expected, goals.click["publisher_id"], revenue="4")  # type: ignore[index]
    _approved(expected, goals.click["publisher_id"], revenue="9")  # type: ignore[index]
    expected.goals += 2
    return [upsell, goals]


def _adjusted_scripts(
    rng: random.Random, offers: list[str], campaigns: list[str], expected: Expected, i: int
) -> list[Script]:
    """An install each, then an admin approves the pending one, rejects one, re-prices one."""
    scripts = []
    for action, status in (("approve", "pending"), ("reject", "approved"), ("payout", "approved")):
        click = _click(rng, offers, campaigns)
        install = {"event_name": "install", "install_time": "+60", "payout": "2.00", "status": status}
        script = Script(
            click, [Request(install)], adjustment=Adjustment(action, "5.00" if action == "payout" else None)
        )
        scripts.append(script)
        expected.clicks += 1
        expected.adjusted += 1
        publisher = click["publisher_id"]
        if action == "approve":  # pending, then approved by the admin
            _approved(expected, publisher, payout="2.00")
        elif action == "reject":  # approved (passed on), then reversed
            expected.reversed += 1
            expected.outbound[publisher] += 1
        else:  # approved at 2.00 (passed on), then at 5.00 (passed on again), counted once at 5.00
            _approved(expected, publisher, payout="5.00")
            expected.outbound[publisher] += 1
    return scripts


def _view_through_script(
    rng: random.Random, offers: list[str], campaigns: list[str], expected: Expected, seed: int, i: int
) -> Script:
    """An impression, then a postback from its device quoting a click nobody issued (README
    "View-through attribution"): attributed to the impression once the grace period ends."""
    device = f"{seed % 10**8:08x}-0000-4000-8000-{i:012x}"
    impression = {**_click(rng, offers, campaigns), "gaid": device}
    impression.pop("format")
    request = Request({"payout": "1.25", "txid": f"V{i}", "gaid": device}, click_id=f"view-{seed}-{i}")
    _approved(expected, impression["publisher_id"], payout="1.25")
    expected.view_through += 1
    return Script(None, [request], impression=impression)


@dataclass
class Progress:
    total: int
    sent: int = 0
    statuses: Counter[int | str] = field(default_factory=Counter)
    # What the ingest acknowledged (2xx): click ids and postback request ids.
    acked_clicks: list[str] = field(default_factory=list)
    acked_postbacks: list[str] = field(default_factory=list)


async def play(
    base_url: str, token: str, scripts: list[Script], rate: float, progress: Progress, concurrency: int = 64
) -> None:
    """Each script's requests in order; scripts concurrently; overall at most `rate` requests/s."""
    interval = 1.0 / rate
    next_slot = time.monotonic()
    queue: asyncio.Queue[Script] = asyncio.Queue()
    for script in scripts:
        queue.put_nowait(script)

    async def pace() -> None:
        nonlocal next_slot
        now = time.monotonic()
        next_slot = max(next_slot + interval, now)
        delay = next_slot - now
        if delay > 0:
            await asyncio.sleep(delay)

    async def send(client: httpx.AsyncClient, path: str, params: dict[str, str]) -> httpx.Response:
        """What senders do: retry on 503 (after Retry-After) and when the service cannot be reached."""
        while True:
            await pace()
            progress.sent += 1
            try:
                response = await client.get(path, params=params)
            except httpx.TransportError:  # ingest down or restarting; the request may have landed
                progress.statuses["no answer"] += 1
                await asyncio.sleep(0.5)
                continue
            progress.statuses[response.status_code] += 1
            if response.status_code != 503:
                if response.is_success:
                    body = response.json()
                    if "click_id" in body:
                        progress.acked_clicks.append(body["click_id"])
                    elif "request_id" in body:
                        progress.acked_postbacks.append(body["request_id"])
                return response
            await asyncio.sleep(float(response.headers.get("retry-after", "1")))

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            script = queue.get_nowait()
            click_id, clicked = None, time.time()
            if script.impression is not None:
                await send(client, "/impression", script.impression)
            if script.click is not None:
                click_id = (await send(client, "/click", script.click)).json()["click_id"]
                script.click_id = click_id
                clicked = time.time()
            for request in script.postbacks:
                params = {
                    k: str(int(clicked) + int(v[1:])) if v.startswith("+") else v
                    for k, v in request.params.items()
                }
                await send(
                    client,
                    f"/postback/{request.source}" if request.source else "/postback",
                    {"clickid": request.click_id or str(click_id), **params, "token": token},
                )

    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))


def measures(
    report: Mapping[str, Any], refusals: Mapping[str, int], expected: Expected
) -> list[tuple[str, Any, Any]]:
    """(measure, expected, got) for every checked total."""
    rows = [
        ("clicks", expected.clicks, int(report.get("clicks") or 0)),
        ("conversions (approved)", expected.conversions, int(report.get("conversions") or 0)),
        ("pending", expected.pending, int(report.get("pending") or 0)),
        ("reversed", expected.reversed, int(report.get("reversed") or 0)),
        ("revenue_usd", expected.revenue_usd, Decimal(str(report.get("revenue_usd") or 0))),
        ("payout_usd", expected.payout_usd, Decimal(str(report.get("payout_usd") or 0))),
        ("duplicates", expected.duplicates, refusals.get("duplicate", 0)),
    ]
    rows += [
        (f"rejected: {reason}", n, refusals.get(reason, 0)) for reason, n in sorted(expected.rejected.items())
    ]
    return rows


def run(
    settings: Settings,
    clicks: int,
    rate: float,
    seed: int,
    timeout_s: float,
    query: Callable[[Settings, str], tuple[list[str], list[list[Any]]]],
) -> int:
    from sinks.report import refusals_sql, render, report_sql
    from stream.rules.fx import load_rates

    data_dir = settings.data_dir.resolve() / "demo"
    shutil.rmtree(data_dir, ignore_errors=True)
    demo = settings.with_overrides(
        data_dir=data_dir, sources_file=None, clickhouse_dsn="", unknown_click_grace_s=5.0
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"KAFKA_BOOTSTRAP_SERVERS", "INGEST_PORT", "SOURCES_FILE", "CLICKHOUSE_DSN"}
    }
    env.update(
        {
            k: v
            for k, v in demo.to_env().items()
            if k not in {"KAFKA_BOOTSTRAP_SERVERS", "INGEST_PORT", "SOURCES_FILE", "CLICKHOUSE_DSN"}
        }
    )
    env["LOG_LEVEL"] = "WARNING"
    data_dir.mkdir(parents=True)
    receiver = demo_outbound.start_receiver()  # the publishers' postback endpoints, on this machine
    token = demo_outbound.write_sources(data_dir / "sources.toml", receiver.url, PUBLISHERS)
    admin_token = _add_vendors_and_admin(data_dir / "sources.toml", token)
    out = data_dir / "up.out"
    print(f"starting a fresh local stack in {data_dir} ...", flush=True)
    with out.open("wb") as sink:
        up = subprocess.Popen(
            [sys.executable, "-m", "commands.cli", "up"], env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 90
        while "is up" not in out.read_text() and time.monotonic() < deadline:
            if up.poll() is not None:
                print(out.read_text(), file=sys.stderr)
                return 1
            time.sleep(0.2)
        base_url = re.search(r"ingest\s+(http://\S+)", out.read_text()).group(1)  # type: ignore[union-attr]
        scripts, expected = plan_day(clicks, load_rates(settings.fx_rates_file), seed)
        total = sum(len(s.postbacks) + (s.click is not None) for s in scripts)
        print(f"seed {seed}: {expected.clicks} clicks, {total} requests at up to {rate:g}/s", flush=True)
        progress = Progress(total)
        started = time.monotonic()

        async def with_progress() -> None:
            task = asyncio.create_task(play(base_url, token, scripts, rate, progress))
            while not task.done():
                await asyncio.sleep(1.0)
                print(
                    f"  sent {progress.sent}/{total}  "
                    + " ".join(f"{code}:{n}" for code, n in sorted(progress.statuses.items())),
                    flush=True,
                )
            await task

        asyncio.run(with_progress())
        adjusted = [s for s in scripts if s.adjustment is not None]
        print(f"sent in {time.monotonic() - started:.1f}s; {len(adjusted)} adjustments ...", flush=True)
        _adjust(demo, base_url, admin_token, adjusted, timeout_s, query)
        print("waiting for the pipeline to drain ...", flush=True)
        checks = _wait_for_totals(demo, expected, timeout_s, query)
        outbound_checks, (outbound_columns, outbound_rows) = demo_outbound.wait_for_outbound(
            demo, expected.outbound, receiver, timeout_s, query
        )
        checks += outbound_checks
        columns, rows = query(demo, report_sql(["offer", "attribution"]))
        print("\n" + render(columns, rows, "table"))
        print("\n" + render(*query(demo, refusals_sql()), "table") + "\n")
        print("outbound postbacks by publisher:\n" + render(outbound_columns, outbound_rows, "table") + "\n")
        failed = 0
        for name, want, got in checks:
            ok = want == got
            failed += not ok
            print(f"{'PASS' if ok else 'FAIL'}  {name:28} expected {want}  got {got}")
        print("\nall measures PASS" if not failed else f"\n{failed} measure(s) FAIL", flush=True)
        return 0 if not failed else 1
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            up.kill()
        receiver.stop()


def _add_vendors_and_admin(path: Path, token: str) -> str:
    """Keitaro and Affise sources (their presets' defaults, the starter's token) and an admin token."""
    admin = secrets.token_urlsafe(24)
    vendors = "".join(
        f'\n[sources.{name}]\nauth = "token"\ntokens = ["{token}"]\npreset = "{name}"\n'
        for name in VENDOR_SOURCES
    )
    with path.open("a", encoding="utf-8") as out:
        out.write(f'\n# The demo\'s vendors and its admin.\n{vendors}\n[admin.tokens]\ndemo = "{admin}"\n')
    return admin


def _adjust(
    settings: Settings,
    base_url: str,
    admin_token: str,
    scripts: list[Script],
    timeout_s: float,
    query: Callable[[Settings, str], tuple[list[str], list[list[Any]]]],
) -> None:
    """Each script's adjustment through the admin API, once its conversion is in ClickHouse."""
    deadline = time.monotonic() + timeout_s
    pending = {str(s.click_id): s for s in scripts}
    ids: dict[str, str] = {}
    while len(ids) < len(pending) and time.monotonic() < deadline:
        wanted = ", ".join(f"'{c}'" for c in pending if c not in ids)
        rows = query(
            settings, f"SELECT click_id, conversion_id FROM conversions WHERE click_id IN ({wanted})"
        )[1]
        ids.update({str(click): str(cid) for click, cid in rows})
        time.sleep(0.5)
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for click_id, conversion_id in ids.items():
            adjustment = pending[click_id].adjustment
            assert adjustment is not None
            body = {
                "adjustment_id": f"demo-{click_id}",
                "click_id": click_id,
                "action": adjustment.action,
                "reason": "demo: the advertiser's monthly review",
            }
            if adjustment.payout is not None:
                body.update(payout=adjustment.payout, currency="USD")
            answer = client.post(
                f"/conversions/{conversion_id}/status",
                json=body,
                headers={"authorization": f"Bearer {admin_token}"},
            )
            print(f"  {adjustment.action:8} {conversion_id}: {answer.status_code}", flush=True)


FEATURES_SQL = """
SELECT
    countIf(source = 'keitaro' AND status = 'approved') AS upsells,
    countIf(source = 'affise' AND status = 'approved') AS goals,
    countIf(attribution_type = 'view' AND status = 'approved') AS view_through
FROM conversions FINAL
"""
ADJUSTED_SQL = "SELECT count() FROM conversion_versions WHERE enrichment['adjusted_by'] != ''"


def feature_measures(
    features: Mapping[str, Any], adjusted: int, expected: Expected
) -> list[tuple[str, Any, Any]]:
    """Upsells, goals, view-through and adjustments, each measured on its own."""
    return [
        ("upsells (keitaro tids)", expected.upsells, int(features.get("upsells") or 0)),
        ("goals (affise)", expected.goals, int(features.get("goals") or 0)),
        ("view-through conversions", expected.view_through, int(features.get("view_through") or 0)),
        ("adjusted versions", expected.adjusted, adjusted),
    ]


def _wait_for_totals(
    settings: Settings,
    expected: Expected,
    timeout_s: float,
    query: Callable[[Settings, str], tuple[list[str], list[list[Any]]]],
) -> list[tuple[str, Any, Any]]:
    from sinks.report import refusals_sql, report_sql

    deadline = time.monotonic() + timeout_s
    checks: list[tuple[str, Any, Any]] = []
    while time.monotonic() < deadline:
        columns, rows = query(settings, report_sql([]))
        report = dict(zip(columns, rows[0], strict=True)) if rows else {}
        refusal_rows = query(settings, refusals_sql())[1]
        refusals: dict[str, int] = {
            reason: int(n) for kind, _, reason, n in refusal_rows if kind == "rejected"
        }
        refusals["duplicate"] = sum(int(n) for kind, _, _, n in refusal_rows if kind == "duplicate")
        checks = measures(report, refusals, expected)
        columns, rows = query(settings, FEATURES_SQL)
        features = dict(zip(columns, rows[0], strict=True)) if rows else {}
        adjusted = int(query(settings, ADJUSTED_SQL)[1][0][0])
        checks += feature_measures(features, adjusted, expected)
        if all(want == got for _, want, got in checks):
            break
        time.sleep(1.0)
    return checks
