"""Ingest stage: accepted postbacks/s through HTTP, each acknowledged by the broker before the answer.

Baselines in the same run:
  (a) a bare handler on the same HTTP server (granian, uvloop) that parses the query and
      answers 200 without Kafka: the ceiling of "HTTP in Python" here, and the load
      generator's own ceiling (its CPU share is reported: below one core, it had room);
  (b) a raw aiokafka producer (acks=all, idempotent, the ingest's linger) sending the
      same Avro payloads from memory as fast as the broker acknowledges them;
  (c) the broker-ack ceiling at the load generator's concurrency, three producers each in a
      closed loop of as many waiters as connections (bench/ack_loop.py): aiokafka send(), the
      ingest's grouped publisher, confluent-kafka -- acked records/s and CPU µs per record.
The load generator (bench/loadgen.py) is its own process, closed loop, keep-alive.
"""

from __future__ import annotations

import asyncio
import collections
import json
import subprocess
import sys
import time
from typing import Any

from aiokafka import AIOKafkaProducer

from bench import ack_loop, profile
from bench.measure import Figure, Sample, StageResult, at_least, steady_windows
from bench.plan import Plan
from bench.stack import BenchStack, cpu_seconds, granian, wait_http
from commands.local.broker import free_port
from ingest.parsing import normalise_postback, parse_query
from ingest.sources import load_sources, write_starter_sources
from postbacks.settings import Settings
from postbacks.topics import Topics
from schemas import POSTBACK_RAW, Codec

QUERY = (
    "clickid=c{k}&transaction_id=t{i}&event_name=purchase&revenue=4.99&payout=1.2&currency=EUR"
    "&idfa=6D92078A-8246-4BA4-AE5B-76104861E7DC&country_code=US"
)


def start_loadgen(port: int, path: str, plan: Plan, **options: Any) -> subprocess.Popen[str]:
    """The load generator process, started (see bench/loadgen.py for the options)."""
    argv = [sys.executable, "-m", "bench.loadgen", "--port", str(port), "--path", path]
    defaults = {"connections": plan.connections, "seconds": plan.window_s, "warmup": plan.warmup_s}
    for name, value in {**defaults, **options}.items():
        argv += [f"--{name}", str(value)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def loadgen_result(process: subprocess.Popen[str]) -> dict[str, Any]:
    """Wait for the load generator; its JSON summary."""
    out, err = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{err[-3000:]}")
    result: dict[str, Any] = json.loads(out)
    return result


def loadgen(port: int, path: str, plan: Plan, **options: Any) -> dict[str, Any]:
    """One run of the load generator process; its JSON summary."""
    return loadgen_result(start_loadgen(port, path, plan, **options))


def http_runs(port: int, path: str, plan: Plan, pid: int, name: str) -> list[dict[str, Any]]:
    """`plan.windows` load generator runs (each with its own warm-up); the first one profiled if asked.

    Each run also says how much CPU the server (all its processes) spent per answered request.
    """
    runs = []
    for n in range(plan.windows):
        spy = None
        if n == 0 and plan.profile_dir is not None:
            spy = profile.record(pid, plan.profile_dir / f"{name}.txt", plan.warmup_s + plan.window_s)
        cpu_before = cpu_seconds(pid, children=True)
        run = loadgen(port, path, plan)
        served = run["requests"] * (1 + plan.warmup_s / plan.window_s)  # the warm-up was served too
        run["server_cpu_us"] = (cpu_seconds(pid, children=True) - cpu_before) / max(served, 1) * 1e6
        runs.append(run)
        if spy is not None:
            spy.wait(60)
    return runs


def payloads(settings: Settings, token: str) -> list[tuple[bytes, bytes]]:
    """(key, value) of 1,000 postbacks as the ingest writes them for the load generator's query."""
    sources = load_sources(settings.effective_sources_file)
    source = sources.get(None)
    assert source is not None
    codec = Codec(POSTBACK_RAW)
    found = []
    for i in range(1000):
        params = parse_query(QUERY.format(i=i, k=i) + f"&token={token}", settings.max_params)
        record = normalise_postback(params, source.rules, int(time.time() * 1000))
        record.update(request_id=f"{i:032x}", received_at=int(time.time() * 1000))
        record.update(source=source.name, method="GET", sender_ip="127.0.0.1")
        found.append((record["click_id"].encode(), codec.encode(record)))
    return found


async def raw_produce(settings: Settings, plan: Plan, token: str) -> list[float]:
    """Acknowledged records/s of a producer with ingest's settings, fed the payloads ingest would write."""
    codec = Codec(POSTBACK_RAW)
    payloads_ = payloads(settings, token)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        linger_ms=settings.kafka_linger_ms,
    )
    topic = Topics(settings.topic_prefix).postbacks_raw
    await producer.start()
    try:
        in_flight: collections.deque[asyncio.Future[Any]] = collections.deque()
        acked = 0
        samples: list[Sample] = [(time.monotonic(), 0)]
        span = plan.warmup_s + plan.window_s * plan.windows + 0.2
        i = 0
        while samples[-1][0] < samples[0][0] + span:
            key, value = payloads_[i % len(payloads_)]
            in_flight.append(await producer.send(topic, value=value, key=key, headers=codec.headers))
            i += 1
            while in_flight and (in_flight[0].done() or len(in_flight) > 20_000):
                await in_flight.popleft()
                acked += 1
            if i % 1000 == 0:
                samples.append((time.monotonic(), acked))
        await asyncio.gather(*in_flight)
        return list(steady_windows(samples, 1 << 62, plan.warmup_s, plan.window_s, plan.windows).rates)
    finally:
        await producer.stop()


