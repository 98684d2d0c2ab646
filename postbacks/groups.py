"""Consumer-group and client-id names of the pipeline's services, in one place.

Operators see these in group tooling (kafka-consumer-groups, lag dashboards); the
client ids double as static group instance ids (KIP-345), so a restarted service takes
its partitions back without waiting for its old session to expire.
"""

from __future__ import annotations


def stream_group(prefix: str) -> str:
    """The stream workers' group, which is also the Faust app id (and so its changelog prefix)."""
    return f"{prefix}postbacks-stream"


def stream_client(worker_name: str) -> str:
    return f"postbacks-stream-{worker_name}"


def sink_group(prefix: str, table: str) -> str:
    return f"{prefix}postbacks-sink-{table}"


def sink_client(table: str) -> str:
    return f"postbacks-sink-{table}"


def outbound_group(prefix: str) -> str:
    return f"{prefix}postbacks-outbound"


def outbound_client(worker_name: str) -> str:
    return f"postbacks-outbound-{worker_name}"
