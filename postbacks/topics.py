"""Kafka topic names and their explicit creation.

Topics are created up front with their partition counts: a topic auto-created by a
first produce gets the broker's default count, and Faust refuses to start when a
source topic and its table changelog disagree (PartitionsMismatch). Creating them
here, once, keeps every stage's view of the layout identical.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from postbacks.settings import Settings

log = logging.getLogger(__name__)

DELIVERY_STATE_RETENTION_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic the pipeline uses, with the deployment's prefix applied."""

    prefix: str = ""

    def _name(self, base: str) -> str:
        return f"{self.prefix}{base}"

    @property
    def postbacks_raw(self) -> str:
        return self._name("postbacks.raw")

    @property
    def clicks_raw(self) -> str:
        """Clicks, and the stream's clock marks (schema header `stream_tick`) in the same order."""
        return self._name("clicks.raw")

    @property
    def impressions_raw(self) -> str:
        """Impressions keyed by device (postbacks.devices), and the postbacks the stream routes to
        view-through (schema header `view_postback`) in the same order (stream/view_through.py)."""
        return self._name("impressions.raw")

    @property
    def postbacks_rejected(self) -> str:
        return self._name("postbacks.rejected")

    @property
    def conversions_attributed(self) -> str:
        return self._name("conversions.attributed")

    @property
    def postbacks_duplicates(self) -> str:
        return self._name("postbacks.duplicates")

    @property
    def fx_rates(self) -> str:
        return self._name("fx.rates")

    @property
    def dead_letter(self) -> str:
        return self._name("postbacks.deadletter")

    @property
    def outbound_deliveries(self) -> str:
        """Compacted: the latest state of each outbound delivery, reloaded by the outbound worker at start."""
        return self._name("outbound.deliveries")

    @property
    def outbound_attempts(self) -> str:
        """Every outbound postback attempt; the sink writes them to ClickHouse `outbound_postbacks`."""
        return self._name("outbound.attempts")

    @property
    def outbound_dead_letter(self) -> str:
        return self._name("outbound.deadletter")

    def all(self) -> list[str]:
        return [
            self.postbacks_raw,
            self.clicks_raw,
            self.impressions_raw,
            self.postbacks_rejected,
            self.conversions_attributed,
            self.postbacks_duplicates,
            self.fx_rates,
            self.dead_letter,
            self.outbound_deliveries,
            self.outbound_attempts,
            self.outbound_dead_letter,
        ]

    def configs(self) -> dict[str, dict[str, str]]:
        """Topic configs beyond the broker's defaults, applied when a topic is created."""
        return {
            # Keeps the latest state per delivery; states older than the retention are no longer needed
            # (docs/outbound.md "Limits, honestly": what this bounds).
            self.outbound_deliveries: {
                "cleanup.policy": "compact,delete",
                "retention.ms": str(DELIVERY_STATE_RETENTION_MS),
            },
        }


class TopicLayoutError(RuntimeError):
    """An existing topic has a partition count other than the configured one."""


async def ensure_topics(
    settings: Settings,
    names: list[str] | None = None,
    timeout_s: float = 30.0,
    configs: dict[str, dict[str, str]] | None = None,
) -> None:
    """Create missing topics; fail loudly when an existing one has the wrong partition count.

    `configs` adds topic configs for names outside the pipeline's own (e.g. the stream's
    table changelogs).
    """
    topics = names if names is not None else Topics(settings.topic_prefix).all()
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers, request_timeout_ms=int(timeout_s * 1000)
    )
    await asyncio.wait_for(admin.start(), timeout_s)
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            configs = {**Topics(settings.topic_prefix).configs(), **(configs or {})}
            new = [
                NewTopic(
                    t,
                    settings.topic_partitions,
                    settings.topic_replication_factor,
                    topic_configs=configs.get(t),
                )
                for t in missing
            ]
            response = await admin.create_topics(new, timeout_ms=int(timeout_s * 1000))
            for name, code, *_ in response.topic_errors:
                # Already-exists means another process won the race; the layout check below still applies.
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise KafkaError(f"create topic {name}: error {code}")
            log.info("topics created", extra={"topics": missing})
        described = await _describe_when_known(admin, topics, timeout_s)
        for topic in described:
            if topic["error_code"]:
                raise KafkaError(f"describe {topic['topic']}: error {topic['error_code']}")
            count = len(topic["partitions"])
            if count != settings.topic_partitions:
                raise TopicLayoutError(
                    f"topic {topic['topic']} has {count} partitions, configured {settings.topic_partitions}"
                )
    finally:
        await admin.close()


#: Errors a topic's metadata has while a creation is still spreading through the cluster:
#: UNKNOWN_TOPIC_OR_PARTITION (3), LEADER_NOT_AVAILABLE (5).
_NOT_YET_KNOWN = frozenset({3, 5})


async def _describe_when_known(
    admin: AIOKafkaAdminClient, topics: list[str], timeout_s: float
) -> list[dict[str, Any]]:
    """Describe `topics`, asking again while a fresh one is not yet known to the broker asked.

    CreateTopics returns once the controller has recorded the topics; brokers learn of them
    from the metadata log a moment later, so a describe sent at once can get "unknown topic"
    (Apache Kafka does this; the old emulator never did).
    """
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        described: list[dict[str, Any]] = await admin.describe_topics(topics)
        pending = [t for t in described if t["error_code"] in _NOT_YET_KNOWN]
        if not pending or asyncio.get_running_loop().time() > deadline:
            return described
        await asyncio.sleep(0.1)


async def topic_partitions(
    consumer: AIOKafkaConsumer, *topics: str, timeout_s: float = 30.0
) -> list[TopicPartition]:
    """Every partition of `topics`, as the cluster reports them (for consumers that assign).

    aiokafka's `partitions_for_topic` answers from the metadata its client tracks, and a
    consumer that assigns partitions itself (no subscription) tracks no topic: Apache Kafka
    answers its Metadata request for no topics with none. (The emulator this project once
    ran answered every such request with all topics, so reading partitions after `topics()`
    worked there and finds nothing on Kafka.) `topics()` asks for all topics but keeps the
    answer apart from the client's view; this reads the same answer, and asks again while a
    topic has none yet (another process may be creating it), up to `timeout_s`.
    """
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        cluster = await consumer._client.fetch_all_metadata()
        found = {t: sorted(cluster.partitions_for_topic(t) or ()) for t in topics}
        if all(found.values()) or asyncio.get_running_loop().time() > deadline:
            return [TopicPartition(t, p) for t in topics for p in found[t]]
        await asyncio.sleep(0.2)
