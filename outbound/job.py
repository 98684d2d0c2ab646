"""One delivery in progress: what the delivery worker holds in memory for it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from outbound.plan import Request
from outbound.progress import PartitionProgress


@dataclass(slots=True, eq=False)
class Job:
    key: str  # idempotency key
    publisher_id: str
    partition: int  # of conversions.attributed; the delivery state goes to the same partition
    source_offset: int  # where the conversion was first read
    request: Request
    deadline: float  # unix seconds: given up (max_age) when not delivered by then
    attempts: int = 0  # requests made so far
    due: float = 0.0  # unix seconds: the next request may not go before
    last_status: int | None = None
    last_error: str | None = None
    # Every offset this delivery holds back from the commit (a stream replay can repeat a conversion).
    offsets: list[int] = field(default_factory=list)
    # The commit bookkeeping of the partition it was read under (a later assignment gets a new one).
    progress: PartitionProgress | None = None
    # Set when its partition is taken away: whatever is under way finishes, nothing more starts.
    dropped: bool = False
    # What attempt and dead-letter records repeat about the conversion.
    conversion_id: str = ""
    version: int = 0
    offer_id: str = ""
    campaign_id: str | None = None
    click_id: str = ""
    event_name: str = ""
    status: str = ""

    @classmethod
    def for_conversion(
        cls,
        conversion: Mapping[str, Any],
        key: str,
        request: Request,
        partition: int,
        offset: int,
        deadline: float,
        progress: PartitionProgress | None = None,
    ) -> Job:
        return cls(
            key=key,
            publisher_id=conversion["publisher_id"],
            partition=partition,
            source_offset=offset,
            request=request,
            deadline=deadline,
            offsets=[offset],
            progress=progress,
            conversion_id=conversion["conversion_id"],
            version=conversion["version"],
            offer_id=conversion["offer_id"],
            campaign_id=conversion.get("campaign_id"),
            click_id=conversion["click_id"],
            event_name=conversion["event_name"],
            status=conversion["status"],
        )
