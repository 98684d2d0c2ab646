"""Currency conversion to USD from a rates table.

Defaults ship in `stream/data/fx_rates.json` (USD per unit, dated); the `fx.rates`
topic overrides them live. Amounts stay Decimal end to end: money is never a float.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal
from importlib.resources import files
from pathlib import Path

QUANTUM = Decimal("0.000001")


def load_rates(path: Path | None = None) -> dict[str, Decimal]:
    text = (
        path.read_text(encoding="utf-8")
        if path
        else files("stream").joinpath("data/fx_rates.json").read_text()
    )
    data = json.loads(text)
    return {code.upper(): Decimal(str(rate)) for code, rate in data["usd_per_unit"].items()}


def to_usd(amount: Decimal, currency: str, rates: Mapping[str, Decimal]) -> tuple[Decimal, Decimal] | None:
    """(USD amount, rate used), or None when the currency has no rate."""
    rate = Decimal(1) if currency == "USD" else rates.get(currency)
    if rate is None:
        return None
    return (amount * rate).quantize(QUANTUM, rounding=ROUND_HALF_EVEN), rate
