"""A stream plugin as a data engineer would write one: loaded through STREAM_PLUGINS in the test."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from stream.registry import RuleContext, registry


@registry.enrichment("publisher_tier")
def publisher_tier(
    conversion: MutableMapping[str, Any],
    postback: Mapping[str, Any],
    click: Mapping[str, Any],
    ctx: RuleContext,
) -> None:
    conversion["enrichment"]["publisher_tier"] = (
        "gold" if click["publisher_id"].startswith("vip") else "standard"
    )
