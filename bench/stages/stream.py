"""Stream stage: postbacks/s through dedup + attribution + enrichment, clicks preloaded.

Baselines in the same run, each on a copy of the input on topics of its own: a raw
aiokafka consumer reading and Avro-decoding the same postbacks (the physical floor of
"read the input"), a Faust agent only iterating them (Faust's per-event floor), and the
peer, a Quix Streams app doing the worker's job on the same clicks and postbacks
(bench/quix_peer.py), measured as the worker is; also with this project's own Decider
inside it. The worker starts on empty topics, reads the clicks (its click table
warm, as in production), then the postbacks are appended: the figure is its rate of
outputs (conversions, duplicates, refusals: one per postback) over windows of steady
state. The postbacks are appended whole before sampling starts, so the producer does
not share the cores with the worker during the windows.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib.metadata import version

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import GroupCoordinatorNotAvailableError

from bench import consume, profile
from bench.measure import Figure, Sample, StageResult, Windows, at_least, steady_windows
from bench.plan import Plan
from bench.stack import BenchStack, OffsetWatch, Record, Service, committed, cpu_seconds, preload
from bench.traffic import CLICK_HEADERS, POSTBACK_HEADERS, clicks, postbacks
from postbacks.groups import stream_group
from postbacks.settings import Settings
from postbacks.topics import Topics, topic_partitions
from schemas import POSTBACK_RAW, Codec

READY = "Worker ready"  # what Faust logs once the worker has its partitions and tables


@dataclass
class StreamRun:
    windows: Windows
    cores: float  # CPU the workers used during the windows, in cores
    clicks: Windows  # the preloaded clicks going through the workers (click state written)


async def raw_consume(settings: Settings, plan: Plan, total: int) -> Windows:
    """Read and decode the postbacks topic again and again, sampling the running count."""
    topic = Topics(settings.topic_prefix).postbacks_raw
    codec = Codec(POSTBACK_RAW, millis=True)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = await topic_partitions(consumer, topic)
        consumer.assign(tps)
        seen, read_this_pass = 0, total  # starts with a seek to the beginning
        samples: list[Sample] = [(time.monotonic(), 0)]
        span = plan.warmup_s + plan.window_s * plan.windows + 0.2
        first_read: float | None = None
        while first_read is None or time.monotonic() < first_read + span:
            if read_this_pass >= total:
                await consumer.seek_to_beginning(*tps)
                read_this_pass = 0
            for _tp, messages in (await consumer.getmany(timeout_ms=500, max_records=5000)).items():
                for m in messages:
                    codec.decode(m.value, m.headers)
                seen += len(messages)
                read_this_pass += len(messages)
            samples.append((time.monotonic(), seen))
            if first_read is None and seen:
                first_read = samples[-2][0]
        return steady_windows(samples, 1 << 62, plan.warmup_s, plan.window_s, plan.windows)
    finally:
        await consumer.stop()


def faust_floor(stack: BenchStack, settings: Settings, plan: Plan, total: int) -> Windows:
    """A Faust agent that only iterates the same postbacks (bench/faust_floor.py), sampled by itself."""
    topic = Topics(settings.topic_prefix).postbacks_raw
    samples_file = settings.data_dir / "faust-floor.samples"
    argv = [sys.executable, "-m", "bench.faust_floor", topic, str(total), str(samples_file)]
    floor = stack.start_argv("faust-floor", argv, settings)
    try:
        floor.process.wait(300)
    finally:
        stack.stop(floor)
    samples: list[Sample] = []
    if samples_file.exists():
        for line in samples_file.read_text().splitlines():
            at, count = line.split()
            samples.append((float(at), int(count)))
    return _windows(samples, total, plan)


def _windows(
    samples: list[Sample],
    total: int,
    plan: Plan,
    warmup_s: float | None = None,
    appended_at: float | None = None,
) -> Windows:
    """The steady windows; if a (--quick) input ran out before a window closed, its whole read's rate.

    A quick input can even be done before the first sample: then its rate counts from
    `appended_at`, when its records began to be appended (an underestimate: --quick only
    proves the stage runs).
    """
    warmup = plan.warmup_s if warmup_s is None else warmup_s
    windows = steady_windows(samples, total, warmup, plan.window_s, plan.windows)
    if windows.rates:
        return windows
    rates = consume.rates(samples, total, plan)
    if not rates and appended_at is not None and samples and samples[-1][1] >= total > 0:
        rates = (samples[-1][1] / max(samples[-1][0] - appended_at, 1e-9),)
    return Windows(rates, windows.seconds, drained=True)


def _start_workers(stack: BenchStack, settings: Settings, n: int) -> list[Service]:
    """Start n workers and wait until each says ready (a restart appends to the same log)."""
    ready_before = []
    for i in range(n):
        log = settings.data_dir / f"worker-{i}.log"
        ready_before.append(log.read_text(errors="replace").count(READY) if log.exists() else 0)
    workers = [
        stack.start("stream", settings, f"worker-{i}", STREAM_WORKER_NAME=f"worker-{i}") for i in range(n)
    ]
    for worker, before in zip(workers, ready_before, strict=True):
        worker.wait_for(READY, occurrences=before + 1)
    return workers


@dataclass
class PeerRun:
    windows: Windows
    cores: float  # CPU the peer used from its first output on, in cores


def quix(
    stack: BenchStack, plan: Plan, mode: str, click_records: list[Record], load: list[Record]
) -> PeerRun:
    """The Quix Streams peer (bench/quix_peer.py, `mode` its job) measured as the worker is.

    It starts on empty topics of its own, reads the same clicks (its state warm), then the
    same postbacks are appended whole; the figure is its outputs/s over steady windows.
    """
    settings = stack.settings(f"stream-quix-{mode}", ctit_min_s=0)
    topics = Topics(settings.topic_prefix)
    bootstrap, parts = settings.kafka_bootstrap_servers, settings.topic_partitions
    group = f"{settings.topic_prefix}quix-peer-{mode}"
    argv = [sys.executable, "-m", "bench.quix_peer", mode, group]
    peer = stack.start_argv(f"quix-{mode}", argv, settings)
    try:
        asyncio.run(preload(bootstrap, topics.clicks_raw, parts, click_records, CLICK_HEADERS))
        deadline = time.monotonic() + 300
        while _committed_yet(bootstrap, group, topics.clicks_raw) < len(click_records):
            if peer.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"quix peer ({mode}) did not read the clicks:\n{peer.log_text()[-3000:]}")
            time.sleep(0.5)
        appended_at = time.monotonic()
        asyncio.run(preload(bootstrap, topics.postbacks_raw, parts, load, POSTBACK_HEADERS))
        outputs = [topics.conversions_attributed, topics.postbacks_duplicates, topics.postbacks_rejected]
        samples, cores = asyncio.run(_sample(bootstrap, outputs, [peer], plan, len(load), f"quix-{mode}"))
    finally:
        stack.stop(peer)
    return PeerRun(_windows(samples, len(load), plan, appended_at=appended_at), cores)


def _committed_yet(bootstrap: str, group: str, topic: str) -> int:
    """`committed`, or 0 while the group has no coordinator yet (a broker's first group)."""
    try:
        return asyncio.run(committed(bootstrap, group, topic))
    except GroupCoordinatorNotAvailableError:
        return 0


@dataclass
class Baselines:
    raw: Windows  # aiokafka getmany + Avro decode
    floor: Windows  # a Faust agent iterating the events, nothing else
    quix: PeerRun  # Quix Streams doing the equivalent job
    quix_decider: PeerRun  # the same app calling stream.decide.Decider per event


def run_workers(
    stack: BenchStack, plan: Plan, n_workers: int, baseline: bool, sparse: bool = False
) -> tuple[StreamRun, Baselines | None]:
    """Measure `n_workers` workers on fresh topics (and the baselines on a copy of the input, if asked).

    The workers join while the topics are empty and stay up throughout: production
    workers are long-lived, and a join is not steady state. `sparse`: most clicks get
    no postback and the others one (production's shape), instead of ~15 each; its clicks
    are appended before the workers start, so the click path reads them as a backlog.
    """
    n_clicks = plan.stream_sparse_clicks if sparse else plan.stream_clicks
    if sparse:  # half the clicks get one postback, no sender retries
        load = postbacks(n_clicks // 2, n_clicks, retry_every=n_clicks + 1)
    else:
        load = postbacks(plan.stream_postbacks, n_clicks)
    click_records = clicks(n_clicks)
    base = None
    if baseline:
        copy = stack.settings("stream-baseline")
        topic = Topics(copy.topic_prefix).postbacks_raw
        asyncio.run(
            preload(copy.kafka_bootstrap_servers, topic, copy.topic_partitions, load, POSTBACK_HEADERS)
        )
        raw = asyncio.run(raw_consume(copy, plan, len(load)))
        floor = faust_floor(stack, copy, plan, len(load))
        peer = quix(stack, plan, "equivalent", click_records, load)
        base = Baselines(raw, floor, peer, quix(stack, plan, "decider", click_records, load))

    name = f"stream-{n_workers}w" + ("-sparse" if sparse else "")
    settings = stack.settings(name, ctit_min_s=0)
    topics = Topics(settings.topic_prefix)
    bootstrap, parts = settings.kafka_bootstrap_servers, settings.topic_partitions
    if sparse:
        # The click path is measured on a backlog, as the postbacks are: appended before the
        # workers start, so the windows neither share the cores with the appending producer
        # nor run short when a fast worker keeps up with the appending (the full run of
        # session 13 cut its third window from the tail of the clicks that way).
        asyncio.run(preload(bootstrap, topics.clicks_raw, parts, click_records, CLICK_HEADERS))
    workers = _start_workers(stack, settings, n_workers)
    group = stream_group(settings.topic_prefix)
    spies = []
    if plan.profile_dir is not None and sparse:  # the click path's profile: while the clicks go through
        spies = [
            profile.record(w.process.pid, plan.profile_dir / f"{name}-clicks-{w.name}.txt", 8)
            for w in workers
        ]
    if not sparse:
        asyncio.run(preload(bootstrap, topics.clicks_raw, parts, click_records, CLICK_HEADERS))
    # Each new click is one changelog record of the click table: the click path's progress.
    click_samples = asyncio.run(_sample_clicks(bootstrap, f"{group}-click-state-changelog", n_clicks))
    for spy in spies:
        if spy is not None:
            spy.wait(60)
    deadline = time.monotonic() + 300
    while asyncio.run(committed(bootstrap, group, topics.clicks_raw)) < n_clicks:
        if time.monotonic() > deadline:
            raise RuntimeError("stream workers did not read the preloaded clicks in 300 s")
        time.sleep(0.5)

    appended_at = time.monotonic()
    asyncio.run(preload(bootstrap, topics.postbacks_raw, parts, load, POSTBACK_HEADERS))
    outputs = [topics.conversions_attributed, topics.postbacks_duplicates, topics.postbacks_rejected]
    samples, cores = asyncio.run(_sample(bootstrap, outputs, workers, plan, len(load), name))
    for worker in workers:
        stack.stop(worker)
    windows = _windows(samples, len(load), plan, appended_at=appended_at)
    clicks_windows = _windows(click_samples, n_clicks, plan, warmup_s=1.0)
    return StreamRun(windows, cores, clicks_windows), base


async def _sample_clicks(bootstrap: str, changelog: str, total: int) -> list[Sample]:
    """Click-table changelog records every 0.1 s until every preloaded click has one (or 300 s)."""
    samples: list[Sample] = []
    async with OffsetWatch(bootstrap, [changelog]) as watch:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            samples.append((time.monotonic(), await watch.count()))
            if samples[-1][1] >= total:
                break
            await asyncio.sleep(0.1)
    return samples


async def _sample(
    bootstrap: str, outputs: list[str], workers: list[Service], plan: Plan, total: int, name: str
) -> tuple[list[Sample], float]:
    """Output counts every 0.25 s until the windows are done or every postback has its output.

    Also returns the cores the workers used from their first output on (profiled then, if asked).
    """
    samples: list[Sample] = []
    span = plan.warmup_s + plan.window_s * plan.windows
    first_move: float | None = None
    # The windows start where the count first rises above the first sample's (steady_windows),
    # which is later than the first output when the workers output during the appending
    # and then pause: sample until the last window has closed after that rise.
    rose_from: float | None = None
    cpu_at_move = 0.0
    spies: list[subprocess.Popen[bytes] | None] = []
    async with OffsetWatch(bootstrap, outputs) as watch:
        while True:
            now, n = time.monotonic(), await watch.count()
            samples.append((now, n))
            if first_move is None and n > 0:
                first_move, cpu_at_move = now, sum(cpu_seconds(w.process.pid) for w in workers)
                if plan.profile_dir is not None:
                    spies = [
                        profile.record(w.process.pid, plan.profile_dir / f"{name}-{w.name}.txt", span)
                        for w in workers
                    ]
            if rose_from is None and len(samples) > 1 and n > samples[0][1]:
                rose_from = samples[-2][0]
            if n >= total or (rose_from is not None and now - rose_from > span + 0.5):
                break
            if now - samples[0][0] > 600:
                raise RuntimeError(f"stream stage: {n}/{total} outputs after 600 s")
            await asyncio.sleep(0.25)
    cpu = sum(cpu_seconds(w.process.pid) for w in workers) - cpu_at_move
    for spy in spies:
        if spy is not None:
            spy.wait(60)
    return samples, cpu / max(samples[-1][0] - (first_move or samples[0][0]), 1e-9)


def _cpu_us(run: StreamRun | PeerRun) -> float:
    rate = run.windows.median
    return run.cores * 1e6 / rate if rate else float("nan")


def run(stack: BenchStack, plan: Plan) -> StageResult:
    worker, base = run_workers(stack, plan, 1, baseline=True)
    assert base is not None
    sparse, _ = run_workers(stack, plan, 1, baseline=False, sparse=True)
    figure = Figure.median_of("one worker", worker.windows.rates, "postbacks/s")
    baseline = Figure.median_of("raw consume + Avro decode", base.raw.rates, "postbacks/s")
    floor = Figure.median_of("Faust agent iterating the events", base.floor.rates, "events/s")
    peer = Figure.median_of("Quix Streams, equivalent job", base.quix.windows.rates, "postbacks/s")
    peer_decider = Figure.median_of(
        "Quix Streams calling our Decider", base.quix_decider.windows.rates, "postbacks/s"
    )
    result = StageResult("stream", figure, [baseline, floor, peer, peer_decider])
    result.extra += [
        Figure("worker CPU", worker.cores, "cores"),
        Figure("CPU per postback", _cpu_us(worker), "µs"),
        Figure.median_of("0-1 postbacks a click", sparse.windows.rates, "postbacks/s"),
        Figure("CPU per postback (0-1 a click)", _cpu_us(sparse), "µs"),
        Figure.median_of("click path", sparse.clicks.rates, "clicks/s"),
        Figure("CPU per postback (Quix Streams)", _cpu_us(base.quix), "µs"),
        Figure("CPU per postback (Quix Streams + Decider)", _cpu_us(base.quix_decider), "µs"),
    ]
    result.targets += [
        at_least("ratio", result.ratio(baseline), 0.5),
        at_least("postbacks/s", figure.value, 10_000),
        at_least("clicks/s", sparse.clicks.median, 20_000),
        at_least("vs Quix Streams", result.ratio(peer), 1.2),
    ]
    result.notes += [
        f"~15 postbacks a click: {worker.windows.describe()}",
        f"0-1 postbacks a click: {sparse.windows.describe()}",
        f"click path: {sparse.clicks.describe()}",
        f"Faust floor: {base.floor.describe()}",
        f"Quix Streams {version('quixstreams')} (at-least-once, RocksDB state + changelog), "
        f"equivalent job: {base.quix.windows.describe()}",
        f"Quix Streams calling our Decider: {base.quix_decider.windows.describe()}",
    ]
    return result
