"""The one settings object of the pipeline, read from environment variables.

Every process (ingest, stream workers, sinks, the CLI) builds its configuration
here and nowhere else, so an operator reads one table (docs/operations.md "Settings") to know what
can be tuned. Values are parsed once at start-up; a bad value fails fast with the
variable's name in the message rather than at the first request.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class SettingsError(ValueError):
    """An environment variable holds a value the pipeline cannot use."""


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {raw!r}")


_PARSERS: dict[type[Any] | str, Callable[[str], Any]] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": _parse_bool,
    "Path": Path,
    "Path | None": lambda raw: Path(raw) if raw else None,
    "str | None": lambda raw: raw or None,
}


def _env(name: str) -> dict[str, str]:
    """Metadata that ties a settings field to its environment variable."""
    return {"env": name}


@dataclass(frozen=True, slots=True)
class Settings:
    """Typed configuration. Field metadata names the environment variable."""

    # Where local state lives: the local Kafka's data, the embedded ClickHouse
    # engine, generated secrets. Everything the local stack writes stays below it.
    data_dir: Path = field(default=Path(".data"), metadata=_env("POSTBACKS_DATA_DIR"))

    # Kafka. Empty means "start Apache Kafka locally" for `postbacks up` and tests;
    # services started on their own (`postbacks ingest`) require it.
    kafka_bootstrap_servers: str = field(default="", metadata=_env("KAFKA_BOOTSTRAP_SERVERS"))
    # Prefix for every topic name, so several pipelines (or test cases) share a cluster.
    topic_prefix: str = field(default="", metadata=_env("TOPIC_PREFIX"))
    topic_partitions: int = field(default=6, metadata=_env("TOPIC_PARTITIONS"))
    topic_replication_factor: int = field(default=1, metadata=_env("TOPIC_REPLICATION_FACTOR"))
    # Producer tuning: linger trades a few ms of latency for larger broker requests.
    kafka_linger_ms: int = field(default=2, metadata=_env("KAFKA_LINGER_MS"))
    kafka_compression: str | None = field(default=None, metadata=_env("KAFKA_COMPRESSION"))

    # ClickHouse: `chdb:///dir` (embedded engine, one owning process) or `http(s)://...`.
    # Empty means the embedded engine under data_dir.
    clickhouse_dsn: str = field(default="", metadata=_env("CLICKHOUSE_DSN"))

    # Ingest HTTP service.
    ingest_host: str = field(default="127.0.0.1", metadata=_env("INGEST_HOST"))
    ingest_port: int = field(default=8080, metadata=_env("INGEST_PORT"))
    ingest_workers: int = field(default=1, metadata=_env("INGEST_WORKERS"))
    # Sources (auth secrets, alias maps, allow-lists) and the offer catalog (click redirects).
    sources_file: Path | None = field(default=None, metadata=_env("SOURCES_FILE"))
    catalog_file: Path | None = field(default=None, metadata=_env("CATALOG_FILE"))
    # How long a request may wait for the broker's acknowledgement before it is
    # answered 503 + Retry-After (senders retry on 5xx; we never buffer without bound).
    publish_timeout_s: float = field(default=5.0, metadata=_env("PUBLISH_TIMEOUT_S"))
    # Requests waiting on the broker at once; beyond it new requests get 503 at once.
    max_in_flight: int = field(default=10_000, metadata=_env("INGEST_MAX_IN_FLIGHT"))
    max_body_bytes: int = field(default=64 * 1024, metadata=_env("INGEST_MAX_BODY_BYTES"))
    max_params: int = field(default=200, metadata=_env("INGEST_MAX_PARAMS"))
    # A POST body must arrive within this; a sender trickling bytes holds a connection, not us.
    body_timeout_s: float = field(default=10.0, metadata=_env("INGEST_BODY_TIMEOUT_S"))
    retry_after_s: int = field(default=5, metadata=_env("INGEST_RETRY_AFTER_S"))

    # Stream workers (Faust). State lives in RocksDB under data_dir/stream/<worker name>.
    stream_store: str = field(default="rocksdb", metadata=_env("STREAM_STORE"))
    stream_worker_name: str = field(default="worker-0", metadata=_env("STREAM_WORKER_NAME"))
    stream_commit_interval_s: float = field(default=1.0, metadata=_env("STREAM_COMMIT_INTERVAL_S"))
    stream_tick_interval_s: float = field(default=1.0, metadata=_env("STREAM_TICK_INTERVAL_S"))
    # The agent decides its sources in batches (stream/batch.py): at most this many records, what
    # one fetch returns (stream/source_batches.py).
    stream_batch_max: int = field(default=2000, metadata=_env("STREAM_BATCH_MAX"))
    # The longest a fetch waits at the broker for records (aiokafka's fetch_max_wait_ms; Faust
    # sets 1500). One fetch is in flight per broker: while it long-polls the idle partitions, the
    # busy ones wait for it (stream/source_batches.py).
    stream_fetch_max_wait_ms: int = field(default=100, metadata=_env("STREAM_FETCH_MAX_WAIT_MS"))
    # Click states kept decoded between batches (stream/batch.py DecodedStates): a click with many
    # postbacks is then not decoded again from the bytes the previous batch wrote. Memory: a few KiB each.
    stream_decoded_states: int = field(default=20_000, metadata=_env("STREAM_DECODED_STATES"))
    # How long a silent (crashed) worker keeps its partitions before the group moves them.
    stream_session_timeout_s: float = field(default=30.0, metadata=_env("STREAM_SESSION_TIMEOUT_S"))
    # Static group membership (KIP-345), the worker name as instance id: a worker restarted
    # within the session timeout gets its partitions back without a rebalance, and its
    # local state with them. A stopped worker's partitions move after the session timeout.
    stream_static_membership: bool = field(default=True, metadata=_env("STREAM_STATIC_MEMBERSHIP"))
    # Attribution defaults; an offer in the catalog may override each.
    unknown_click_grace_s: float = field(default=300.0, metadata=_env("UNKNOWN_CLICK_GRACE_S"))
    # How much later than its clicked_at a click may land in clicks.raw (ingest's produce time plus
    # clock skew between hosts). A held postback is refused only once the clicks log has passed its
    # grace plus this, so no click still on its way can count (docs/stream.md "The clock").
    click_max_delay_s: float = field(default=10.0, metadata=_env("STREAM_CLICK_MAX_DELAY_S"))
    click_ttl_days: float = field(default=30.0, metadata=_env("CLICK_TTL_DAYS"))
    window_install_days: float = field(default=7.0, metadata=_env("ATTRIBUTION_WINDOW_INSTALL_DAYS"))
    window_event_days: float = field(default=30.0, metadata=_env("ATTRIBUTION_WINDOW_EVENT_DAYS"))
    # View-through: an impression attributes a postback whose click is unknown within this many
    # hours before it (README "View-through attribution"); an offer may set its own.
    view_window_hours: float = field(default=24.0, metadata=_env("VIEW_THROUGH_WINDOW_HOURS"))
    ctit_min_s: float = field(default=10.0, metadata=_env("CTIT_MIN_S"))
    ctit_long_s: float = field(default=86_400.0, metadata=_env("CTIT_LONG_S"))
    # Modules that register custom dedup policies, fraud rules or enrichment steps (comma-separated).
    stream_plugins: str = field(default="", metadata=_env("STREAM_PLUGINS"))
    # Sinks: one name per sink process (its consumers' static group instance ids); a batch is
    # flushed at this many rows or once its oldest record has waited this long in the sink, so a
    # quiet topic's rows are visible within the age and a busy one's come in big inserts;
    # raw-table retention.
    sink_name: str = field(default="sink-0", metadata=_env("SINK_NAME"))
    sink_batch_rows: int = field(default=50_000, metadata=_env("SINK_BATCH_ROWS"))
    sink_max_age_ms: int = field(default=250, metadata=_env("SINK_MAX_AGE_MS"))
    clickhouse_raw_ttl_days: int = field(default=180, metadata=_env("CLICKHOUSE_RAW_TTL_DAYS"))
    # ClickHouse's HTTP interface for the embedded engine, served by the sink (sinks/endpoint.py):
    # loopback unless configured; 8123 when free, else any free port (0: any), printed by `up`.
    clickhouse_http_host: str = field(default="127.0.0.1", metadata=_env("CLICKHOUSE_HTTP_HOST"))
    clickhouse_http_port: int = field(default=8123, metadata=_env("CLICKHOUSE_HTTP_PORT"))
    # Queries a second, and at once, per user and per client address (a token bucket each): a
    # dashboard's burst of panels goes through, a runaway script or a password guesser gets 429.
    clickhouse_http_rate: float = field(default=20.0, metadata=_env("CLICKHOUSE_HTTP_RATE"))
    clickhouse_http_burst: int = field(default=100, metadata=_env("CLICKHOUSE_HTTP_BURST"))
    # Currency rates: the shipped defaults unless a file is given; fx.rates topic overrides live.
    fx_rates_file: Path | None = field(default=None, metadata=_env("FX_RATES_FILE"))
    # Outbound postbacks to publishers (templates in the sources file's [publishers.<id>] tables).
    # A publisher's table may override concurrency, timeout, attempts and age.
    outbound_worker_name: str = field(default="outbound-0", metadata=_env("OUTBOUND_WORKER_NAME"))
    outbound_concurrency: int = field(default=8, metadata=_env("OUTBOUND_CONCURRENCY"))
    outbound_timeout_s: float = field(default=10.0, metadata=_env("OUTBOUND_TIMEOUT_S"))
    outbound_max_attempts: int = field(default=15, metadata=_env("OUTBOUND_MAX_ATTEMPTS"))
    outbound_max_age_s: float = field(default=86_400.0, metadata=_env("OUTBOUND_MAX_AGE_S"))
    outbound_backoff_base_s: float = field(default=1.0, metadata=_env("OUTBOUND_BACKOFF_BASE_S"))
    outbound_backoff_max_s: float = field(default=900.0, metadata=_env("OUTBOUND_BACKOFF_MAX_S"))
    # A destination with this many failures in a row within the window is paused, then probed.
    outbound_pause_failures: int = field(default=10, metadata=_env("OUTBOUND_PAUSE_FAILURES"))
    outbound_pause_window_s: float = field(default=60.0, metadata=_env("OUTBOUND_PAUSE_WINDOW_S"))
    outbound_pause_s: float = field(default=30.0, metadata=_env("OUTBOUND_PAUSE_S"))
    # Deliveries waiting per destination; beyond, new ones are dead-lettered (memory stays bounded).
    outbound_queue_limit: int = field(default=10_000, metadata=_env("OUTBOUND_QUEUE_LIMIT"))
    outbound_commit_interval_s: float = field(default=1.0, metadata=_env("OUTBOUND_COMMIT_INTERVAL_S"))

    # Prometheus /metrics of the stream worker, the sink and the outbound worker (the ingest serves
    # its own on its port). A port already taken (several workers on a host) gives a free one,
    # logged; 0 = any free port. METRICS_HOST 0.0.0.0 lets a Prometheus elsewhere scrape them.
    metrics_host: str = field(default="127.0.0.1", metadata=_env("METRICS_HOST"))
    stream_metrics_port: int = field(default=9101, metadata=_env("STREAM_METRICS_PORT"))
    sink_metrics_port: int = field(default=9102, metadata=_env("SINK_METRICS_PORT"))
    outbound_metrics_port: int = field(default=9103, metadata=_env("OUTBOUND_METRICS_PORT"))

    # How long a service told to stop (SIGTERM) may drain and commit before it exits anyway: with
    # the broker gone for good a drain never ends (postbacks/shutdown.py says what that costs).
    shutdown_timeout_s: float = field(default=30.0, metadata=_env("SHUTDOWN_TIMEOUT_S"))

    # The stream worker and the sink allocate a few objects per record; Python's default collects its young
    # generation every 700 (postbacks/gc_tuning.py says why that is raised, and what it costs).
    python_gc_threshold: int = field(default=50_000, metadata=_env("PYTHON_GC_THRESHOLD"))

    log_level: str = field(default="INFO", metadata=_env("LOG_LEVEL"))
    log_format: str = field(default="json", metadata=_env("LOG_FORMAT"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `environ` (default: the process environment)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = f.metadata["env"]
            if name not in env:
                continue
            parser = _PARSERS[str(f.type)]
            try:
                values[f.name] = parser(env[name])
            except ValueError as exc:
                raise SettingsError(f"{name}: {exc}") from exc
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if not 0 < self.ingest_port < 65536:
            raise SettingsError(f"INGEST_PORT out of range: {self.ingest_port}")
        if not 0 <= self.clickhouse_http_port < 65536:
            raise SettingsError(f"CLICKHOUSE_HTTP_PORT out of range: {self.clickhouse_http_port}")
        for name in ("stream", "sink", "outbound"):
            if not 0 <= getattr(self, f"{name}_metrics_port") < 65536:
                raise SettingsError(f"{name.upper()}_METRICS_PORT out of range")
        if self.clickhouse_http_rate <= 0 or self.clickhouse_http_burst < 1:
            raise SettingsError("CLICKHOUSE_HTTP_RATE must be positive and CLICKHOUSE_HTTP_BURST at least 1")
        if self.shutdown_timeout_s <= 0:
            raise SettingsError("SHUTDOWN_TIMEOUT_S must be positive")
        if self.python_gc_threshold < 0:
            raise SettingsError("PYTHON_GC_THRESHOLD must be 0 (Python's own) or more")
        if self.topic_partitions < 1:
            raise SettingsError("TOPIC_PARTITIONS must be at least 1")
        if self.publish_timeout_s <= 0:
            raise SettingsError("PUBLISH_TIMEOUT_S must be positive")
        if self.stream_fetch_max_wait_ms < 0:
            raise SettingsError("STREAM_FETCH_MAX_WAIT_MS must be 0 or more")
        if self.stream_store not in {"rocksdb", "memory"}:
            raise SettingsError("STREAM_STORE must be rocksdb or memory")
        if self.log_format not in {"json", "text"}:
            raise SettingsError("LOG_FORMAT must be json or text")
        if self.sink_batch_rows < 1 or self.sink_max_age_ms < 1:
            raise SettingsError("SINK_BATCH_ROWS and SINK_MAX_AGE_MS must be at least 1")
        self._validate_outbound()

    def _validate_outbound(self) -> None:
        for name in ("concurrency", "max_attempts", "pause_failures", "queue_limit"):
            if getattr(self, f"outbound_{name}") < 1:
                raise SettingsError(f"OUTBOUND_{name.upper()} must be at least 1")
        for name in ("timeout_s", "max_age_s", "backoff_base_s", "backoff_max_s", "pause_window_s"):
            if getattr(self, f"outbound_{name}") <= 0:
                raise SettingsError(f"OUTBOUND_{name.upper()} must be positive")
        if self.outbound_pause_s <= 0:
            raise SettingsError("OUTBOUND_PAUSE_S must be positive")

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @property
    def effective_sources_file(self) -> Path:
        return self.sources_file or self.data_dir / "sources.toml"

    @property
    def effective_clickhouse_dsn(self) -> str:
        return self.clickhouse_dsn or f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    def to_env(self) -> dict[str, str]:
        """The environment that reproduces these settings in a child process."""
        env: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            env[f.metadata["env"]] = ("1" if value else "0") if isinstance(value, bool) else str(value)
        return env


def env_table() -> list[tuple[str, str, str]]:
    """(variable, default, field) rows: used by the docs test that keeps the settings table honest."""
    return [(f.metadata["env"], repr(f.default), f.name) for f in fields(Settings)]
