"""Sink stage: rows/s into ClickHouse through `postbacks sink` (consume, decode, batch, insert).

Baseline in the same run: clickhouse-connect inserting the same rows, already decoded
and in memory as columns (its fastest way in from Python), in the sink's batch size, into
the same table of an embedded engine of this process: the floor of "hand rows to
ClickHouse", with no Kafka and no decoding.
The sink runs afterwards in its own process with its own engine; the figure is the
growth of `clicks` (polled through the sink's SQL endpoint) over windows of steady state.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

from bench import consume, profile
from bench.measure import Figure, Sample, StageResult, Windows, at_least, steady_windows
from bench.plan import Plan
from bench.stack import BenchStack, cpu_seconds, preload
from bench.traffic import CLICK_HEADERS, clicks
from postbacks.settings import Settings
from postbacks.topics import Topics
from schemas import CLICK, Codec
from sinks.clickhouse import connect
from sinks.endpoint import remote_query
from sinks.migrate import migrate
from sinks.tables import SPECS

DISTINCT = 50_000  # distinct clicks encoded; the preload repeats them (each at its own offset)


def baseline(settings: Settings, plan: Plan, encoded: list[bytes]) -> Windows:
    """Insert the decoded rows batch after batch until the windows are measured."""
    spec = next(s for s in SPECS if s.name == "clicks")
    codec = Codec(CLICK)
    records = [codec.decode(v, CLICK_HEADERS) for v in encoded]
    client = connect(f"chdb://{settings.data_dir / 'baseline-clickhouse'}")
    try:
        migrate(client, settings.clickhouse_raw_ttl_days)
        columns = list(spec.insert_columns)
        batch_rows = min(settings.sink_batch_rows, len(records))
        samples: list[Sample] = [(time.monotonic(), 0)]
        span = plan.warmup_s + plan.window_s * plan.windows + 0.2
        values: list[Any] = spec.column_values(0, [(i, records[i % len(records)]) for i in range(batch_rows)])
        offset = 0
        while samples[-1][0] < samples[0][0] + span:
            # New offsets each time: an identical block would be deduplicated away, not inserted.
            values[-1] = range(offset, offset + batch_rows)
            client.insert("clicks", values, column_names=columns, column_oriented=True)
            offset += batch_rows
            samples.append((time.monotonic(), offset))
        return steady_windows(samples, 1 << 62, plan.warmup_s, plan.window_s, plan.windows)
    finally:
        client.close()


def run(stack: BenchStack, plan: Plan) -> StageResult:
    settings = stack.settings("sink")
    topic = Topics(settings.topic_prefix).clicks_raw
    distinct = clicks(min(DISTINCT, plan.sink_rows))
    load = [distinct[i % len(distinct)] for i in range(plan.sink_rows)]
    asyncio.run(
        preload(settings.kafka_bootstrap_servers, topic, settings.topic_partitions, load, CLICK_HEADERS)
    )
    base = baseline(settings, plan, [v for _, v in distinct])
    span = plan.warmup_s + plan.window_s * plan.windows + 10  # + the group join
    bootstrap = settings.kafka_bootstrap_servers
    bare = {
        name: consume.rates(rate(bootstrap, topic, len(load), span), len(load), plan)
        for name, rate in (
            ("bare aiokafka getmany", consume.aiokafka_rate),
            ("bare confluent-kafka consume", consume.confluent_rate),
        )
    }

    sink_dir = settings.data_dir / "sink"
    sink = stack.start("sink", settings.with_overrides(data_dir=sink_dir, log_level="WARNING"))
    samples, cores = _sample(sink.process, sink_dir, plan, len(load))
    stack.stop(sink)
    windows = steady_windows(samples, len(load), plan.warmup_s, plan.window_s, plan.windows)

    figure = Figure.median_of("postbacks sink", windows.rates, "rows/s")
    raw = Figure.median_of("clickhouse-connect insert from memory", base.rates, "rows/s")
    consumers = [
        Figure.median_of(f"{name} (records to Python)", rates, "records/s") for name, rates in bare.items()
    ]
    result = StageResult("sink", figure, [raw, *consumers])
    result.extra.append(Figure("sink CPU", cores, "cores"))
    result.targets += [at_least("ratio", result.ratio(raw), 0.8), at_least("rows/s", figure.value, 200_000)]
    result.notes.append(windows.describe())
    return result


def _sample(
    process: subprocess.Popen[bytes], sink_dir: Path, plan: Plan, total: int
) -> tuple[list[Sample], float]:
    """Rows in `clicks` every 0.5 s until the windows are done or every row is in."""
    samples: list[Sample] = []
    span = plan.warmup_s + plan.window_s * plan.windows
    first_move: float | None = None
    cpu_at_move = 0.0
    spy = None
    started = time.monotonic()
    while True:
        answer = remote_query(sink_dir, "SELECT count() FROM clicks")
        now = time.monotonic()
        if answer is not None:
            n = int(answer[1][0][0])
            samples.append((now, n))
            if first_move is None and n > 0:
                first_move, cpu_at_move = now, cpu_seconds(process.pid)
                if plan.profile_dir is not None:
                    spy = profile.record(process.pid, plan.profile_dir / "sink.txt", span)
            if n >= total or (first_move is not None and now - first_move > span + 0.5):
                break
        if process.poll() is not None:
            raise RuntimeError("the sink exited during the benchmark")
        if now - started > 600:
            raise RuntimeError("sink stage: not done after 600 s")
        time.sleep(0.5)
    cpu = cpu_seconds(process.pid) - cpu_at_move
    if spy is not None:
        spy.wait(60)
    return samples, cpu / max(samples[-1][0] - (first_move or samples[0][0]), 1e-9)
