"""Consumer-group and client-id names of the pipeline's services, in one place.

Operators see these in group tooling; the local supervisor and the tests use them to
find a crashed service's members (postbacks.local.broker.evict_group_members).
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
