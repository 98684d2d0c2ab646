"""The `postbacks` command: one entry point, a subcommand per job."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

from postbacks.settings import Settings, SettingsError


def _up(settings: Settings, args: argparse.Namespace) -> int:
    from commands.local.stack import LocalStack

    return LocalStack(settings, brokers=args.brokers).run()


def _service(name: str, run: Callable[[Settings], None], settings: Settings) -> int:
    """A long-running service: structured logs, a Kafka cluster to talk to, then run until signalled."""
    from postbacks.logs import configure

    configure(settings.log_level, settings.log_format)
    if not settings.kafka_bootstrap_servers:
        print(f"postbacks {name}: set KAFKA_BOOTSTRAP_SERVERS (or run `postbacks up`)", file=sys.stderr)
        return 2
    run(settings)
    return 0


def _ingest(settings: Settings, args: argparse.Namespace) -> int:
    from ingest.server import serve

    return _service("ingest", serve, settings)


def _stream(settings: Settings, args: argparse.Namespace) -> int:
    from stream.worker import run

    return _service("stream", run, settings)


def _sink(settings: Settings, args: argparse.Namespace) -> int:
    from sinks.service import serve

    return _service("sink", lambda s: asyncio.run(serve(s)), settings)


def _outbound(settings: Settings, args: argparse.Namespace) -> int:
    from ingest.sources import ConfigError
    from outbound.service import load, serve

    try:
        publishers = load(settings)  # every template checked before anything starts
    except ConfigError as exc:
        print(f"postbacks outbound: {exc}", file=sys.stderr)
        return 2
    return _service("outbound", lambda s: asyncio.run(serve(s, publishers)), settings)


def _query(settings: Settings, sql: str) -> tuple[list[str], list[list[Any]]]:
    """Through a running stack's endpoint when it owns the embedded engine, else directly."""
    from sinks.clickhouse import connect, is_embedded
    from sinks.endpoint import remote_query
    from sinks.migrate import migrate

    dsn = settings.effective_clickhouse_dsn
    if is_embedded(dsn):
        remote = remote_query(settings.data_dir, sql)
        if remote is not None:
            return remote
    client = connect(dsn)
    try:
        migrate(client, settings.clickhouse_raw_ttl_days)
        result = client.query(sql, settings={"readonly": 1})
        return list(result.column_names), [list(r) for r in result.result_rows]
    finally:
        client.close()


def _report(settings: Settings, args: argparse.Namespace) -> int:
    from sinks.report import refusals_sql, render, report_sql

    by = [d.strip() for d in args.by.split(",") if d.strip()]
    try:
        sql = report_sql(by, args.since, args.until)
    except ValueError as exc:
        print(f"postbacks report: {exc}", file=sys.stderr)
        return 2
    print(render(*_query(settings, sql), args.format))
    if args.format == "table":
        print()
        print(render(*_query(settings, refusals_sql(args.since, args.until)), args.format))
    return 0


def _sql(settings: Settings, args: argparse.Namespace) -> int:
    from sinks.report import render

    print(render(*_query(settings, args.query), args.format))
    return 0


