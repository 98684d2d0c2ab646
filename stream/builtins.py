"""The stream's built-in policies, fraud rules and enrichment steps, registered like any plugin."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from stream.registry import RuleContext, registry
from stream.rules import dedup, device, fraud
from stream.rules.attribution import Refused

registry.dedup_policy("auto")(dedup.auto)
registry.dedup_policy("per_click")(dedup.per_click)
registry.dedup_policy("per_transaction")(dedup.per_transaction)
registry.dedup_policy("per_action")(dedup.per_action)
registry.dedup_policy("legacy_auto")(dedup.legacy_auto)
for _name in sorted(set(dedup.VENDOR_POLICIES.values())):  # `auto` resolves to these per preset
    registry.dedup_policy(_name)(getattr(dedup, _name))


@registry.fraud_rule("ctit_too_short")
def ctit_too_short(postback: Mapping[str, Any], click: Mapping[str, Any], ctx: RuleContext) -> Refused | None:
    """Click injection: an install reported seconds after the click was injected, not earned."""
    elapsed = ctx.attributed.click_to_conversion_ms
    if dedup.is_install(postback) and elapsed < ctx.rules.ctit_min_ms:
        return Refused(
            "ctit_too_short",
            f"install {elapsed / 1000:.1f}s after the click (min {ctx.rules.ctit_min_ms / 1000:g}s)",
        )
    return None


@registry.fraud_rule(fraud.CTIT_LONG)
def ctit_long(postback: Mapping[str, Any], click: Mapping[str, Any], ctx: RuleContext) -> Refused | None:
    """Click spamming: an install long after the click (flagged unless the offer refuses it)."""
    return fraud.ctit_long(ctx.attributed, ctx.rules)


@registry.fraud_rule(fraud.COUNTRY_MISMATCH)
def country_mismatch(
    postback: Mapping[str, Any], click: Mapping[str, Any], ctx: RuleContext
) -> Refused | None:
    """The conversion's country is not the click's (flagged unless the offer refuses it)."""
    return fraud.country_mismatch(postback, click)


@registry.enrichment("device")
def device_from_user_agent(
    conversion: MutableMapping[str, Any],
    postback: Mapping[str, Any],
    click: Mapping[str, Any],
    ctx: RuleContext,
) -> None:
    """Device, OS and browser from the postback's user agent, else the click's."""
    conversion.update(device.describe(postback.get("user_agent") or click.get("user_agent")))