def ack_ceilings(settings: Settings, plan: Plan, token: str) -> dict[str, tuple[list[float], float]]:
    """(c): each producer's closed loop, one after the other (rates of the windows, CPU µs/record)."""
    topic = Topics(settings.topic_prefix).postbacks_raw
    records, headers = payloads(settings, token), Codec(POSTBACK_RAW).headers
    loops = {
        "aiokafka send()": ack_loop.aiokafka_loop,
        "grouped publisher": ack_loop.grouped_loop,
        "confluent-kafka": ack_loop.confluent_loop,
    }
    return {name: asyncio.run(loop(settings, topic, headers, records, plan)) for name, loop in loops.items()}


def run(stack: BenchStack, plan: Plan) -> StageResult:
    settings = stack.settings("ingest", log_level="WARNING")
    token = write_starter_sources(settings.effective_sources_file)
    path = "/postback?" + QUERY + f"&token={token}"

    port = free_port()
    bare = stack.start_argv("bare-handler", granian("bench.bare_app:app", port), settings)
    wait_http(f"http://127.0.0.1:{port}/")
    bare_runs = http_runs(port, path.replace("/postback", "/"), plan, bare.process.pid, "bare-handler")
    stack.stop(bare)

    producer_rates = asyncio.run(raw_produce(settings, plan, token))
    ack_loops = ack_ceilings(settings, plan, token)

    port = free_port()
    ingest = stack.start(
        "ingest", settings.with_overrides(ingest_port=port, ingest_workers=plan.ingest_workers)
    )
    wait_http(f"http://127.0.0.1:{port}/healthz")
    runs = http_runs(port, path, plan, ingest.process.pid, "ingest")
    stack.stop(ingest)

    refused = sum(r["non_2xx"] + r["errors"] for r in runs)
    figure = Figure.median_of("accepted (broker-acked)", [r["rps"] for r in runs], "req/s")
    handler = Figure.median_of("(a) bare handler, same server", [r["rps"] for r in bare_runs], "req/s")
    producer = Figure.median_of("(b) raw aiokafka producer", producer_rates, "records/s")
    result = StageResult("ingest", figure, [handler, producer])
    result.extra += [
        Figure.median_of("p50", [r["p50_ms"] for r in runs], "ms"),
        Figure.median_of("p99", [r["p99_ms"] for r in runs], "ms"),
        Figure.median_of("server CPU", [r["server_cpu_us"] for r in runs], "µs/request"),
        Figure.median_of("bare handler's", [r["server_cpu_us"] for r in bare_runs], "µs/request"),
    ]
    for name, (rates, cpu_us) in ack_loops.items():
        result.extra += [
            Figure.median_of(f"(c) {name}, {plan.connections} waiting", rates, "acked/s"),
            Figure(f"(c) {name}", cpu_us, "µs CPU/record"),
        ]
    result.targets += [
        at_least("ratio (a)", result.ratio(handler), 0.6),
        at_least("ratio (b)", result.ratio(producer), 0.5),
    ]
    generator_cpu = max(r["cpu"] for r in bare_runs)
    result.notes.append(
        f"{plan.connections} keep-alive connections, closed loop; load generator at most "
        f"{generator_cpu:.2f} cores against the bare handler; {refused} non-2xx/errors from ingest; "
        f"ingest in {plan.ingest_workers} process(es), the bare handler in one"
    )
    if refused:
        result.notes.append("ingest refused or dropped requests: the figure counts only accepted ones")
    return result
