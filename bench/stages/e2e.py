"""End-to-end stage: from a postback's HTTP acknowledgement to its row in ClickHouse, at a fixed rate.

The whole pipeline runs as `postbacks up` runs it (ingest, one stream worker, the sink,
all on the local Apache Kafka and the embedded engine, default settings); clicks are in first. The load
generator offers postbacks at a fixed rate (open loop: a slow pipeline shows up as
latency, not as fewer requests) and logs each acknowledgement with its request id. The
bench polls `conversion_versions` every 0.1 s for new rows; the aggregates
(conversions_hourly, ...) are materialized views written by the same INSERT, so a row
visible there is visible in them. Latency = first poll that returned the row - its ack
(an upper bound, 0.1 s resolution).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bench import profile, sink_stages
from bench.measure import Figure, StageResult, at_most, percentile
from bench.plan import Plan
from bench.stack import BenchStack, committed, preload, wait_http
from bench.stages.ingest import QUERY, loadgen_result, start_loadgen
from bench.traffic import CLICK_HEADERS, clicks
from bench.watch import TopicWatch
from commands.local.broker import free_port
from ingest.sources import write_starter_sources
from postbacks.groups import stream_group
from postbacks.topics import Topics
from schemas import CONVERSION
from sinks.endpoint import remote_query

POLL_S = 0.1
DRAIN_TIMEOUT_S = 60.0


def _visible(sink_dir: Path, after: dict[int, int], partitions: int) -> list[tuple[str, int, int]]:
    """Rows of conversion_versions past the offsets already seen, per partition."""
    where = " OR ".join(
        f"(kafka_partition = {p} AND kafka_offset > {after.get(p, -1)})" for p in range(partitions)
    )
    sql = f"SELECT request_id, kafka_partition, kafka_offset FROM conversion_versions WHERE {where}"
    answer = remote_query(sink_dir, sql)
    return [] if answer is None else [(str(r[0]), int(r[1]), int(r[2])) for r in answer[1]]


def run(stack: BenchStack, plan: Plan) -> StageResult:
    settings = stack.settings("e2e")
    topics = Topics(settings.topic_prefix)
    token = write_starter_sources(settings.effective_sources_file)
    bootstrap = settings.kafka_bootstrap_servers
    asyncio.run(
        preload(
            bootstrap, topics.clicks_raw, settings.topic_partitions, clicks(plan.e2e_clicks), CLICK_HEADERS
        )
    )
    port = free_port()
    sink_dir = settings.data_dir / "sink"
    sink_metrics = f"http://127.0.0.1:{(metrics_port := free_port())}/metrics"
    sink = stack.start("sink", settings.with_overrides(data_dir=sink_dir, sink_metrics_port=metrics_port))
    stream = stack.start("stream", settings, "worker-0")
    ingest = stack.start("ingest", settings.with_overrides(ingest_port=port))
    wait_http(f"http://127.0.0.1:{port}/healthz")
    stream.wait_for("Worker ready")
    deadline = time.monotonic() + 120
    while (
        asyncio.run(committed(bootstrap, stream_group(settings.topic_prefix), topics.clicks_raw))
        < plan.e2e_clicks
    ):
        if time.monotonic() > deadline:
            raise RuntimeError("the stream did not read the preloaded clicks in 120 s")
        time.sleep(0.5)

    acks_file = settings.data_dir / "acks.tsv"
    watch = TopicWatch(bootstrap, topics.conversions_attributed, CONVERSION).__enter__()
    time.sleep(3)  # the watcher joins its group and takes `latest` before the first postback
    stages_before = sink_stages.scrape(sink_metrics)
    load = start_loadgen(
        port,
        "/postback?" + QUERY + f"&token={token}",
        plan,
        keys=plan.e2e_clicks,
        rate=plan.e2e_rate,
        acks=acks_file,
        seconds=plan.e2e_seconds,
        connections=max(plan.connections, 64),
    )
    spies = [
        profile.record(service.process.pid, plan.profile_dir / f"e2e-{service.name}.txt", plan.e2e_seconds)
        for service in (ingest, stream, sink)
        if plan.profile_dir is not None
    ]
    # When each request id first shows up, polled while the load runs; acks come from its file after.
    visible: dict[str, float] = {}
    after: dict[int, int] = {}

    def poll() -> None:
        rows = _visible(sink_dir, after, settings.topic_partitions)
        now = time.time()
        for request_id, partition, offset in rows:
            after[partition] = max(after.get(partition, -1), offset)
            visible.setdefault(request_id, now)
        time.sleep(POLL_S)

    while load.poll() is None:
        poll()
    offered = loadgen_result(load)
    for spy in spies:
        if spy is not None:
            spy.wait(60)
    acked = {rid: float(at) for rid, at in (line.split("\t") for line in acks_file.read_text().splitlines())}
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while acked.keys() - visible.keys() and time.monotonic() < deadline:
        poll()
    watch.__exit__()
    stages = sink_stages.difference(sink_stages.scrape(sink_metrics), stages_before)
    latencies_ms = [(visible[rid] - at) * 1000 for rid, at in acked.items() if rid in visible]
    stream_ms = [(watch.seen[rid] - at) * 1000 for rid, at in acked.items() if rid in watch.seen]
    sink_ms = [
        (visible[rid] - watch.seen[rid]) * 1000 for rid in acked if rid in visible and rid in watch.seen
    ]
    for service in (ingest, stream, sink):  # idle services would still take a little CPU from later stages
        stack.stop(service)
    missing = len(acked) - len(latencies_ms)

    figure = Figure("ack → visible, p99", percentile(latencies_ms, 99), "ms")
    result = StageResult("e2e", figure)
    result.extra += [
        Figure("p50", percentile(latencies_ms, 50), "ms"),
        Figure("max", max(latencies_ms, default=float("nan")), "ms"),
        Figure("offered", plan.e2e_rate, "postbacks/s"),
        Figure("acked", offered["rps"], "postbacks/s"),
    ]
    result.targets.append(at_most("p99 ms", figure.value, 2000))
    result.notes.append(
        f"{len(acked)} postbacks acknowledged in {plan.e2e_seconds:g} s, {len(latencies_ms)} seen in "
        f"conversion_versions, {missing} not within {DRAIN_TIMEOUT_S:g} s of the end; "
        f"HTTP ack p50 {offered['p50_ms']:.1f} ms, p99 {offered['p99_ms']:.1f} ms"
    )
    result.notes.append(
        "by stage: ack → on conversions.attributed (stream) p50 "
        f"{percentile(stream_ms, 50):,.0f} ms, p99 {percentile(stream_ms, 99):,.0f} ms; "
        f"topic → visible (sink) p50 {percentile(sink_ms, 50):,.0f} ms, p99 {percentile(sink_ms, 99):,.0f} ms"
    )
    result.notes += sink_stages.summary(stages, "conversion_versions")
    if plan.plot is not None and latencies_ms:
        from bench.plot import latency_plot

        latency_plot(
            latencies_ms,
            plan.plot,
            f"end to end at {plan.e2e_rate:g} postbacks/s offered ({len(latencies_ms)} postbacks): "
            f"p50 {percentile(latencies_ms, 50):,.0f} ms, p99 {figure.value:,.0f} ms",
            {"ack → on conversions.attributed (stream)": stream_ms, "topic → visible (sink)": sink_ms},
        )
    if missing:
        result.targets.append(at_most("postbacks not visible", float(missing), 1))
    return result