def _adjust(settings: Settings, args: argparse.Namespace) -> int:
    import httpx

    from commands.adjust import AdjustError, Adjustment, admin_token, send
    from ingest.sources import ConfigError, load_sources

    adjustment = Adjustment(
        args.conversion_id, args.action, args.reason, args.id or "", args.click_id, args.payout, args.currency
    )
    try:
        token = admin_token(load_sources(settings.effective_sources_file).admin_tokens, args.admin)
        url = args.url or f"http://{settings.ingest_host}:{settings.ingest_port}"
        with httpx.Client(base_url=url, timeout=30) as client:
            status, answer = send(client, adjustment, token, lambda sql: _query(settings, sql))
    except (AdjustError, ConfigError, httpx.HTTPError) as exc:
        print(f"postbacks adjust: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"http_status": status, **answer}))
    return 0 if status == 202 else 1


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from commands.demo import run

    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    return run(settings, args.clicks, args.rate, seed, args.timeout, _query)


def _kafka(settings: Settings, args: argparse.Namespace) -> int:
    from commands.local.kafka_install import KafkaInstallError, install, installed, kafka_version

    if args.action == "version":
        found = installed()
        print(found.describe() if found else f"Apache Kafka {kafka_version()}: not installed")
        return 0
    try:
        done = install()
    except KafkaInstallError as exc:
        print(f"postbacks kafka install: {exc}", file=sys.stderr)
        return 1
    print(done.describe())
    return 0


def _topics(settings: Settings, args: argparse.Namespace) -> int:
    from postbacks.topics import Topics, ensure_topics

    if not settings.kafka_bootstrap_servers:
        print("postbacks topics: set KAFKA_BOOTSTRAP_SERVERS", file=sys.stderr)
        return 2
    asyncio.run(ensure_topics(settings))
    for name in Topics(settings.topic_prefix).all():
        print(name)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="postbacks", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser(
        "up", help="run the whole pipeline locally (Apache Kafka started unless KAFKA_BOOTSTRAP_SERVERS)"
    )
    up.add_argument(
        "--brokers",
        type=int,
        choices=[1, 3],
        default=1,
        help="Kafka nodes to start: 3 gives replication factor 3, min.insync.replicas=2 (see failover)",
    )
    kafka = sub.add_parser(
        "kafka", help="the local Apache Kafka: `kafka install` fetches it from Maven Central (once)"
    )
    kafka.add_argument("action", choices=["install", "version"])
    sub.add_parser("ingest", help="run only the ingest HTTP service against KAFKA_BOOTSTRAP_SERVERS")
    sub.add_parser("stream", help="run one stream worker (dedup, attribution, enrichment) against Kafka")
    sub.add_parser("sink", help="run the ClickHouse writers (migrates the schema first)")
    sub.add_parser("outbound", help="pass conversions on to publishers: templated, retried, once each")
    report = sub.add_parser("report", help="conversions, revenue, payout, CR and EPC from ClickHouse")
    report.add_argument(
        "--by",
        default="day,campaign,publisher,attribution",
        help="comma-separated: "
        + ", ".join(["hour", "day", "offer", "campaign", "publisher", "country", "event", "attribution"]),
    )
    report.add_argument("--since", type=_when, help="UTC date or datetime, inclusive")
    report.add_argument("--until", type=_when, help="UTC date or datetime, exclusive")
    report.add_argument("--format", choices=["table", "csv", "json"], default="table")
    sql = sub.add_parser("sql", help="run read-only SQL against the pipeline's ClickHouse")
    sql.add_argument("query")
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table")
    demo = sub.add_parser(
        "demo", help="a synthetic day through a fresh local stack, checked measure by measure"
    )
    demo.add_argument("--clicks", type=int, default=5000)
    demo.add_argument("--rate", type=float, default=500.0, help="requests per second at most")
    demo.add_argument("--seed", type=int, help="replays the same day")
    demo.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for the pipeline to drain"
    )
    adjust = sub.add_parser(
        "adjust", help="approve, reject or re-price a conversion through the admin API (audited, idempotent)"
    )
    adjust.add_argument("conversion_id")
    adjust.add_argument("action", choices=["approve", "reject", "payout"])
    adjust.add_argument("--reason", required=True, help="why: kept with the new version")
    adjust.add_argument("--payout", help="the new payout (action payout)")
    adjust.add_argument("--currency", help="ISO 4217 code of --payout (default USD)")
    adjust.add_argument("--id", help="the adjustment id: repeat an earlier one to retry it safely")
    adjust.add_argument("--click-id", help="the conversion's click (looked up in ClickHouse if omitted)")
    adjust.add_argument("--admin", help="which admin token of [admin.tokens] (needed if several)")
    adjust.add_argument("--url", help="the ingest's base URL (default http://INGEST_HOST:INGEST_PORT)")
    sub.add_parser("topics", help="create the pipeline's topics (idempotent) and list them")
    # Listed for help only: main() hands `bench ...` to bench.runner, which has its own options.
    sub.add_parser("bench", help="benchmarks: each stage against its baseline in the same run (bench -h)")
    return parser


COMMANDS = {
    "up": _up,
    "ingest": _ingest,
    "stream": _stream,
    "sink": _sink,
    "outbound": _outbound,
    "report": _report,
    "sql": _sql,
    "demo": _demo,
    "adjust": _adjust,
    "topics": _topics,
    "kafka": _kafka,
}


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        from bench.runner import main as bench

        return bench(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"postbacks: {exc}", file=sys.stderr)
        return 2
    return COMMANDS[args.command](settings, args)


if __name__ == "__main__":
    sys.exit(main())
