"""`postbacks demo`: a synthetic day through the real pipeline, checked against its own expectations.

The generator (pure, seeded) writes one script per click: the click, then what its
advertiser sends: installs, status updates and reversals, purchases in several
currencies, sender retries, click-injection installs. Unknown clicks and malformed
requests come on their own. It also computes what the report must say. The runner
starts a fresh local stack, plays the scripts through the HTTP ingest (each click's
requests in order, many clicks at once, at a chosen rate), waits for the pipeline to
drain, prints the report and PASS/FAIL per measure.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import httpx

from commands import demo_outbound
from postbacks.settings import Settings

Q = Decimal("0.000001")
CURRENCIES = ("USD", "EUR", "GBP")
PUBLISHERS = [f"pub-{i}" for i in range(25)]


@dataclass(frozen=True, slots=True)
class Request:
    """One postback; `None` click id means: the one this script's click got."""

    params: dict[str, str]
    click_id: str | None = None


@dataclass(slots=True)
class Script:
    click: dict[str, str] | None  # click parameters, or None for requests that need no click
    postbacks: list[Request] = field(default_factory=list)


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


def usd(amount: Decimal, currency: str, rates: Mapping[str, Decimal]) -> Decimal:
    rate = Decimal(1) if currency == "USD" else rates[currency]
    return (amount * rate).quantize(Q, rounding=ROUND_HALF_EVEN)


def plan_day(clicks: int, rates: Mapping[str, Decimal], seed: int) -> tuple[list[Script], Expected]:
    """The day's traffic and the totals it must produce (mirrors the stream's documented rules)."""
    rng = random.Random(seed)
    expected = Expected()
    scripts: list[Script] = []
    campaigns = [f"cmp-{i}" for i in range(8)]
    offers = [f"offer-{i}" for i in range(5)]
    for n in range(clicks):
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
            if script.click is not None:
                click_id = (await send(client, "/click", script.click)).json()["click_id"]
                clicked = time.time()
            for request in script.postbacks:
                params = {
                    k: str(int(clicked) + int(v[1:])) if v.startswith("+") else v
                    for k, v in request.params.items()
                }
                await send(
                    client,
                    "/postback",
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
    from ingest.sources import load_sources
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
    demo_outbound.write_sources(data_dir / "sources.toml", receiver.url, PUBLISHERS)
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
        source = load_sources(data_dir / "sources.toml").get(None)
        token = source.auth.tokens[0]  # type: ignore[union-attr]
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
        print(f"sent in {time.monotonic() - started:.1f}s; waiting for the pipeline to drain ...", flush=True)
        checks = _wait_for_totals(demo, expected, timeout_s, query)
        outbound_checks, (outbound_columns, outbound_rows) = demo_outbound.wait_for_outbound(
            demo, expected.outbound, receiver, timeout_s, query
        )
        checks += outbound_checks
        columns, rows = query(demo, report_sql(["offer"]))
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
        if all(want == got for _, want, got in checks):
            break
        time.sleep(1.0)
    return checks
